"""Every script in examples/ runs, with small settings: those the guides show are run by
tests/test_docs_snippets.py (with ``--quick``); the others here."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shown_in_the_guides() -> set[str]:
    """The examples a guide shows as a command (so the docs test runs them)."""
    found = set()
    for path in DOCUMENTS:
        for block in re.findall(r"```\w*\n(.*?)```", path.read_text(), re.S):
            found |= set(re.findall(r"^python examples/(\w+\.py)", block, re.M))
    return found


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_example_is_run_by_a_test():
    assert set(EXAMPLES) == shown_in_the_guides() | {"shapes_preview.py",
                                                      "onnx_torchvision.py"}


def test_shapes_preview(tmp_path):
    out = run(str(ROOT / "examples" / "shapes_preview.py"), "preview.png", "--n", "2",
              "--size", "32", cwd=tmp_path)
    assert (tmp_path / "preview.png").read_bytes()[:4] == b"\x89PNG", out


def test_onnx_torchvision_checks_a_file(tmp_path):
    # its `export` step needs torch and torchvision (another environment, as its docstring
    # says); `check` runs on any ONNX file, here one graphcnn exported (onnxruntime is
    # in the dev extra)
    import graphcnn as gc
    path = gc.onnx.save(gc.models.lenet5(), tmp_path / "lenet5.onnx")
    out = run(str(ROOT / "examples" / "onnx_torchvision.py"), "check", path, cwd=tmp_path)
    assert "lenet5.onnx" in out
