"""README.md and every guide in docs/ run as written, top to bottom, as a newcomer would
follow them: each Python block, and each command line shown (``graphcnn ...``,
``python examples/...``, ``python -c ...``, ``mpiexec -n N graphcnn ...``), in document
order in one fresh folder, so a block may use the files an earlier block or command
wrote.

Markers, on the line before a block:

* ``<!-- quote: examples/x.py -->``: the block quotes that script (which
  tests/test_examples.py runs); the test checks the quote is still in the file.
* ``<!-- run with: VAR=value ... (why) -->``: the block runs in a fresh Python with
  those environment variables (e.g. Numba's CUDA simulator, which must be on before
  Python starts).
* ``<!-- not run: reason -->``: not run; the reason is required.

Small settings: commands run as shown except that training runs one epoch, the benchmark
times one call per system at its first batch size, the examples take ``--quick``, and the
demos train their test-sized configurations (those of tests/test_*demo*.py). Lines that
install (``pip install``) are not run: CI runs the install itself. Files the guides name
as the reader's own (``data.npz``, ``x.npy``) are made small in the folder first.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```",
                   re.S)
TABLE_COMMAND = re.compile(r"^\| `(graphcnn [^`]*)`", re.M)
COMMAND = re.compile(r"^((?:[A-Z_]+=\S+ )*)((?:mpiexec -n \d+ )?graphcnn |python )")


@dataclass
class Step:
    kind: str            # "python", "env-python", "quote", "command"
    text: str
    line: int
    marker: str = ""


def steps(path: Path) -> list[Step]:
    """The runnable things of one document, in its order."""
    text = path.read_text()
    found: list[Step] = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("body"))
        marker = (m.group("marker") or "").strip()
        if marker.startswith("not run:"):
            assert marker[len("not run:"):].strip(), f"{path.name}:{line}: give the reason"
            continue
        if m.group("lang") == "python":
            kind = ("quote" if marker.startswith("quote:") else
                    "env-python" if marker.startswith("run with:") else "python")
            found.append(Step(kind, m.group("body"), line, marker))
            continue
        for i, raw in enumerate(m.group("body").splitlines()):
            if COMMAND.match(raw.strip()) and "pip install" not in raw:
                found.append(Step("command", raw.strip(), line + i))
    if path.name == "README.md":   # the table of commands
        for m in TABLE_COMMAND.finditer(text):
            found.append(Step("command", m.group(1), text.count("\n", 0, m.start())))
    return found


# tables generated from the code (graphcnn/onnx's importer registry), nothing to run
REFERENCE_TABLES = {"onnx_ops.md"}


def test_every_document_has_something_to_run():
    for path in DOCUMENTS:
        if path.name not in REFERENCE_TABLES:
            assert steps(path), f"{path.name}: no Python block or command"


def test_markers_are_known():
    for path in DOCUMENTS:
        for marker in re.findall(r"<!-- (.*?) -->", path.read_text()):
            assert marker.split(":")[0] in ("quote", "run with", "not run"), \
                f"{path.name}: unknown marker {marker!r}"


# ---- small settings ---------------------------------------------------------------------------

def _set(argv: list[str], flag: str, value: str) -> None:
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]


def small(argv: list[str]) -> list[str]:
    """The command with the small settings of this module's docstring."""
    argv = list(argv)
    if "--epochs" in argv:
        _set(argv, "--epochs", "1")
    if argv[:1] == ["bench"]:
        if "--batch-size" in argv:
            _set(argv, "--batch-size", argv[argv.index("--batch-size") + 1].split(",")[0])
        for flag, value in (("--repeats", "1"), ("--warmup", "0"), ("--roof-size", "0")):
            _set(argv, flag, value)
    return argv


@pytest.fixture
def tiny_demos(monkeypatch):
    """The demos at the sizes their own tests use."""
    from graphcnn.demos import classify, detect, generate, regress, segment
    monkeypatch.setattr(segment, "CONFIG", dataclasses.replace(
        segment.CONFIG, size=16, n_train=48, n_test=8, base_width=2))
    monkeypatch.setattr(regress, "FULL", regress.Config(
        n_train=64, n_test=24, image_size=16, width=4, stages=2))
    monkeypatch.setattr(detect, "Config", functools.partial(
        detect.Config, n_train=48, n_test=8, image_size=32, grid=4, width=4))
    monkeypatch.setattr(generate, "GanConfig", functools.partial(
        generate.GanConfig, image_size=8, nz=4, ngf=4, ndf=4))
    monkeypatch.setitem(classify.DEFAULTS, "epochs", 1)   # the generate demo's judge


def run_command(step: Step, where: Path, monkeypatch) -> None:
    words = shlex.split(step.text, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if words[0] == "mpiexec":   # the same command as a world of one
        words = words[3:]
    where_line = f"line {step.line}: {step.text}"
    if words[0] == "graphcnn":
        from graphcnn.cli import main
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        try:
            code = main(small(words[1:]))
        except SystemExit as exc:   # --version, as argparse does
            code = exc.code
        for key in env:
            monkeypatch.delenv(key)
        assert code in (0, None), f"{where_line}: exit status {code}"
        return
    args = words[1:]
    if args and args[0] != "-c":
        script = ROOT / args[0]
        args = [str(script), *small(args[1:])]
        if "--quick" in script.read_text():
            args.append("--quick")
    done = subprocess.run([sys.executable, *args], cwd=where, capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert done.returncode == 0, f"{where_line}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def run_python(step: Step, path: Path, where: Path) -> None:
    name = f"{path.name}:{step.line}"
    if step.kind == "quote":
        source = (ROOT / step.marker[len("quote:"):].strip()).read_text()
        assert step.text in source, f"{name}: the quote is no longer in its script"
    elif step.kind == "env-python":
        env = dict(w.split("=", 1) for w in step.marker[len("run with:"):].split("(")[0].split())
        done = subprocess.run([sys.executable, "-c", step.text], cwd=where, text=True,
                              capture_output=True, timeout=600,
                              env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, f"{name}:\n{done.stderr[-3000:]}"
    else:
        exec(compile(step.text, name, "exec"), {"__name__": "__docs__"})


def readers_files(where: Path) -> None:
    """data.npz and x.npy: the reader's own files in the guides, made small here."""
    rng = np.random.default_rng(0)
    np.savez(where / "data.npz", x_train=rng.random((48, 1, 32, 32), dtype=np.float32),
             y_train=rng.integers(0, 10, 48))
    np.save(where / "x.npy", rng.random((1, 1, 32, 32), dtype=np.float32))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_a_document_runs_top_to_bottom(path, tmp_path, monkeypatch, tiny_demos, capsys):
    monkeypatch.chdir(tmp_path)   # what the blocks and commands write lands here
    readers_files(tmp_path)
    for step in steps(path):
        if step.kind == "command":
            run_command(step, tmp_path, monkeypatch)
        else:
            run_python(step, path, tmp_path)
    assert "Traceback" not in capsys.readouterr().err
