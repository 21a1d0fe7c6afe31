"""What the cuda kernels compile to, without a GPU: PTX for sm_90 and, where `ptxas` is
installed, its report of the registers, shared memory and spills a block needs.

    python -m graphcnn.backends.cuda.ptx_report [NAME_PART ...]

prints, per recorded kernel example (registry.PTX_EXAMPLES, float32), those resources and,
for the tiled GEMMs, the static instruction count of the K loop: the staging of one K step
(gathering the A and B tiles into shared memory) and the whole step with its 128 FMAs.
With no GPU these are the figures a change to a kernel can be measured by; the simulator
says nothing of speed. tests/test_cuda_ptx.py checks the same facts.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import types as pytypes
from typing import Any

PTXAS = shutil.which("ptxas") or shutil.which("ptxas", path="/usr/local/cuda/bin")


def sm90_device() -> Any:
    """Device functions compile for the current device's compute capability; with no
    driver there is none, so this stands in for `numba.cuda.dispatcher.get_current_device`
    with an sm_90 device (the kernels' target)."""
    return pytypes.SimpleNamespace(compute_capability=(9, 0))


def compile_example(name: str, float_type: Any) -> str:
    """The PTX (sm_90) of one recorded kernel example."""
    from numba import cuda

    from graphcnn.backends.cuda.registry import PTX_EXAMPLES
    py_func, sig = PTX_EXAMPLES[name](float_type)
    ptx, _ = cuda.compile_ptx(py_func, sig, cc=(9, 0))
    return ptx


def instructions(lines: list[str]) -> list[str]:
    return [line for line in lines
            if line and not line.endswith(":") and not line.startswith(("//", ".", "{", "}"))]


def k_loop(ptx: str) -> tuple[list[str], list[str]]:
    """(staging, whole step) instructions of a GEMM's K loop: from the loop head (the
    back edge's target) to the first barrier, and to the back edge after the second."""
    lines = [line.strip() for line in ptx.splitlines()]
    barriers = [i for i, line in enumerate(lines) if line.startswith("bar.sync")]
    back = next(i for i in range(barriers[1], len(lines)) if "bra" in lines[i].split()[:2])
    head = lines.index(lines[back].split()[-1].rstrip(";") + ":")
    return instructions(lines[head:barriers[0]]), instructions(lines[head:back + 1])


def divisions(lines: list[str]) -> int:
    """64-bit integer divisions and remainders: each is dozens of instructions on a GPU."""
    return sum(bool(re.match(r"(div|rem)\.[su]64", line)) for line in lines)


def ptxas_resources(ptx: str) -> dict[str, int]:
    """ptxas's report for sm_90: registers per thread, static shared bytes, spill bytes."""
    if PTXAS is None:
        raise FileNotFoundError("ptxas is not installed (it comes with the CUDA toolkit)")
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "kernel.ptx")
        with open(source, "w") as f:
            f.write(ptx)
        report = subprocess.run([PTXAS, "-arch=sm_90", "-v", source, "-o",
                                 os.path.join(tmp, "kernel.cubin")],
                                capture_output=True, text=True)
    if report.returncode != 0:
        raise RuntimeError(f"ptxas rejected the PTX: {report.stderr[-2000:]}")
    found = {key: re.search(pattern, report.stderr) for key, pattern in (
        ("registers", r"Used (\d+) registers"), ("shared", r"(\d+) bytes smem"),
        ("spills", r"(\d+) bytes spill stores"))}
    return {key: int(m.group(1)) if m else 0 for key, m in found.items()}


def main(argv: list[str] | None = None) -> int:
    parts = sys.argv[1:] if argv is None else argv
    from numba import cuda, float32
    if not cuda.is_available():
        import numba.cuda.dispatcher as dispatcher
        dispatcher.get_current_device = sm90_device
    import graphcnn.backends.cuda.kernels  # noqa: F401  (records every example)
    import graphcnn.backends.cuda.optim  # noqa: F401
    from graphcnn.backends.cuda.registry import PTX_EXAMPLES
    print(f"{'kernel (float32, sm_90)':44s} {'regs':>4s} {'smem':>5s} {'spill':>5s} "
          f"{'K step':>6s} {'staging':>7s} {'div64':>5s}")
    for name in sorted(PTX_EXAMPLES):
        if parts and not any(p in name for p in parts):
            continue
        ptx = compile_example(name, float32)
        used = ptxas_resources(ptx) if PTXAS else {}
        row = f"{name[-44:]:44s} {used.get('registers', '-'):>4} {used.get('shared', '-'):>5} " \
              f"{used.get('spills', '-'):>5}"
        if "gemm" in name and "split" not in name:
            staging, step = k_loop(ptx)
            row += f" {len(step):6d} {len(staging):7d} {divisions(step):5d}"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
