"""Ahead-of-time artifacts (graphcnn/runtime/artifact/, graphcnn/backends/cpu/aot.py):
round trips in a fresh process with no Numba compilation, training artifacts, and every
kind of bad file (truncated, corrupted, tampered, newer, incomplete, crafted to run code),
atomic writes."""
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.errors import ArtifactError
from graphcnn.runtime import artifact as art

# A fresh interpreter with an empty Numba cache: loads the artifacts, runs them, and counts
# every entry into Numba's compiler (dispatcher compiles and compiler pipeline runs).
FRESH = textwrap.dedent("""
    import json, sys, time
    start = time.perf_counter()
    import numpy as np
    import numba.core.dispatcher as dispatcher
    from numba.core import compiler
    compiles = []
    _compile = dispatcher.Dispatcher.compile
    def counting_compile(self, sig):
        compiles.append(self.py_func.__qualname__)
        return _compile(self, sig)
    dispatcher.Dispatcher.compile = counting_compile
    for name in ("compile_extra", "compile_ir"):
        def counting(*a, _orig=getattr(compiler, name), _name=name, **k):
            compiles.append(_name)
            return _orig(*a, **k)
        setattr(compiler, name, counting)
    import pickle
    unpickled = []
    for name in ("loads", "load", "Unpickler"):
        def spy(*a, _orig=getattr(pickle, name), _name=name, **k):
            unpickled.append(_name)
            return _orig(*a, **k)
        setattr(pickle, name, spy)
    import graphcnn as gc
    results = {}
    for path, x_path, y_path in json.loads(sys.argv[1]):
        exe = gc.load(path)
        y = exe(np.load(x_path))
        results[path] = {"equal": bool(np.array_equal(y, np.load(y_path))),
                         "precompiled": exe.precompiled}
    results["compiles"] = compiles
    results["unpickled"] = unpickled
    results["seconds"] = time.perf_counter() - start
    print(json.dumps(results))
""")


def fresh_env(tmp_path):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "empty-numba-cache")
    return env


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """lenet5, a small ResNet-18, a small MobileNetV2 (its depthwise blocks run in the
    blocked layout) and a small DenseNet (its concatenations written part by part through
    their batch norms: passes/concat_epilogue.py), compiled, saved, with an input and its
    output."""
    from graphcnn.models.densenet import densenet
    root = tmp_path_factory.mktemp("artifacts")
    rng = np.random.default_rng(0)
    out = {}
    gc.manual_seed(0)
    for name, model in [("lenet5", gc.models.lenet5()),
                        ("resnet", gc.models.resnet18(width=8, input_size=32, num_classes=10)),
                        ("mobilenet", gc.models.mobilenet_v2(10, width_mult=0.5,
                                                             input_size=32)),
                        ("densenet", densenet(10, growth_rate=8, block_config=(2, 2),
                                              num_init_features=16, input_size=32))]:
        exe = gc.compile(model, batch_size=2)
        if name == "densenet":
            assert any(n.op == "fused" and n.attrs["anchor"] == "concat"
                       for n in exe.graph.nodes)
        x = rng.standard_normal(exe.graph.inputs[0].shape).astype(np.float32)
        y = exe(x)
        path = root / f"{name}.gcnn"
        exe.save(path)
        np.save(root / f"{name}_x.npy", x)
        np.save(root / f"{name}_y.npy", y)
        out[name] = (exe, path, x, y)
    return out


# ---- round trips --------------------------------------------------------------------------
def test_fresh_process_bitwise_equal_without_compiling(saved, tmp_path):
    jobs = [(str(path), str(path.parent / f"{name}_x.npy"), str(path.parent / f"{name}_y.npy"))
            for name, (_, path, _, _) in saved.items()]
    proc = subprocess.run([sys.executable, "-c", FRESH, json.dumps(jobs)], capture_output=True,
                          text=True, env=fresh_env(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["compiles"] == [] and result["unpickled"] == []
    for path, _, _ in jobs:
        assert result[path] == {"equal": True, "precompiled": True}
    assert "Warning" not in proc.stderr
    # Nothing was written to Numba's cache (no index, no object files, no generated
    # fused-kernel sources): at most the empty folders Numba makes when a module loads.
    written = [os.path.join(d, f) for d, _, files in os.walk(tmp_path / "empty-numba-cache")
               for f in files]
    assert written == []


def test_fresh_process_with_numpy_matmul_runs_an_artifact(saved, tmp_path):
    """GRAPHCNN_NUMPY_MATMUL=1 (GEMMs through np.matmul) still links an artifact whose
    kernels call numpy's OpenBLAS directly, and runs it to the same outputs."""
    from graphcnn.backends.cpu import blas
    if not blas.AVAILABLE:
        pytest.skip("numpy's OpenBLAS was not found: artifacts do not call it")
    jobs = [(str(path), str(path.parent / f"{name}_x.npy"), str(path.parent / f"{name}_y.npy"))
            for name, (_, path, _, _) in saved.items()]
    env = dict(fresh_env(tmp_path), GRAPHCNN_NUMPY_MATMUL="1")
    proc = subprocess.run([sys.executable, "-c", FRESH.replace(
        "np.array_equal(y, np.load(y_path))", "np.allclose(y, np.load(y_path), atol=1e-5)"),
        json.dumps(jobs)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for path, _, _ in jobs:
        assert result[path]["equal"], path


def test_fresh_process_that_autotunes_runs_the_saved_implementations(saved, tmp_path):
    """A machine that measures its own algorithm choices (GRAPHCNN_AUTOTUNE=1, an empty
    choice file) runs the implementations the artifact saved: nothing measured, nothing
    compiled, no warning, the outputs bit for bit the saved ones."""
    jobs = [(str(path), str(path.parent / f"{name}_x.npy"), str(path.parent / f"{name}_y.npy"))
            for name, (_, path, _, _) in saved.items()]
    choices = tmp_path / "autotune.json"
    env = dict(fresh_env(tmp_path), GRAPHCNN_AUTOTUNE="1", GRAPHCNN_AUTOTUNE_CACHE=str(choices))
    proc = subprocess.run([sys.executable, "-c", FRESH, json.dumps(jobs)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["compiles"] == []
    for path, _, _ in jobs:
        assert result[path] == {"equal": True, "precompiled": True}
    assert not choices.exists() and "Warning" not in proc.stderr


def test_the_chosen_implementations_round_trip(saved):
    """The manifest names each scheduled node's implementation; the loaded runner runs
    the same ones, taken from the file rather than chosen again."""
    exe, path, x, y = saved["resnet"]
    chosen = exe.runner.implementations()
    assert art.read_manifest(path)["implementations"] == [name for _, _, name, _ in chosen]
    assert {name for _, _, name, _ in chosen} >= {"gemm", "default"}
    loaded = gc.load(path)
    assert [r[:3] for r in loaded.runner.implementations()] == [r[:3] for r in chosen]
    for _, _, name, why in loaded.runner.implementations():
        assert why.startswith("saved with the artifact") or name in ("default", "generated")
    assert np.array_equal(loaded(x), y)


def test_a_saved_implementation_that_does_not_apply_is_chosen_again(saved, tmp_path):
    _, path, x, y = saved["lenet5"]
    members, manifest = read_all(path)
    first = manifest["implementations"].index("direct-wide")  # c1 (fused with its tanh)
    manifest["implementations"][first] = "nchw16c-1x1"        # an NCHW16c kernel's name
    target = write_all(tmp_path / "foreign_name.gcnn", members, manifest)
    with pytest.warns(RuntimeWarning, match="'nchw16c-1x1'.*does not apply here"):
        exe = gc.load(target)
    assert exe.runner.implementations()[first][2] == "direct-wide"
    assert np.array_equal(exe(x), y)


def test_in_process_load_matches_and_reports(saved):
    exe, path, x, y = saved["resnet"]
    loaded = gc.load(path)
    assert loaded.precompiled
    assert np.array_equal(loaded(x), y)
    assert np.array_equal(loaded(x), y)         # again: the arena is reused
    assert loaded.input_names == exe.input_names and loaded.output_names == exe.output_names
    report, original = loaded.report(), exe.report()
    for key in ("kernels", "peak_bytes", "naive_bytes", "ops_before"):
        assert report[key] == original[key]
    assert [n.op for n in loaded.graph.nodes] == [n.op for n in exe.graph.nodes]


def test_manifest_contents(saved):
    _, path, _, _ = saved["lenet5"]
    m = art.read_manifest(path)
    assert m["format"] == "graphcnn-artifact" and m["format_version"] == art.FORMAT_VERSION
    assert m["inputs"][0]["shape"] == [2, 1, 32, 32] and m["outputs"][0]["shape"] == [2, 10]
    assert set(m["created_by"]) >= {"graphcnn", "numba", "llvmlite", "numpy"}
    assert m["target"]["cpu_name"] and m["target"]["cpu_features"]
    assert m["memory_plan"]["arena_bytes"] > 0 and m["kernels"]
    with zipfile.ZipFile(path) as zf:
        for name, meta in m["members"].items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == meta["sha256"]
            if name.startswith("code/"):   # the unpickling hooks are not referenced
                assert b"numba_unpickle" not in zf.read(name)
                assert b"numba_runtime_build_excinfo_struct" not in zf.read(name)
    summary = art.summarize(path)
    assert "this machine runs it" in summary and "precompiled kernel entries" in summary


def test_loaded_artifact_saves_again_without_compiling(saved, tmp_path, monkeypatch):
    _, path, x, y = saved["lenet5"]
    loaded = gc.load(path)
    from graphcnn.backends.cpu import aot
    monkeypatch.setattr(aot, "build_entry", lambda *a: pytest.fail("compiled an entry"))
    loaded.save(tmp_path / "again.gcnn")
    assert np.array_equal(gc.load(tmp_path / "again.gcnn")(x), y)


def test_a_process_emits_each_kernels_object_code_once(saved, tmp_path, monkeypatch):
    """Saving a second model of a family, or the same one again, emits object code only
    for kernels no save in this process emitted before; each artifact still runs."""
    from graphcnn.backends.cpu import aot, precompiled
    exe, _, x, y = saved["lenet5"]
    built = []
    build = aot.build_entry
    monkeypatch.setattr(aot, "build_entry", lambda *a: built.append(a) or build(*a))
    precompiled._built_entry.cache_clear()
    exe.save(tmp_path / "first.gcnn")
    assert built, "the first save emitted nothing"
    first = len(built)
    exe.save(tmp_path / "second.gcnn")
    assert len(built) == first   # every entry emitted already
    for name in ("first.gcnn", "second.gcnn"):
        assert np.array_equal(gc.load(tmp_path / name)(x), y)


def test_missing_entry_warns_and_compiles(saved, tmp_path):
    _, path, x, y = saved["lenet5"]
    members, manifest = read_all(path)
    dropped = manifest["kernels"].pop(0)
    if all(k["member"] != dropped["member"] for k in manifest["kernels"]):
        del members[dropped["member"]], manifest["members"][dropped["member"]]
    target = write_all(tmp_path / "partial.gcnn", members, manifest)
    exe = gc.load(target)
    with pytest.warns(RuntimeWarning, match=dropped["name"].rsplit(".", 1)[-1]):
        assert np.array_equal(exe(x), y)


def test_other_cpu_warns_and_compiles(saved, tmp_path):
    _, path, x, y = saved["lenet5"]
    members, manifest = read_all(path)
    manifest["target"]["cpu_name"] = "some-other-cpu"
    manifest["target"]["cpu_features"] += ",+imaginary-feature"
    target = write_all(tmp_path / "other_cpu.gcnn", members, manifest)
    with pytest.warns(RuntimeWarning, match="some-other-cpu.*imaginary-feature"):
        exe = gc.load(target)
    assert not exe.precompiled
    assert np.array_equal(exe(x), y)


def test_training_artifact_equals_in_process_step(tmp_path):
    gc.manual_seed(3)
    model = gc.models.lenet5()
    step = gc.value_and_grad(model, loss="cross_entropy", batch_size=4)
    path = tmp_path / "step.gcnn"
    step.save(path)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, 32, 32)).astype(np.float32)
    labels = np.array([0, 3, 9, 3])
    loaded = gc.load(path)
    assert isinstance(loaded, gc.GradientStep) and loaded.executable.precompiled
    assert loaded.model is None and "GradientStep" in repr(loaded)
    loss, grads = step(x, labels)
    loss2, grads2 = loaded(x, labels)
    assert loss == loss2 and sorted(grads) == sorted(grads2)
    for name in grads:
        assert np.array_equal(grads[name], grads2[name]), name
    # Train the loaded step a little, save it, and load the trained values back.
    opt = gc.optim.SGD(lr=0.1)
    opt.step(loaded.trainable_parameters(), grads2)
    loaded.save(tmp_path / "trained.gcnn")
    again = gc.load(tmp_path / "trained.gcnn")
    for name, value in loaded.parameters.items():
        assert np.array_equal(again.parameters[name], value)
    assert np.array_equal(again(x, labels)[1]["c1.weight"], loaded(x, labels)[1]["c1.weight"])
    with pytest.raises(ValueError, match="labels"):
        loaded(x, np.array([0, 1, 2, 10]))


def test_executable_fed_parameters_round_trip(tmp_path):
    """frozen=False: the parameters are fed at each call; the artifact stores their values
    and the loaded executable reads them from exe.parameters."""
    gc.manual_seed(5)
    model = gc.models.lenet5()
    exe = gc.compile(model, batch_size=2, frozen=False)
    x = np.random.default_rng(2).standard_normal((2, 1, 32, 32)).astype(np.float32)
    exe.save(tmp_path / "fed.gcnn")
    loaded = gc.load(tmp_path / "fed.gcnn")
    assert np.array_equal(loaded(x), exe(x))
    loaded.parameters["f7.bias"][...] += 1.0
    model.parameters()["f7.bias"][...] += 1.0
    assert np.array_equal(loaded(x), exe(x))


def test_only_cpu_executables_save(tmp_path):
    exe = gc.compile(gc.models.lenet5(), batch_size=1, backend="reference")
    with pytest.raises(ValueError, match="only cpu"):
        exe.save(tmp_path / "x.gcnn")
    assert not (tmp_path / "x.gcnn").exists()


# ---- helpers to take an artifact apart and put it back together ----------------------------
def read_all(path):
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    return members, json.loads(members.pop(art.MANIFEST))


def write_all(path, members, manifest, rehash=True, raw_manifest=None):
    if rehash:
        manifest["members"] = {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                               for n, d in members.items()}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(art.MANIFEST, raw_manifest if raw_manifest is not None
                    else json.dumps(manifest))
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def npy(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def first_constant(manifest):
    return next(n for n in manifest["arrays"] if n.startswith("constants/"))


# ---- bad files ----------------------------------------------------------------------------
def test_not_a_zip_and_truncated(saved, tmp_path):
    _, path, _, _ = saved["lenet5"]
    junk = tmp_path / "junk.gcnn"
    junk.write_text("hello, I am not an artifact")
    with pytest.raises(ArtifactError, match="not a graphcnn artifact"):
        gc.load(junk)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        truncated = tmp_path / f"cut{cut}.gcnn"
        truncated.write_bytes(data[:cut])
        with pytest.raises(ArtifactError, match="not a graphcnn artifact|truncated|corrupted"):
            gc.load(truncated)
    with pytest.raises(FileNotFoundError):
        gc.load(tmp_path / "nowhere.gcnn")


def test_corrupted_member_bytes(saved, tmp_path):
    _, path, _, _ = saved["lenet5"]
    _, manifest = read_all(path)
    name = first_constant(manifest)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    # The member's data starts after its local header (30 bytes + name + extra field).
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28],
                                         "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size - 3] ^= 0xFF
    bad = tmp_path / "flipped.gcnn"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"member {name} is corrupted"):
        gc.load(bad)


def test_member_changed_but_manifest_hash_kept(saved, tmp_path):
    _, path, _, _ = saved["lenet5"]
    members, manifest = read_all(path)
    name = first_constant(manifest)
    original = np.load(io.BytesIO(members[name]))
    members[name] = npy(original + 1)   # same shape and dtype: only the hash can tell
    bad = write_all(tmp_path / "changed.gcnn", members, manifest, rehash=False)
    with pytest.raises(ArtifactError, match=f"member {name} is corrupted.*SHA-256"):
        gc.load(bad)


def test_newer_format_version(saved, tmp_path):
    _, path, _, _ = saved["lenet5"]
    members, manifest = read_all(path)
    manifest["format_version"] = art.FORMAT_VERSION + 1
    with pytest.raises(ArtifactError, match="newer"):
        gc.load(write_all(tmp_path / "newer.gcnn", members, manifest))


def test_missing_and_unexpected_members(saved, tmp_path):
    _, path, _, _ = saved["lenet5"]
    members, manifest = read_all(path)
    code = next(n for n in members if n.startswith("code/"))
    listed = dict(manifest["members"])
    without = {n: d for n, d in members.items() if n != code}
    manifest["members"] = listed
    with pytest.raises(ArtifactError, match=f"missing member {code}"):
        gc.load(write_all(tmp_path / "missing.gcnn", without, manifest, rehash=False))
    extra = dict(members, **{"notes.txt": b"hi"})
    manifest["members"] = listed
    with pytest.raises(ArtifactError, match="unexpected member notes.txt"):
        gc.load(write_all(tmp_path / "extra.gcnn", extra, manifest, rehash=False))
    with pytest.raises(ArtifactError, match="missing member manifest.json"):
        with zipfile.ZipFile(tmp_path / "nomanifest.gcnn", "w") as zf:
            zf.writestr("code/0.o", b"")
        gc.load(tmp_path / "nomanifest.gcnn")


def test_weights_of_the_wrong_shape_or_dtype(saved, tmp_path):
    _, path, _, _ = saved["lenet5"]
    members, manifest = read_all(path)
    name = first_constant(manifest)
    original = np.load(io.BytesIO(members[name]))
    for k, wrong in enumerate([np.zeros(original.size + 1, original.dtype),
                               original.astype(np.float64)]):
        members[name] = npy(wrong)
        with pytest.raises(ArtifactError, match=f"{name} holds"):
            gc.load(write_all(tmp_path / f"wrong{k}.gcnn", members, manifest))
    # The manifest and the array agree, but the graph needs another shape.
    members[name] = npy(np.zeros(original.size + 1, original.dtype))
    manifest["arrays"][name]["shape"] = [original.size + 1]
    with pytest.raises(ArtifactError, match="node .*constant"):
        gc.load(write_all(tmp_path / "wrong_graph.gcnn", members, manifest))


class _CreatesFile:
    """Unpickling this calls open(path, "w"): a visible side effect if anything unpickles."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_crafted_pickle_payloads_do_not_run(saved, tmp_path):
    _, path, _, _ = saved["lenet5"]
    marker = tmp_path / "PWNED"
    members, manifest = read_all(path)
    name = first_constant(manifest)
    payload = np.empty(1, dtype=object)
    payload[0] = _CreatesFile(str(marker))
    members[name] = npy(payload, allow_pickle=True)
    manifest["arrays"][name] = {"shape": [1], "dtype": "float32"}
    with pytest.raises(ArtifactError, match=f"member {name} is not a plain .npy array"):
        gc.load(write_all(tmp_path / "object_npy.gcnn", members, manifest))
    members[name] = pickle.dumps(_CreatesFile(str(marker)))   # a bare pickle, not .npy
    with pytest.raises(ArtifactError, match=f"member {name} is not a plain .npy array"):
        gc.load(write_all(tmp_path / "pickle.gcnn", members, manifest))
    assert not marker.exists()


def test_manifest_fields_with_python_code_are_data(saved, tmp_path):
    _, path, _, _ = saved["lenet5"]
    marker = tmp_path / "PWNED2"
    code = f"__import__('os').system('touch {marker}')"
    for k, tamper in enumerate([
            lambda m: m.__setitem__("format_version", code),
            lambda m: m["graph"]["nodes"][0].__setitem__("op", code),
            lambda m: m["graph"]["nodes"][0]["attrs"].__setitem__("shape", code),
            lambda m: m["kernels"][0].__setitem__("restype", code),
            lambda m: m["kernels"][0]["signature"].__setitem__(0, code),
            lambda m: m.__setitem__("name", code)]):
        members, manifest = read_all(path)
        tamper(manifest)
        target = write_all(tmp_path / f"code{k}.gcnn", members, manifest)
        if k == 5:   # a name is just a name: it loads, nothing runs
            gc.load(target)
            continue
        with pytest.raises(ArtifactError):
            gc.load(target)
    assert not marker.exists()


def test_tampered_manifests(saved, tmp_path):
    _, path, _, _ = saved["lenet5"]
    cases = {
        "not valid JSON": lambda m: None,
        "not a graphcnn artifact": lambda m: m.__setitem__("format", "zip"),
        "invalid format_version": lambda m: m.__setitem__("format_version", "1"),
        "node 3": lambda m: m["graph"]["nodes"][3].__setitem__("inputs", [[99, 0]]),
        "unknown op": lambda m: m["graph"]["nodes"][3].__setitem__("op", "no_such_op"),
        "live at the same time": lambda m: [b.__setitem__("offset", 0)
                                            for b in m["memory_plan"]["buffers"]],
        "outside the arena": lambda m: m["memory_plan"].__setitem__("arena_bytes", 64),
        "schedule": lambda m: m["schedule"].reverse(),
        "implementations": lambda m: m["implementations"].pop(),
        "inputs/outputs": lambda m: m["inputs"][0].__setitem__("shape", [1, 1, 32, 32]),
        "kind": lambda m: m.__setitem__("kind", "something"),
    }
    for k, (message, tamper) in enumerate(cases.items()):
        members, manifest = read_all(path)
        tamper(manifest)
        raw = "{not json" if message == "not valid JSON" else None
        target = write_all(tmp_path / f"tampered{k}.gcnn", members, manifest, raw_manifest=raw)
        with pytest.raises(ArtifactError, match=message):
            gc.load(target)


# ---- atomic writes ------------------------------------------------------------------------
def test_interrupted_save_leaves_no_file(saved, tmp_path, monkeypatch):
    exe, path, _, _ = saved["lenet5"]
    calls = []
    real = zipfile.ZipFile.writestr

    def failing(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise failure

        return real(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    target = tmp_path / "model.gcnn"
    failure = OSError("No space left on device")
    with pytest.raises(OSError, match="No space"):
        exe.save(target)
    assert not target.exists()
    assert os.listdir(tmp_path) == []           # no temporary file left behind either
    old = path.read_bytes()
    target.write_bytes(old)
    calls.clear()
    failure = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        exe.save(target)
    assert target.read_bytes() == old           # the previous artifact is intact
    assert os.listdir(tmp_path) == ["model.gcnn"]


# ---- the launch indirection -----------------------------------------------------------------
def test_kernel_wrappers_call_numba_functions_through_launch():
    """A wrapper calling a Numba function directly would compile it in a loaded artifact's
    process (and go unrecorded when saving): every call from Python code goes through
    registry.launch."""
    import ast
    import pathlib

    import graphcnn.backends.cpu.kernels as kernels

    def is_njit(fn):
        for d in fn.decorator_list:
            target = d.func if isinstance(d, ast.Call) else d
            if isinstance(target, ast.Attribute) and target.attr in ("njit", "jit"):
                return True
        return False

    trees = {p.name: ast.parse(p.read_text())
             for p in pathlib.Path(kernels.__file__).parent.glob("*.py")}
    numba_fns = {fn.name for tree in trees.values() for fn in tree.body
                 if isinstance(fn, ast.FunctionDef) and is_njit(fn)}
    direct = []
    for file, tree in trees.items():
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and not is_njit(fn):
                for call in ast.walk(fn):
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) \
                            and call.func.id in numba_fns:
                        direct.append(f"{file}:{call.lineno} {call.func.id}(...)")
    assert not direct, f"call these through launch(fn, *args): {direct}"


# ---- a precompiled kernel that raises ---------------------------------------------------------
# Numba's C entry also reports the error as "unraisable" on stderr before returning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_precompiled_kernel_errors_do_not_unpickle(monkeypatch):
    """Numba-generated code raises by unpickling exception data embedded in the code; in
    precompiled entries those hooks are stubs: a clear RuntimeError, nothing unpickled."""
    import numba

    from graphcnn.backends.cpu import aot

    @numba.njit
    def divide(a, b):
        return a[0] // b          # ZeroDivisionError: a static exception

    @numba.njit
    def check(a, n):
        if n < 0:
            raise ValueError("negative", n)   # a dynamic exception (runtime argument)
        a[0] = n

    a = np.ones(3, np.int64)
    assert divide(a, 1) == 1
    check(a, 2)
    built = [aot.build_entry(divide, ("int64[1C]", "int64"), (False, False)),
             aot.build_entry(check, ("int64[1C]", "int64"), (False, False))]
    table = aot.load_entries([(b.name, b.signature, b.restype, b.symbol, b.obj)
                              for b in built])
    unpickled = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: unpickled.append(1))
    run_divide = table.entries[(built[0].name, built[0].signature)]
    run_check = table.entries[(built[1].name, built[1].signature)]
    assert run_divide((a, 1)) == 2        # a[0] is 2 after check(a, 2)
    with pytest.raises(RuntimeError, match="precompiled kernel raised"):
        run_divide((a, 0))
    run_check((a, 5))
    assert a[0] == 5
    with pytest.raises(RuntimeError, match=r"precompiled kernel raised .*-3"):
        run_check((a, -3))
    assert unpickled == []
