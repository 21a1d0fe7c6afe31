"""Let Numba's LLVM fill the whole AVX-512 register (16 float32 lanes, not 8).

LLVM's tuning for Intel's AVX-512 server cores (Skylake-SP to Emerald Rapids) carries the
feature `prefer-256-bit`: its loop vectorizer then picks 256-bit vectors, a relic of the
frequency drop 512-bit instructions cost on the first AVX-512 parts. Numba passes the host's
features as they are, so every kernel here ran at half the width of the FMA units: a
ResNet-50 at batch 1 spent most of its time in loops that used ymm registers only
(benchmarks/RESULTS.md has the before and after). Turning the preference off (the feature
`-prefer-256-bit`) makes the same loops use zmm registers.

It must happen before Numba builds its code generator (the first compilation), and
reading the host's features takes llvmlite, which `import graphcnn` must not load (it
stays light: Numba loads with the first compile). So `import graphcnn` calls
`widen_when_numba_loads`: widen_vectors at once if Numba is loaded already, else right
after Numba's own import, whoever imports it first. Users who set
NUMBA_CPU_NAME or NUMBA_CPU_FEATURES themselves (for a portable cache, say) keep what they
set; GRAPHCNN_VECTOR_WIDTH=256 keeps LLVM's own preference.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import platform
import sys
from types import ModuleType
from typing import Any, Sequence

_NARROW = "-prefer-256-bit"


def wide_features(host_features: str) -> str | None:
    """The feature string that lifts the 256-bit preference, or None where there is nothing
    to lift (no AVX-512 on this CPU)."""
    if "+avx512f" not in host_features.split(","):
        return None
    return f"{host_features},{_NARROW}"


def widen_vectors() -> None:
    """Set NUMBA_CPU_FEATURES (and Numba's config, if Numba is already imported) to the
    host's features without the 256-bit preference, on x86-64 CPUs with AVX-512."""
    if os.environ.get("NUMBA_CPU_FEATURES") or os.environ.get("NUMBA_CPU_NAME"):
        return
    if os.environ.get("GRAPHCNN_VECTOR_WIDTH", "").strip() == "256":
        return
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    import llvmlite.binding as llvm
    try:
        features = wide_features(llvm.get_host_cpu_features().flatten())
    except RuntimeError:   # LLVM could not read this host's features: leave Numba's default
        return
    if features is None:
        return
    os.environ["NUMBA_CPU_FEATURES"] = features
    config = sys.modules.get("numba.core.config")
    if config is not None and getattr(config, "CPU_FEATURES", None) is None:
        # read by Numba's codegen when it is first built
        config.CPU_FEATURES = features  # type: ignore[attr-defined]


def widen_when_numba_loads() -> None:
    """widen_vectors() now if Numba is loaded already, else once Numba's import is done
    (and before anything can compile)."""
    if "numba" in sys.modules:
        widen_vectors()
    elif not any(isinstance(f, _AfterNumba) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterNumba())


class _AfterNumba(importlib.abc.MetaPathFinder):
    """Finds `numba` as the other finders do, once, and has its loader call widen_vectors
    when the package's module has run."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "numba":
            return None
        sys.meta_path.remove(self)   # once; the other finders locate it
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            widen_vectors()
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            widen_vectors()
        loader: Any = spec.loader
        loader.exec_module = exec_module
        return spec


def vector_bits() -> int:
    """512 where the kernels are built with the full AVX-512 width, else 256 (or less: what
    LLVM picks for the CPU). Part of the autotuner's machine key."""
    from numba.core import config
    features = getattr(config, "CPU_FEATURES", None) or ""
    return 512 if _NARROW in features.split(",") else 256
