"""A plain-text description of an artifact, from its manifest alone."""
from __future__ import annotations

import os

from graphcnn.runtime.artifact.format import field, read_manifest


def summarize(path: str | os.PathLike) -> str:
    """What an artifact is, from its manifest alone (nothing loaded or verified): kind,
    versions, target (and whether this machine can run its code), inputs and outputs, the
    precompiled kernel entries and the members."""
    from graphcnn.backends.cpu.precompiled import target_mismatch

    manifest = read_manifest(path)
    made = manifest.get("created_by", {})
    target = manifest.get("target", {})
    members = manifest.get("members", {})
    size = sum(m.get("size", 0) for m in members.values() if isinstance(m, dict))
    try:
        reasons = target_mismatch(field(manifest, "target", dict, "manifest"),
                                  field(manifest, "created_by", dict, "manifest"))
    except (ValueError, TypeError, AttributeError):
        reasons = ["unreadable target"]
    here = "this machine runs it" if not reasons else "this machine compiles instead: " + \
        "; ".join(reasons)
    lines = [f"artifact {os.fspath(path)}: {manifest.get('kind')} {manifest.get('name')!r}, "
             f"format {manifest.get('format_version')}, {size / 2**20:.2f} MiB in "
             f"{len(members)} members",
             "made with " + ", ".join(f"{k} {v}" for k, v in made.items()),
             f"compiled for {target.get('triple')}, CPU {target.get('cpu_name')} ({here})"]
    for side in ("inputs", "outputs"):
        for v in manifest.get(side, []):
            lines.append(f"{side[:-1]:7}{v.get('name')}: {v.get('dtype')}{v.get('shape')}")
    if isinstance(manifest.get("max_batch"), int):
        lines.append(f"runs any batch size from 1 to {manifest['max_batch']} (the inputs' "
                     f"first axis)")
    training = manifest.get("training")
    if isinstance(training, dict):
        lines.append(f"training step: loss {training.get('loss')}, "
                     f"{len(training.get('trainable', []))} trainable parameters")
    kernels = manifest.get("kernels", [])
    code = sum(members.get(m, {}).get("size", 0) for m in {k.get("member") for k in kernels})
    lines.append(f"precompiled kernel entries: {len(kernels)} ({code:,} bytes of object code)")
    for k in kernels:
        lines.append(f"  {k.get('name')}({', '.join(k.get('signature', []))})")
    lines.append(f"compiled in {manifest.get('compile_seconds')} s; memory plan arena "
                 f"{manifest.get('memory_plan', {}).get('arena_bytes', 0):,} bytes")
    return "\n".join(lines)
