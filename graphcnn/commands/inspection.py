"""``graphcnn inspect``: what the optimizer made of a model.

    graphcnn inspect MODEL [--batch-size N] [--opt-level N] [--training]
                           [--dot FILE] [--png FILE]

prints three sections:

* the kernels in schedule order: one line per compute node of the optimized graph, a
  fused node shown with the ops inside it (``fused[conv2d + add + relu]``), its output
  value and type, and the user's source line (``node.loc``) when the node has one; on
  the cpu backend, the implementation the runner chose for it (backends/cpu/strategy.py:
  ``winograd``, ``direct-wide``, ``nchw16c-1x1``...; ``default`` for an op's one kernel);
  a reshape or flatten that the cpu runner executes as a view of its input's memory is
  listed as ``(view, no kernel)``;
* the memory plan: one row per arena buffer (offset, size, live range in schedule steps,
  and the tensors sharing it: more than one when an op writes in place);
* the report of the executable (``Executable.report()``) with the ratios of the peak to the
  lower bound and to the naive sum.

``--dot FILE`` writes ONE DOT digraph with two clusters, ``cluster_before`` (the graph as
the model built it) and ``cluster_after`` (the graph after the opt-level pipeline), side by
side; node names are prefixed ``b_`` and ``a_``. ``--png FILE`` renders the same two graphs
side by side: with Graphviz's ``dot`` when it is installed, otherwise with networkx +
matplotlib (a layered drawing; params and constants are left out of that picture).

Every section is a function returning a string (easy to test); `inspect_model` builds the
graphs and the executable, `format_inspection` puts the sections together.

``graphcnn inspect FILE`` with an artifact written by ``graphcnn compile -o`` shows what it
holds (`inspect_artifact`). (This module is not called ``inspect.py``: that is the standard
library's name.)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from graphcnn.commands.common import (
    OPT_LEVEL_HELP,
    OPT_LEVELS,
    CommandError,
    add_command,
    check_output_file,
    load_model,
    positive_int,
)
from graphcnn.ir.graph import Graph
from graphcnn.ops.fused import op_label
from graphcnn.runtime.memory_plan import MemoryPlan

SOURCES = ("input", "param", "constant")


@dataclass
class Inspection:
    """A model's graph before and after the pipeline, and the executable built from it."""
    name: str
    before: Graph
    after: Graph
    executable: Any                 # graphcnn.runtime.executable.Executable
    batch_size: int
    opt_level: int
    training: bool

    @property
    def plan(self) -> MemoryPlan | None:
        return getattr(self.executable.runner, "plan", None)


def inspect_model(model: Any, batch_size: int = 1, opt_level: int = 2,
                  training: bool = False, backend: str = "cpu") -> Inspection:
    """Compile `model` as `gc.compile` (inference) or `gc.value_and_grad` (training, with
    cross-entropy) would, and keep the unoptimized graph next to the optimized one."""
    import graphcnn as gc
    from graphcnn.api import training_graph

    if training:
        before = training_graph(model, "cross_entropy", batch_size)
        exe = gc.value_and_grad(model, batch_size=batch_size, backend=backend,
                                opt_level=opt_level).executable
    else:
        before = model.graph(batch_size, training=False, frozen=True)
        exe = gc.compile(model, batch_size=batch_size, backend=backend, opt_level=opt_level)
    return Inspection(model.name, before, exe.graph, exe, batch_size, opt_level, training)


# ---- text --------------------------------------------------------------------------------

def short_location(loc: str | None) -> str:
    """The user's file:line, relative to the working directory when it is below it."""
    if not loc:
        return ""
    path, sep, line = loc.rpartition(":")
    if not sep or not path:
        return loc
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return loc
    return f"{rel}:{line}" if not rel.startswith("..") else loc


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: set[int]
           ) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def format_kernels(graph: Graph, plan: MemoryPlan | None = None,
                   implementations: dict[int, str] | None = None,
                   step_bytes: dict[int, tuple[int, int]] | None = None) -> str:
    """The compute nodes in schedule order (the order the runner executes them), with the
    implementation each runs (node id -> name: the cpu runner's record) when given, and
    with `step_bytes` (node id -> (prepacked weight bytes, workspace bytes): the runner's
    steps') the memory each step holds beyond the arena."""
    views = plan.views if plan is not None else set()
    rows = []
    kernels = 0
    for step, node in enumerate(graph.compute_nodes()):
        outs = ", ".join(f"%{v.id}" for v in node.outputs)
        types = ", ".join(str(v.type) for v in node.outputs)
        label = op_label(node)
        if node.id in views:
            label += "  (view, no kernel)"
        else:
            kernels += 1
        chosen = () if implementations is None else (implementations.get(node.id, "-"),)
        held: tuple[str, ...] = ()
        if step_bytes is not None:
            packed, scratch = step_bytes.get(node.id, (0, 0))
            held = (f"{packed:,}" if packed else "-", f"{scratch:,}" if scratch else "-")
        rows.append((str(step), label, *chosen, *held, outs, types, short_location(node.loc)))
    fused = sum(1 for n in graph.compute_nodes() if n.op == "fused")
    head = (f"kernels in schedule order: {kernels} kernels ({fused} fused), "
            f"{len(rows)} ops")
    chosen_column = () if implementations is None else ("implementation",)
    held_columns = () if step_bytes is None else ("prepacked", "workspace")
    columns = ("step", "kernel", *chosen_column, *held_columns, "output", "type", "source")
    first = 2 + len(chosen_column)
    lines = [head] + _table(columns, rows, {0, *range(first, first + len(held_columns))})
    return "\n".join(lines)


def format_memory_plan(graph: Graph, plan: MemoryPlan) -> str:
    """One row per buffer of the arena, by offset: the tensors in it (several when ops
    write in place), offset, size and live range in schedule steps ('end': a graph output,
    kept to the end of the run)."""
    steps = graph.compute_nodes()
    end = len(steps)
    made_by = {v.id: step for step, node in enumerate(steps) for v in node.outputs}
    types = {v.id: str(v.type) for node in steps for v in node.outputs}
    rows = []
    for values, offset, size, first, last in plan.describe():
        ids = [int(t.lstrip("%")) for t in values.split(",")]
        tensors = ", ".join(f"%{i} {types[i]} (step {made_by[i]})" for i in ids)
        live = f"{first}..{'end' if last >= end else last}"
        rows.append((f"{offset:,}", f"{size:,}", live, tensors))
    shared = sum(1 for b in plan.buffers if len(b.values) > 1)
    head = (f"memory plan: {len(plan.buffers)} buffers in one {plan.arena_bytes:,}-byte arena"
            f" ({shared} shared in place; {len(plan.views)} views)")
    lines = [head] + _table(("offset", "bytes", "live", "tensors"), rows, {0, 1})
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """Executable.report() as `key  value` lines, bytes with separators, and the ratios."""
    lines = ["report:"]
    width = max(len(k) for k in report) + 2
    for key, value in report.items():
        text = f"{value:,}" if isinstance(value, int) and key.endswith("bytes") else str(value)
        lines.append(f"  {key:<{width}}{text}")
    # The plan's arena is what the lower bound and the naive figure measure; peak_bytes
    # adds the workspace and the prepacked weights (a report without an arena: the peak).
    arena_key = "arena_bytes" if "arena_bytes" in report else "peak_bytes"
    arena = report.get(arena_key)
    if arena is not None:
        for key in ("lower_bound_bytes", "naive_bytes"):
            if report.get(key):
                label = f"{arena_key.rsplit('_', 1)[0]}/{key.rsplit('_', 1)[0]}"
                lines.append(f"  {label:<{width}}{arena / report[key]:.3f}")
    return "\n".join(lines)


def format_reasons(graph: Graph, steps: Sequence[Any]) -> str:
    """Why each step runs the implementation it does (the rule, the cost model or the
    autotuner, as the backend's strategy recorded it), by schedule step."""
    step_of = {node.id: k for k, node in enumerate(graph.compute_nodes())}
    lines = ["why each implementation (by step):"]
    lines += [f"  {step_of.get(s.node, '?'):>4}  {s.implementation}: {s.why}" for s in steps]
    return "\n".join(lines)


def format_inspection(insp: Inspection) -> str:
    mode = "training step (forward + loss + backward)" if insp.training else "inference"
    head = (f"{insp.name}: {mode}, batch size {insp.batch_size}, opt level {insp.opt_level}, "
            f"backend {insp.executable.backend}; {len(insp.before.compute_nodes())} ops before "
            f"optimization, {len(insp.after.compute_nodes())} after")
    steps = insp.executable.runner.steps
    chosen = {s.node: s.implementation for s in steps} \
        if any(s.implementation for s in steps) else None  # the backends that choose
    held = {s.node: (s.packed_bytes, s.workspace_bytes) for s in steps} \
        if chosen is not None else None
    parts = [head, "", format_kernels(insp.after, insp.plan, chosen, held)]
    if chosen is not None:
        parts += ["", format_reasons(insp.after, steps)]
    if insp.plan is not None:
        parts += ["", format_memory_plan(insp.after, insp.plan)]
    parts += ["", format_report(insp.executable.report())]
    return "\n".join(parts)


# ---- DOT and pictures ----------------------------------------------------------------------

def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_cluster(graph: Graph, prefix: str, title: str) -> list[str]:
    lines = [f"  subgraph cluster_{prefix.rstrip('_') or 'g'} {{",
             f'    label="{_dot_escape(title)}";']
    for node in graph.nodes:
        types = ", ".join(str(v.type) for v in node.outputs)
        name = node.attrs.get("name") if node.op in SOURCES else None
        label = op_label(node) + (f" {name}" if name else "")
        style = ""
        if node.op in ("param", "constant"):
            style = ", shape=ellipse, fontsize=8, color=gray, fontcolor=gray"
        elif node.op == "fused":
            style = ", style=filled, fillcolor=lightblue"
        lines.append(f'    {prefix}{node.id} [label="{_dot_escape(label)}\\n'
                     f'{_dot_escape(types)}"{style}];')
    for node in graph.nodes:
        for value in node.inputs:
            lines.append(f"    {prefix}{value.node.id} -> {prefix}{node.id};")
    for k, (name, value) in enumerate(zip(graph.output_names, graph.outputs)):
        lines.append(f'    {prefix}out{k} [label="{_dot_escape(name)}", shape=ellipse];')
        lines.append(f"    {prefix}{value.node.id} -> {prefix}out{k};")
    lines.append("  }")
    return lines


def to_dot_before_after(before: Graph, after: Graph, opt_level: int | None = None) -> str:
    """One DOT digraph holding two clusters: the graph before and after optimization."""
    level = f" (opt level {opt_level})" if opt_level is not None else ""
    lines = [f'digraph "{_dot_escape(before.name)}" {{',
             "  rankdir=TB;", "  node [shape=box, fontname=monospace];"]
    lines += _dot_cluster(before, "b_", f"before: {len(before.compute_nodes())} ops")
    lines += _dot_cluster(after, "a_", f"after{level}: {len(after.compute_nodes())} ops")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layers(graph: Graph, keep: set[int]) -> dict[int, int]:
    """Node id -> depth (longest path from a kept source), over the kept nodes."""
    depth: dict[int, int] = {}
    for node in graph.nodes:
        if node.id not in keep:
            continue
        preds = [depth[v.node.id] for v in node.inputs if v.node.id in depth]
        depth[node.id] = 1 + max(preds) if preds else 0
    return depth


def _draw_matplotlib(graphs: list[tuple[str, Graph]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    drawn = []
    for title, graph in graphs:
        keep = {n.id for n in graph.nodes if n.op not in ("param", "constant")}
        depth = _layers(graph, keep)
        dag = nx.DiGraph()
        for node in graph.nodes:
            if node.id in keep:
                dag.add_node(node.id, layer=depth[node.id], label=op_label(node),
                             fused=node.op == "fused")
                for v in node.inputs:
                    if v.node.id in keep:
                        dag.add_edge(v.node.id, node.id)
        drawn.append((title, dag, max(depth.values(), default=0) + 1))
    from collections import Counter

    rows = max(d for _, _, d in drawn)
    widest = max(max(Counter(nx.get_node_attributes(g, "layer").values()).values(), default=1)
                 for _, g, _ in drawn)
    fig, axes = plt.subplots(1, len(drawn), squeeze=False,
                             figsize=(min(4 + 1.6 * widest, 40) * len(drawn),
                                      min(3 + 0.5 * rows, 300)))
    for ax, (title, dag, _) in zip(axes[0], drawn):
        ax.set_title(title)
        ax.axis("off")
        if not dag:
            continue
        pos = nx.multipartite_layout(dag, subset_key="layer", align="horizontal", scale=1.0)
        pos = {k: (x, -y) for k, (x, y) in pos.items()}   # layer 0 at the top
        colors = ["lightblue" if dag.nodes[n]["fused"] else "lightgray" for n in dag]
        nx.draw_networkx_edges(dag, pos, ax=ax, arrows=True, arrowsize=8, width=0.8,
                               edge_color="gray", node_size=300)
        nx.draw_networkx_nodes(dag, pos, ax=ax, node_color=colors, node_size=300,
                               node_shape="s")
        nx.draw_networkx_labels(dag, pos, ax=ax, font_size=6,
                                labels=nx.get_node_attributes(dag, "label"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_png(before: Graph, after: Graph, path: str | Path,
               opt_level: int | None = None) -> str:
    """A picture of the graph before and after optimization, side by side. Returns the
    renderer used: 'graphviz' (when `dot` is installed) or 'matplotlib'."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    dot = shutil.which("dot")
    if dot:
        with tempfile.NamedTemporaryFile("w", suffix=".dot", delete=False) as f:
            f.write(to_dot_before_after(before, after, opt_level))
        try:
            subprocess.run([dot, "-Tpng", f.name, "-o", str(path)], check=True,
                           capture_output=True, timeout=300)
            return "graphviz"
        except (subprocess.SubprocessError, OSError):
            pass  # fall back to matplotlib below
        finally:
            os.unlink(f.name)
    level = f" (opt level {opt_level})" if opt_level is not None else ""
    _draw_matplotlib([(f"before: {len(before.compute_nodes())} ops", before),
                      (f"after{level}: {len(after.compute_nodes())} ops", after)], path)
    return "matplotlib"


# ---- artifacts -----------------------------------------------------------------------------

def is_artifact(path: str) -> bool:
    return os.path.isfile(path) and zipfile.is_zipfile(path)


def inspect_artifact(path: str) -> str:
    """The artifact's manifest summary, then the kernels in schedule order, the memory plan
    and the report of the executable it loads (as `graphcnn inspect MODEL` shows them)."""
    import warnings

    from graphcnn.runtime.artifact import load, summarize
    from graphcnn.runtime.gradient_step import GradientStep

    parts = [summarize(path)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the summary already says if the code runs here
        loaded = load(path, warm_up=False)
    exe = loaded.executable if isinstance(loaded, GradientStep) else loaded
    plan = exe.runner.plan
    assert plan is not None, "a loaded artifact always has its memory plan"
    parts += ["", format_kernels(exe.graph, plan), "", format_memory_plan(exe.graph, plan), "",
              format_report(exe.report())]
    return "\n".join(parts)


# ---- the command ----------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="a zoo name (lenet5, resnet18, ...), an .onnx file, "
                             "path/to/file.py:function, or an artifact written by "
                             "graphcnn compile -o")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="default 1")
    parser.add_argument("--opt-level", type=int, choices=OPT_LEVELS, default=2,
                       help=OPT_LEVEL_HELP)
    parser.add_argument("--training", action="store_true",
                        help="inspect the training step (forward + cross-entropy + backward)")
    parser.add_argument("--dot", metavar="FILE", default=None,
                        help="write one DOT digraph with two clusters: the graph before and "
                             "after optimization")
    parser.add_argument("--png", metavar="FILE", default=None,
                        help="draw the graph before and after optimization side by side "
                             "(Graphviz if installed, else networkx + matplotlib)")


def run(args: argparse.Namespace) -> int:
    """Print the kernels (fused groups with their ops), the memory plan and the report of
    MODEL (a zoo name, an .onnx file or path/to/file.py:function) compiled at an opt
    level; optionally write the graph before/after as DOT or PNG. With an artifact
    written by graphcnn compile -o, show what it holds."""
    for flag, path in (("--dot", args.dot), ("--png", args.png)):
        if path:
            check_output_file(path, flag, make_parents=True)
    # graphcnn compile -o FILE: what it holds (any other existing file that is not an
    # .onnx model is read as an artifact too, so that a damaged one says so)
    if is_artifact(args.model) or (os.path.isfile(args.model)
                                   and not args.model.lower().endswith(".onnx")):
        print(inspect_artifact(args.model))
        return 0
    model = load_model(args.model)
    insp = inspect_model(model, batch_size=args.batch_size, opt_level=args.opt_level,
                         training=args.training)
    print(format_inspection(insp))
    if args.dot:
        Path(args.dot).parent.mkdir(parents=True, exist_ok=True)
        Path(args.dot).write_text(to_dot_before_after(insp.before, insp.after, insp.opt_level))
        print(f"\nDOT (before and after, two clusters): {args.dot}")
    if args.png:
        try:
            how = render_png(insp.before, insp.after, args.png, insp.opt_level)
        except ImportError:
            raise CommandError("--png needs Graphviz's `dot` or matplotlib "
                               "(pip install 'graphcnn[demo]')") from None
        print(f"{'' if args.dot else chr(10)}picture (before and after, {how}): {args.png}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_command(sub, "inspect", "show the kernels, memory plan and report of a "
                       "compiled model", run, add_arguments)
