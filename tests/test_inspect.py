"""`graphcnn inspect` and graphcnn/commands/inspection.py: the kernels (fused groups named
by their ops), the memory plan rows, the report keys; DOT text of the graph before and
after; a PNG."""
from __future__ import annotations

import re
import shutil
import textwrap

import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.cli import main
from graphcnn.commands.inspection import (
    format_inspection,
    format_kernels,
    format_memory_plan,
    format_report,
    inspect_model,
    op_label,
    render_png,
    to_dot_before_after,
)

REPORT_KEYS = ("ops_before", "kernels", "weights_bytes", "packed_weights_bytes", "arena_bytes",
               "workspace_bytes", "peak_bytes", "naive_bytes", "lower_bound_bytes",
               "compile_seconds", "arena/lower_bound", "arena/naive")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONV_BIAS_RELU = textwrap.dedent("""
    import graphcnn as gc
    from graphcnn import nn

    def conv_bias_relu():
        gc.manual_seed(3)
        x = gc.Input((3, 8, 8), name="image")
        y = gc.relu(nn.Conv2d(3, 4, 3, padding=1, name="conv")(x))
        return gc.Model(inputs=x, outputs=y, name="conv_bias_relu")
""")


def conv_bias_relu() -> gc.Model:
    x = gc.Input((3, 8, 8), name="image")
    y = gc.relu(nn.Conv2d(3, 4, 3, padding=1, name="conv")(x))
    return gc.Model(inputs=x, outputs=y, name="conv_bias_relu")


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def plan_rows(text: str) -> list[tuple[int, int, str, str]]:
    """(offset, bytes, live, tensors) of each memory-plan row in the printed text."""
    section = text.split("memory plan:", 1)[1].split("report:", 1)[0]
    rows = []
    for line in section.splitlines()[2:]:
        m = re.match(r"\s+([\d,]+)\s+([\d,]+)\s+(\d+\.\.(?:\d+|end))\s+(.+)$", line)
        if m:
            rows.append((int(m[1].replace(",", "")), int(m[2].replace(",", "")), m[3], m[4]))
    return rows


# ---- the sections, as functions -------------------------------------------------------------

def test_lenet5_inference_text():
    insp = inspect_model(gc.models.lenet5(), batch_size=2, opt_level=2)
    text = format_inspection(insp)
    assert "lenet5: inference, batch size 2, opt level 2" in text
    # three conv+tanh groups and a linear+tanh, with their types and the zoo's source lines
    assert text.count("fused[conv2d + tanh]") == 3
    assert "fused[linear + tanh]" in text
    first = insp.after.compute_nodes()[0]                 # c1 (conv + tanh)
    assert first.loc and "lenet5.py:" in first.loc        # the zoo's own source line
    # ... with the implementation the cpu runner chose: the wide direct kernel for c1,
    # which prepacks nothing and takes no workspace
    line = re.search(r"^\s+0\s+fused\[conv2d \+ tanh\]\s+direct-wide\s+-\s+-\s+%\d+\s+(\S+)"
                     r"\s+(\S+)$", text, re.M)
    assert line and line[1] == "f32[2,6,28,28]"
    assert line[2].endswith("lenet5.py:" + first.loc.rsplit(":", 1)[1])
    # ... and why, from the same record
    why = next(s.why for s in insp.executable.runner.steps if s.node == first.id)
    assert re.search(rf"^\s+0  direct-wide: {re.escape(why)}$", text, re.M)
    assert "stride 1 unpadded" in why
    assert "flatten  (view, no kernel)" in text
    report = insp.executable.report()
    assert f"kernels in schedule order: {report['kernels']} kernels" in text
    for key in REPORT_KEYS:
        assert re.search(rf"^  {re.escape(key)}\s+\S", text, re.M), key
    # one printed row per buffer of the plan, with the plan's offsets and sizes
    rows = plan_rows(text)
    assert sorted((o, s) for o, s, _, _ in rows) == sorted(
        (b.offset, b.size) for b in insp.plan.buffers)
    assert any(live.endswith("..end") for _, _, live, _ in rows)   # the logits
    assert f"{insp.plan.arena_bytes:,}-byte arena" in text


def test_kernel_lines_follow_the_schedule():
    insp = inspect_model(gc.models.lenet5(), batch_size=1, opt_level=2)
    lines = format_kernels(insp.after, insp.plan).splitlines()[2:]
    nodes = insp.after.compute_nodes()
    assert len(lines) == len(nodes)
    for step, (line, node) in enumerate(zip(lines, nodes)):
        assert line.split()[0] == str(step)
        assert op_label(node) in line and f"%{node.outputs[0].id}" in line


def test_training_step_text_names_backward_groups():
    insp = inspect_model(gc.models.lenet5(), batch_size=4, opt_level=2, training=True)
    text = format_inspection(insp)
    assert "training step (forward + loss + backward)" in text
    assert "fused[avg_pool2d_grad + tanh_grad]" in text
    assert "cross_entropy_grad" in text
    rows = plan_rows(text)
    assert len(rows) == len(insp.plan.buffers)
    shared = sum(1 for b in insp.plan.buffers if len(b.values) > 1)
    assert shared and sum(1 for r in rows if r[3].count("%") > 1) == shared


def test_resnet18_small_names_residual_groups():
    insp = inspect_model(gc.models.resnet18(10, width=8, input_size=32), batch_size=1)
    text = format_kernels(insp.after, insp.plan)
    assert text.count("fused[conv2d + add + relu]") == 8       # one per basic block
    assert "fused[conv2d + relu]" in text and "batch_norm" not in text
    assert "global_avg_pool2d" in text
    plan_text = format_memory_plan(insp.after, insp.plan)
    assert len(plan_rows("memory plan:" + plan_text.split("memory plan:", 1)[1]
                         + "\nreport:")) == len(insp.plan.buffers)


def test_format_report_ratios():
    text = format_report({"backend": "cpu", "kernels": 3, "arena_bytes": 1000,
                          "workspace_bytes": 100, "packed_weights_bytes": 20,
                          "peak_bytes": 1120, "naive_bytes": 4000, "lower_bound_bytes": 800,
                          "compile_seconds": 0.5})
    assert re.search(r"peak_bytes\s+1,120", text)
    assert re.search(r"arena/lower_bound\s+1\.250", text)
    assert re.search(r"arena/naive\s+0\.250", text)


def test_opt_level_0_has_no_fused_nodes():
    insp = inspect_model(conv_bias_relu(), batch_size=1, opt_level=0)
    text = format_inspection(insp)
    assert "fused[" not in text and "conv2d" in text and "relu" in text


# ---- DOT and PNG ---------------------------------------------------------------------------

def test_dot_has_both_graphs():
    insp = inspect_model(conv_bias_relu(), batch_size=1, opt_level=2, backend="reference")
    dot = to_dot_before_after(insp.before, insp.after, 2)
    assert dot.startswith('digraph "conv_bias_relu" {') and dot.rstrip().endswith("}")
    assert dot.count("subgraph cluster_") == 2
    assert "cluster_b" in dot and "cluster_a" in dot
    assert 'label="before: 2 ops"' in dot and 'label="after (opt level 2): 1 ops"' in dot
    assert "fused[conv2d + relu]" in dot
    assert dot.count("{") == dot.count("}")
    # every edge joins nodes declared in the same cluster
    declared = set(re.findall(r"^\s+([ab]_\w+) \[", dot, re.M))
    for src, dst in re.findall(r"^\s+([ab]_\w+) -> ([ab]_\w+);", dot, re.M):
        assert src in declared and dst in declared and src[0] == dst[0]


def test_png_is_written(tmp_path):
    if not shutil.which("dot"):
        pytest.importorskip("matplotlib")
    insp = inspect_model(gc.models.lenet5(), batch_size=1, opt_level=2, backend="reference")
    path = tmp_path / "sub" / "graph.png"
    how = render_png(insp.before, insp.after, path, 2)
    assert how in ("graphviz", "matplotlib")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_png_falls_back_to_matplotlib_without_graphviz(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr("graphcnn.commands.inspection.shutil.which", lambda name: None)
    insp = inspect_model(conv_bias_relu(), batch_size=1, opt_level=2, backend="reference")
    path = tmp_path / "g.png"
    assert render_png(insp.before, insp.after, path) == "matplotlib"
    assert path.read_bytes()[:8] == PNG_MAGIC


# ---- the command ---------------------------------------------------------------------------

def test_cli_inspect_user_file_with_dot_and_png(tmp_path, capsys):
    if not shutil.which("dot"):
        pytest.importorskip("matplotlib")
    source = tmp_path / "mymodel.py"
    source.write_text(CONV_BIAS_RELU)
    dot, png = tmp_path / "g.dot", tmp_path / "g.png"
    code, out, err = run_cli(capsys, "inspect", f"{source}:conv_bias_relu", "--batch-size",
                             "2", "--dot", str(dot), "--png", str(png))
    assert code == 0, err
    assert "fused[conv2d + relu]" in out        # conv (its bias inside) + relu: one kernel
    assert "kernels in schedule order: 1 kernels" in out
    assert "mymodel.py:" in out                          # the user's source line
    assert "f32[2,4,8,8]" in out
    for key in REPORT_KEYS:
        assert key in out
    assert "digraph" in dot.read_text()
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_cli_inspect_training_zoo_model(capsys):
    code, out, err = run_cli(capsys, "inspect", "lenet5", "--training", "--batch-size", "2",
                             "--opt-level", "2")
    assert code == 0, err
    assert "training step" in out and "tanh_grad" in out and "memory plan:" in out


@pytest.mark.parametrize("argv, message", [
    (["inspect", "nosuchnet"], "unknown model"),
    (["inspect", "lenet5", "--opt-level", "7"], "invalid choice"),
    (["inspect", "lenet5", "--batch-size", "0"], "positive integer"),
])
def test_cli_inspect_argument_errors(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err
