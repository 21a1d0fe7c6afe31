"""Test helpers for checkpoint files: rewrite one with a changed header and a valid hash."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from graphcnn.train import checkpoint as ckpt


def repack(path: str | Path, mutate: Callable[[dict[str, Any]], Any]) -> None:
    """Rewrite the checkpoint at `path` with mutate(header) applied (a dict, or the raw
    bytes of the new header) and a valid hash: a crafted file, or one from a buggy
    writer, which the hash cannot catch."""
    data = Path(path).read_bytes()
    _, version, n = ckpt._PREFIX.unpack(data[:ckpt._PREFIX.size])
    header = json.loads(data[ckpt._PREFIX.size:ckpt._PREFIX.size + n])
    body = data[ckpt._aligned(ckpt._PREFIX.size + n):-32]
    header = mutate(header)
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    out = ckpt._PREFIX.pack(ckpt.MAGIC, version, len(raw)) + raw
    out += bytes(ckpt._aligned(len(out)) - len(out)) + body
    Path(path).write_bytes(out + hashlib.sha256(out).digest())
