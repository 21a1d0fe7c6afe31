"""Keeping the last run of each model in a Markdown file (`graphcnn bench --record FILE`).

Each (model, mode) owns one section of the file, between two marker comments:

    <!-- graphcnn bench: resnet18 infer -->
    ... the table of its last run, the machine and the command ...
    <!-- /graphcnn bench: resnet18 infer -->

A new run of the same model and mode replaces its section; other sections, and the
file's hand-written text around them, are left as they are; a model not yet in the file
is appended at its end.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

OPEN = "<!-- graphcnn bench: {key} -->"
CLOSE = "<!-- /graphcnn bench: {key} -->"


def record_section(path: str | Path, key: str, body: str) -> None:
    """Replace (or append) the section `key` of the Markdown file at `path` with `body`.
    The write is atomic: the file is the old one or the new one, never a mix."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    block = f"{OPEN.format(key=key)}\n{body.strip()}\n{CLOSE.format(key=key)}"
    pattern = re.compile(re.escape(OPEN.format(key=key)) + r".*?"
                         + re.escape(CLOSE.format(key=key)), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def sections(path: str | Path) -> dict[str, str]:
    """The recorded sections of a file: key -> body."""
    text = Path(path).read_text()
    found = re.findall(r"<!-- graphcnn bench: (.+?) -->\n(.*?)\n<!-- /graphcnn bench: \1 -->",
                       text, re.S)
    return dict(found)
