"""The Python blocks of the guides in docs/ run as written (each in a fresh namespace)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(DOCS.glob("*.md")):
        for i, match in enumerate(BLOCK.finditer(path.read_text())):
            found.append((path.name, i, match.group(1)))
    return found


def test_the_guides_have_python_blocks():
    assert any(name == "safety.md" for name, _, _ in blocks())


@pytest.mark.parametrize("name,index,code", blocks(), ids=lambda v: str(v)[:20])
def test_a_guide_block_runs(name, index, code, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # files a block writes land here
    exec(compile(code, f"docs/{name}[{index}]", "exec"), {"__name__": "__docs__"})
    assert "Traceback" not in capsys.readouterr().err
