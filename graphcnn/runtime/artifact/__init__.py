"""Ahead-of-time compiled artifacts: one file that loads and runs without compiling.

    exe = gc.compile(model, batch_size=1)
    gc.save(exe, "model.gcnn")                # or exe.save(...), or: graphcnn compile -o
    exe = gc.load("model.gcnn")               # another process, another day: no compiler

A training step (`gc.value_and_grad`, `graphcnn compile --training`) saves the same way
and loads as a GradientStep that holds its parameters.

The file is a zip archive:

    manifest.json        the manifest (JSON, below)
    constants/<k>.npy    the graph's constant tensors (an inference model's weights)
    parameters/<k>.npy   values of the graph's `param` nodes (training artifacts)
    code/<k>.o           object code of one precompiled kernel entry (graphcnn.backends.cpu.aot)

The manifest holds: the format name and version; the versions of graphcnn, numba,
llvmlite, numpy and Python that wrote it; the target it was compiled for (triple, CPU name,
CPU features) and a fingerprint of the cpu kernels' sources; the optimized graph
(graphcnn.ir.serialize: nodes with op, inputs, attributes, locations and output types); the
schedule (the nodes run as kernels, in order) and the implementation the cpu strategy chose
for each (loading runs the same ones); the memory plan (arena bytes; per buffer the
values sharing it, offset, size, live range); input and output names, shapes and dtypes;
the kernel entries (kernel name, argument signature, return type, symbol, member); the
parameters; for a training step its loss; and per member its size and SHA-256.

**Loading never unpickles and never evaluates anything from the file**: the manifest is
JSON, validated field by field; arrays are read with `np.load(allow_pickle=False)` and
must have the recorded dtype and shape; the graph is rebuilt through `Graph.add_node`,
which checks every attribute and re-infers every shape; the memory plan is checked against
the graph's liveness (no two live tensors share bytes, everything fits the arena, the
arena no larger than its buffers); every member's SHA-256 is checked before it is used.
The work a file can cause is bounded: only the members the manifest's graph, parameters
and kernels use are read (a listed member nothing uses is an error, before anything is
inflated); each member's size is checked against what the manifest implies (an array's
dtype and shape, at most GRAPHCNN_MAX_TENSOR_BYTES; object code at most 256 MiB) and its
compressed size against its method before a byte is inflated; members are streamed into
their arrays in chunks while hashed (no second copy); the manifest is at most 16 MiB. The object code is machine code by design
(trust an artifact as you would trust a shared library); its only data-unpickling hooks
(Numba's exception info) are replaced by stubs at build time. A problem is an
`ArtifactError` naming it.

If the machine differs from the one compiled for (CPU name or features, triple), or numba,
llvmlite or the kernels' sources changed, loading warns saying why and compiles the kernels
with Numba instead. Writing is atomic: a temporary file in the target's directory, then
`os.replace`, so an interrupted save leaves no half-written file at the target path.

The parts: format.py (the archive and manifest fields), members.py (which members are
read, their bounds, streamed reading and hashing), plan.py (the
memory plan, checked against the graph's liveness), writer.py (`save`), loader.py
(`load`), summary.py (`summarize`); what is cpu-specific (the target, recording and
building the kernel entries) is graphcnn/backends/cpu/precompiled.py and aot.py.
"""
from graphcnn.runtime.artifact.format import FORMAT, FORMAT_VERSION, MANIFEST, read_manifest
from graphcnn.runtime.artifact.loader import load
from graphcnn.runtime.artifact.summary import summarize
from graphcnn.runtime.artifact.writer import ArtifactContents, save

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "ArtifactContents", "load", "read_manifest",
           "save", "summarize"]
