"""graphcnn: a deep-learning compiler for convolutional networks.

    >>> import graphcnn as gc
    >>> from graphcnn import nn
    >>> x = gc.Input((1, 32, 32), name="image")
    >>> y = nn.Linear(32 * 32, 10)(gc.flatten(gc.relu(x)))
    >>> gc.Model(inputs=x, outputs=y).num_parameters()
    10250
"""
import os as _os

# Kernels compile once per machine: Numba's on-disk cache lives outside any checkout.
_os.environ.setdefault("NUMBA_CACHE_DIR", _os.path.join(
    _os.path.expanduser("~"), ".cache", "graphcnn", "numba"))
# Numba's OpenMP threads spin for a while after each parallel loop before they sleep, and
# waking a sleeping thread costs ~65 us per kernel on a VM. They may spin when they are the
# only pool at work: the GEMMs run on them too (backends/cpu/blas.py). When numpy's
# OpenBLAS cannot be driven that way, its own threads run the GEMMs and Numba's must sleep
# at once to leave them the cores (a ResNet-18 3x3 conv took 44 ms instead of 8 otherwise).
# It must be set before Numba's OpenMP runtime starts; openblas.py decides without Numba.
from graphcnn.backends.cpu.openblas import AVAILABLE as _ONE_THREAD_POOL  # noqa: E402

_os.environ.setdefault("GOMP_SPINCOUNT", "100000" if _ONE_THREAD_POOL else "0")
# On AVX-512 CPUs the kernels use the registers' full width (vector_width.py says why); it
# must be decided before Numba builds its first kernel: as Numba loads.
from graphcnn.backends.cpu.vector_width import (  # noqa: E402
    widen_when_numba_loads as _widen_when_numba_loads,
)

_widen_when_numba_loads()

import graphcnn.ops  # noqa: E402,F401  (the op registry: what the IR builds graphs with)
from graphcnn import nn  # noqa: E402
from graphcnn.api import compile, training_graph, value_and_grad  # noqa: E402
from graphcnn.axes import chunk, mean, split, sum  # noqa: E402
from graphcnn.dsl import Input, Parameter, Tensor, constant  # noqa: E402
from graphcnn.errors import GraphBuildError, VerificationError  # noqa: E402
from graphcnn.functional import (  # noqa: E402
    abs,
    add,
    clip,
    concat,
    elu,
    erf,
    exp,
    flatten,
    gelu,
    leaky_relu,
    log,
    log_softmax,
    maximum,
    minimum,
    mish,
    mul,
    neg,
    pad2d,
    pow,
    reciprocal,
    relu,
    relu6,
    reshape,
    selu,
    sigmoid,
    softmax,
    softplus,
    softsign,
    sqrt,
    sub,
    tanh,
)
from graphcnn.ir import Graph, TensorType  # noqa: E402
from graphcnn.model import Model  # noqa: E402
from graphcnn.nn.resample import interpolate, upsample  # noqa: E402
from graphcnn.runtime import Executable  # noqa: E402
from graphcnn.runtime.gradient_step import GradientStep  # noqa: E402
from graphcnn.seeding import manual_seed  # noqa: E402


def set_num_threads(n: int) -> None:
    """Use n threads in the cpu kernels that this Python thread runs (default: all cores,
    or NUMBA_NUM_THREADS, which caps every thread; Numba's setting is per thread, so other
    threads keep theirs). Call it before compiling: an executable keeps the
    implementations chosen for the thread count it was built with
    (backends/cpu/strategy.py). Calls running at once share these threads between them
    (backends/cpu/threads.py)."""
    import numba

    from graphcnn.backends.cpu.threads import prefer_threadsafe_layer
    prefer_threadsafe_layer()   # Numba starts its threading layer now
    numba.set_num_threads(n)


def __getattr__(name: str):  # lazy subpackages: importing graphcnn stays light
    import importlib
    if name in ("models", "optim", "data", "train", "metrics", "onnx", "losses",
                "distributed"):
        module = importlib.import_module(f"graphcnn.{name}")
        globals()[name] = module
        return module
    if name in ("load", "save"):   # the artifact format: imported when first used
        from graphcnn.runtime import artifact
        return getattr(artifact, name)
    if name == "Trainer":
        from graphcnn.train.trainer import Trainer
        return Trainer
    raise AttributeError(f"module 'graphcnn' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["Executable", "Graph", "GraphBuildError", "GradientStep", "Input", "Model",
           "Parameter", "Tensor", "TensorType", "VerificationError", "add", "chunk", "clip",
           "compile", "concat", "interpolate", "mean", "split", "sum", "upsample", "constant", "flatten", "leaky_relu", "load", "log_softmax", "manual_seed",
           "mul", "nn", "pad2d", "relu", "relu6", "reshape", "save", "set_num_threads", "sigmoid",
           "softmax", "sub", "tanh", "training_graph", "value_and_grad",
           "abs", "elu", "erf", "exp", "gelu", "log", "maximum", "minimum", "mish", "neg",
           "pow", "reciprocal", "selu", "softplus", "softsign", "sqrt"]
