"""ONNX's own operator conformance cases, as ONNX Runtime runs them as its backend tests
(graphcnn/onnx/conformance.py): every in-scope case passes, or is one of the documented
deliberate refusals, refused in one clear line; and the table of supported ops in
docs/onnx_ops.md is the one the importer's registry makes."""
from pathlib import Path

import pytest

pytest.importorskip("onnx")

from graphcnn.onnx.conformance import (  # noqa: E402
    CNN_OPS,
    DELIBERATE_REFUSALS,
    collect_cases,
    run_cases,
)
from graphcnn.onnx.support_table import markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_every_case_passes_or_is_a_documented_refusal():
    results = run_cases(collect_cases(CNN_OPS))
    assert len(results) >= 300
    unexpected = [f"{r.name}: {r.outcome}: {r.message[:200]}" for r in results
                  if r.outcome != "passed" and r.name not in DELIBERATE_REFUSALS]
    assert unexpected == []
    refused = {r.name: r for r in results if r.outcome != "passed"}
    # each deliberate refusal is still refused, in one line that names the node and op
    assert sorted(refused) == sorted(DELIBERATE_REFUSALS)
    for r in refused.values():
        assert r.outcome == "refused" and "\n" not in r.message
    assert sum(r.outcome == "passed" for r in results) / len(results) >= 0.95


def test_the_supported_ops_table_is_the_registrys():
    assert (ROOT / "docs" / "onnx_ops.md").read_text() == markdown_table(), (
        "docs/onnx_ops.md is out of date: python -m graphcnn.onnx.support_table "
        "> docs/onnx_ops.md")
