"""Tables, comparisons, the speed targets (kept in the JSON) and the PNG bar charts of the
benchmarks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from graphcnn.bench.common import fmt, text_table

SYSTEMS = ("graphcnn", "torch", "onnxruntime", "numpy")

# The speed targets for whole models: (model, mode, batch or None for any) ->
# [(peer, max time ratio graphcnn / peer)]
MODEL_TARGETS: dict[tuple[str, str, int | None], list[tuple[str, float]]] = {
    ("resnet18", "infer", 1): [("onnxruntime", 1.5), ("torch", 0.7)],
    ("resnet18", "infer", 16): [("onnxruntime", 1.5), ("torch", 0.7)],
    ("mobilenet_v2", "infer", 1): [("onnxruntime", 1.5)],
    ("lenet5", "train", 64): [("torch", 0.5)],
    ("resnet18", "train", 16): [("torch", 1.2)],
}


def model_table(results: list[dict[str, Any]], roof: float | None,
                markdown: bool = False) -> str:
    """One row per (model, batch, mode): graphcnn's median ms, GFLOP/s and % of the SGEMM
    roof, then each peer's ms and graphcnn's time as a multiple of it (< 1: faster)."""
    peers = [p for p in SYSTEMS[1:] if any(p in r["systems"] or p in r["notes"]
                                            for r in results)]
    header = ["model", "batch", "mode", "graphcnn ms", "GFLOP/s", "% roof"]
    for p in peers:
        header += [f"{p} ms", f"x {p}"]
    rows = []
    for r in results:
        mine = r["systems"]["graphcnn"]
        g = mine["gflops"]
        row = [r["model"], str(r["batch"]), r["mode"], f"{mine['median_ms']:.2f}",
               fmt(g, ".1f"), fmt(g / roof * 100 if roof and g else None, ".1f")]
        for p in peers:
            if p in r["systems"]:
                row += [f"{r['systems'][p]['median_ms']:.2f}", f"{r['ratios'][p]:.2f}"]
            else:
                row += ["skipped", "-"]
        rows.append(row)
    return text_table(header, rows, markdown)


def model_targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        for key in ((r["model"], r["mode"], r["batch"]), (r["model"], r["mode"], None)):
            for peer, limit in MODEL_TARGETS.get(key, []):
                ratio = r["ratios"].get(peer)
                out.append({"workload": f"{r['model']} {r['mode']} b{r['batch']}",
                            "target": f"time <= {limit} x {peer}", "ratio": ratio,
                            "limit": limit, "met": None if ratio is None else ratio <= limit,
                            "missed_by": None if ratio is None or ratio <= limit
                            else ratio / limit})
    return out


def comparison_text(results: list[dict[str, Any]]) -> str:
    """One line per workload: graphcnn's time as a multiple of each measured peer's, in
    words (the table's "x PEER" columns, read out)."""
    lines = []
    for r in results:
        parts = []
        for peer, ratio in r["ratios"].items():
            if ratio is None:
                continue
            how = ("faster" if ratio < 1 else "slower" if ratio > 1 else "as fast")
            parts.append(f"{ratio:.2f}x {peer}'s time ({how})")
        if parts:
            lines.append(f"- {r['model']} {r['mode']} batch {r['batch']}: graphcnn takes "
                         + "; ".join(parts))
    return "\n".join(lines)


def notes_text(results: list[dict[str, Any]]) -> str:
    lines = []
    seen = set()
    for r in results:
        for peer, note in r["notes"].items():
            if (peer, note) not in seen:
                seen.add((peer, note))
                lines.append(f"- {r['model']} b{r['batch']} {r['mode']}: {peer} skipped: {note}")
    return "\n".join(lines)


def checks_text(results: list[dict[str, Any]]) -> str:
    from graphcnn.bench.gradient_check import gradient_text
    from graphcnn.bench.model_bench import check_text
    lines = []
    for r in results:
        for peer, check in r["checks"].items():
            lines.append(f"- {r['model']} b{r['batch']} {r['mode']} vs {peer}: "
                         f"{check_text(check)}")
        if "gradient_check" in r:
            lines.append(f"- {r['model']} b{r['batch']} {r['mode']}: "
                         f"{gradient_text(r['gradient_check'])}")
    return "\n".join(lines)


def conv_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    header = ["layer", "batch", "pass", "algorithm", "graphcnn ms", "GFLOP/s", "% roof",
              "torch ms", "torch GFLOP/s", "x torch"]
    body = []
    for r in rows:
        mine, t = r["graphcnn"], r.get("torch")
        body.append([r["layer"], str(r["batch"]), r["pass"], r["algorithm"] or "-",
                     f"{mine['median_ms']:.3f}", fmt(mine["gflops"], ".1f"),
                     fmt(r["roof_fraction"] * 100 if r.get("roof_fraction") else None, ".1f"),
                     f"{t['median_ms']:.3f}" if t else "skipped",
                     fmt(t["gflops"], ".1f") if t else "-",
                     fmt(r.get("ratio"), ".2f")])
    return text_table(header, body, markdown)


# ---- charts -------------------------------------------------------------------------------

def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt: Any, fig: Any, ax: Any, path: str | Path) -> Path:
    """Add the legend, write the chart to path (its folder made if missing), close it."""
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def model_chart(results: list[dict[str, Any]], path: str | Path, roof: float | None = None
                ) -> Path:
    """Grouped bars: median ms per workload and system (log scale)."""
    plt = _pyplot()
    systems = [s for s in SYSTEMS if any(s in r["systems"] for r in results)]
    labels = [f"{r['model']}\nb{r['batch']} {r['mode']}" for r in results]
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(results) * max(1, len(systems)) / 2),
                                    4.2))
    for k, s in enumerate(systems):
        xs, ys = [], []
        for i, r in enumerate(results):
            if s in r["systems"]:
                xs.append(i + (k - (len(systems) - 1) / 2) * width)
                ys.append(r["systems"][s]["median_ms"])
        bars = ax.bar(xs, ys, width, label=s)
        for bar, y in zip(bars, ys):
            ax.annotate(f"{y:.3g}", (bar.get_x() + bar.get_width() / 2, y), ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("median time per call (ms, log scale)")
    ax.set_yscale("log")
    title = "graphcnn vs peers"
    if roof:
        title += f" (SGEMM roof {roof:.0f} GFLOP/s)"
    ax.set_title(title)
    return _save(plt, fig, ax, path)


def conv_chart(rows: list[dict[str, Any]], path: str | Path, roof: float | None = None
               ) -> Path:
    """GFLOP/s per layer and pass, graphcnn vs torch, with the SGEMM roof as a line."""
    plt = _pyplot()
    labels = [f"{r['layer']} b{r['batch']}\n{r['pass'].replace('_grad', ' grad')}"
              for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows)), 4.2))
    xs = list(range(len(rows)))
    ax.bar([x - 0.2 for x in xs], [r["graphcnn"]["gflops"] or 0 for r in rows], 0.4,
           label="graphcnn")
    if any("torch" in r for r in rows):
        ax.bar([x + 0.2 for x in xs], [r["torch"]["gflops"] if "torch" in r else 0
                                       for r in rows], 0.4, label="torch")
    if roof:
        ax.axhline(roof, color="black", linestyle="--", linewidth=1,
                   label=f"SGEMM roof {roof:.0f}")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=6, rotation=90)
    ax.set_ylabel("GFLOP/s")
    ax.set_title("ResNet-18 3x3 convolutions")
    return _save(plt, fig, ax, path)
