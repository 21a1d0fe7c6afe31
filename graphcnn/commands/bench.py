"""``graphcnn bench``: the command over the benchmark machinery in graphcnn/bench/.

    graphcnn bench MODEL[,MODEL...] [--batch-size 1,16] [--training]
                         [--against numpy,torch,onnxruntime] [--repeats N] [--opt-level N]
                         [--isolate | --processes N] [--max-batch N] [--record FILE]
                         [--json FILE] [--png FILE] [--markdown FILE]
                         [--profile K] [--threads N]
    graphcnn bench conv-layers [--batch-size 1,16] [--against torch] ...
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from graphcnn.commands.common import (
    OPT_LEVEL_HELP,
    OPT_LEVELS,
    CommandError,
    add_command,
    check_output_file,
    non_negative_int,
    positive_int,
)

CONV_LAYERS = "conv-layers"


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}")
    return sizes


def _peers(text: str) -> list[str]:
    from graphcnn.bench.model_bench import PEERS
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {', '.join(unknown)}; expected some of {', '.join(PEERS)}")
    return list(dict.fromkeys(names))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help=f"zoo names (resnet18, mobilenet_v2, lenet5, ...) or .onnx files, "
                        f"comma-separated; or {CONV_LAYERS!r} (ResNet-18's 3x3 convolutions "
                        f"alone)")
    p.add_argument("--batch-size", type=_batch_sizes, default=None,
                   help="comma-separated batch sizes (default 1; conv-layers: 1,16)")
    p.add_argument("--training", action="store_true",
                   help="time the training step (value_and_grad + SGD update), not inference")
    p.add_argument("--against", type=_peers, default=None,
                   help="comma-separated peers among numpy, torch, onnxruntime "
                        "(default all; conv-layers: torch); '' for none")
    p.add_argument("--repeats", type=non_negative_int, default=20, help="timed calls (default 20)")
    p.add_argument("--warmup", type=non_negative_int, default=2,
                   help="untimed calls before timing (default 2)")
    p.add_argument("--opt-level", type=int, choices=OPT_LEVELS, default=2,
                  help=OPT_LEVEL_HELP)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="thread count for graphcnn and every peer (default: graphcnn's, "
                        "all cores or NUMBA_NUM_THREADS)")
    p.add_argument("--profile", type=non_negative_int, default=0, metavar="K",
                   help="also time each graphcnn kernel alone and print the K slowest")
    p.add_argument("--roof-size", type=non_negative_int, default=2048, metavar="N",
                   help="the SGEMM roof is numpy's float32 N x N matmul (default 2048)")
    p.add_argument("--isolate", action="store_true",
                   help="time each system in a fresh process of its own (default: all in "
                        "this one, each system's calls in blocks of their own)")
    p.add_argument("--processes", type=non_negative_int, default=0, metavar="N",
                   help="time each system in N fresh processes of its own and report the "
                        "median of their medians and their spread (implies --isolate)")
    p.add_argument("--max-batch", type=positive_int, default=None, metavar="N",
                   help="time graphcnn's inference on one executable for any batch size up "
                        "to N (gc.compile(batch_size=None, max_batch=N)) at each batch size")
    p.add_argument("--record", default=None, metavar="FILE",
                   help="keep each model's table of this run in the Markdown FILE (e.g. "
                        "benchmarks/RESULTS.md), replacing that model's previous one")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    p.add_argument("--png", default=None, metavar="FILE", help="write a bar chart")
    p.add_argument("--markdown", default=None, metavar="FILE",
                   help="write the tables as Markdown (for benchmarks/RESULTS.md)")


def run(args: argparse.Namespace) -> int:
    """Time MODEL's inference (or training step) with graphcnn and each peer in one run:
    medians over repeats, time ratios (graphcnn / peer: below 1 is faster), GFLOP/s and
    the fraction of the measured SGEMM roof: a table on screen, and with --json FILE,
    --png FILE or --markdown FILE also the results as JSON, a bar chart, Markdown tables."""
    import graphcnn as gc
    from graphcnn.bench import common
    from graphcnn.bench.cross_core import cross_core_cost, phase_line

    for flag, path in (("--json", args.json), ("--png", args.png),
                       ("--markdown", args.markdown), ("--record", args.record)):
        if path:   # before minutes of timing
            check_output_file(path, flag, make_parents=True)
    is_conv = args.model.lower() == CONV_LAYERS
    args.models = [] if is_conv else _model_names(args.model)
    if args.isolate and not args.processes:
        args.processes = 1
    if args.threads is not None:
        gc.set_num_threads(args.threads)
    info = common.machine()
    print(f"machine: {common.machine_line(info)}")
    roof = None
    roof_info: dict[str, Any] | None = None
    if args.roof_size:
        roof_info = common.sgemm_roof(args.roof_size)
        roof = roof_info["gflops"]
        print(f"SGEMM roof: numpy float32 {args.roof_size}x{args.roof_size} matmul "
              f"{roof:.1f} GFLOP/s (median; best {roof_info['best_gflops']:.1f})")
    options = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    # The host's phase (bench/cross_core.py), before and after: it can change mid-run.
    before = cross_core_cost()
    print(phase_line(before, "before the runs"))
    out: dict[str, Any] = {"argv": sys.argv[1:], "options": options, "machine": info,
                           "sgemm_roof": roof_info, "cross_core": {"before": before}}
    start = time.perf_counter()
    if is_conv:
        text, md = _conv(args, roof, out)
    else:
        text, md = _model(args, roof, out)
    out["total_seconds"] = time.perf_counter() - start
    after = out["cross_core"]["after"] = cross_core_cost()
    phases = [phase_line(before, "before the runs"), phase_line(after, "after them")]
    text, md = "\n".join([text, ""] + phases), "\n".join([md, ""] + [f"- {p}" for p in phases])
    args.phases = phases
    print()
    print(text)
    if args.json:
        print(f"\nJSON: {common.write_json(args.json, out)}")
    if args.png:
        from graphcnn.bench import report
        if is_conv:
            path = report.conv_chart(out["rows"], args.png, roof)
        else:
            path = report.model_chart(out["results"], args.png, roof)
        print(f"PNG: {path}")
    if args.record and not is_conv:
        _record(args, out["results"], roof, info)
        print(f"Recorded in {args.record}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(md + "\n")
        print(f"Markdown: {args.markdown}")
    return 0


def _model(args: argparse.Namespace, roof: float | None, out: dict[str, Any]
           ) -> tuple[str, str]:
    from graphcnn.bench import report
    from graphcnn.bench.model_bench import PEERS, bench_model

    against = list(PEERS) if args.against is None else args.against
    results = []
    for name in args.models:
        results += bench_model(name, args.batch_size or [1], args.training, against,
                               args.repeats, args.opt_level, warmup=args.warmup,
                               profile_repeats=max(3, args.repeats // 4) if args.profile
                               else 0, log=lambda s: print(s, flush=True),
                               processes=args.processes, max_batch=args.max_batch)
    for r in results:
        g = r["systems"]["graphcnn"]["gflops"]
        r["roof_fraction"] = g / roof if roof and g else None
    # the speed targets graphcnn's developers track go to the JSON only, not on screen
    out["results"], out["targets"] = results, report.model_targets(results)
    sections: list[str] = []
    md: list[str] = []
    for markdown, dest in ((False, sections), (True, md)):
        dest.append(report.model_table(results, roof, markdown))
        dest.append("")
        dest.append("ms: median per call; x PEER: graphcnn's time / the peer's (below 1: "
                    "graphcnn is faster); GFLOP/s: conv/linear/matmul FLOPs of the graph "
                    "graphcnn runs, per second (a Winograd conv counts the direct conv's "
                    "FLOPs: an effective rate, which can pass the roof); % roof: of the "
                    "SGEMM roof.")
        for title, text in (("Skipped", report.notes_text(results)),
                            ("Cross-checks (before timing)", report.checks_text(results)),
                            ("Compared", report.comparison_text(results))):
            if text:
                dest += ["", f"{title}:", text]
        if args.profile:
            from graphcnn.bench.profile import profile_table, summary_table
            for r in results:
                name = f"{r['model']} b{r['batch']} {r['mode']}"
                total = sum(row["ms"] for row in r["profile"])
                warm = sum(row["warm_ms"] for row in r["profile"])
                call = r["systems"]["graphcnn"]["median_ms"]
                dest += ["", f"Profile of {name}: {len(r['profile'])} kernels, "
                             f"{total:.2f} ms summed (median of each kernel timed in "
                             f"order inside whole passes; the whole call's median above: "
                             f"{call:.2f} ms); warm ms: each kernel run again at once, its "
                             f"data in cache ({warm:.2f} ms summed: the rest is the "
                             f"network's memory traffic); by kernel kind:",
                         summary_table(r["profile"], args.profile, roof, markdown),
                         "", f"The {args.profile} slowest steps:",
                         profile_table(r["profile"], args.profile, roof, markdown)]
    return "\n".join(sections), "\n".join(md)


def _model_names(text: str) -> list[str]:
    """The comma-separated zoo names and .onnx files of MODEL, checked before any timing."""
    from graphcnn.models import ZOO
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name.lower().endswith(".onnx"):
            if not Path(name).is_file():
                raise CommandError(f"no such ONNX file: {name}")
        elif name.lower() not in ZOO:
            raise CommandError(f"unknown model {name!r}: expected {CONV_LAYERS!r}, an .onnx "
                               f"file or a zoo name ({', '.join(sorted(ZOO))})")
    if not names:
        raise CommandError("no model given")
    return [n if n.lower().endswith(".onnx") else n.lower() for n in names]


def _command_line(args: argparse.Namespace) -> str:
    """The bench command that repeats this run's measurements (its output files left out)."""
    parts = ["graphcnn bench", args.model]
    if args.batch_size:
        parts += ["--batch-size", ",".join(map(str, args.batch_size))]
    if args.training:
        parts.append("--training")
    if args.against is not None:
        parts += ["--against", ",".join(args.against) or "''"]
    parts += ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if args.processes:
        parts += ["--processes", str(args.processes)]
    if args.max_batch:
        parts += ["--max-batch", str(args.max_batch)]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    return " ".join(parts)


def _record(args: argparse.Namespace, results: list[dict[str, Any]], roof: float | None,
            info: dict[str, Any]) -> None:
    """Each model's rows of this run as its section of the Markdown file `path`."""
    from graphcnn.bench import common, report
    from graphcnn.bench.cross_core import phases_text, steals_text
    from graphcnn.bench.record import record_section

    by_model: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        by_model.setdefault((r["model"], r["mode"]), []).append(r)
    command = _command_line(args)
    for (model, mode), rows in by_model.items():
        timing = rows[0].get("timing", "")
        spreads = [f"{r['model']} b{r['batch']} {system} {100 * t['spread']:.0f}% "
                   f"(cross-core {phases_text(t.get('cross_core_ratios', []))}; stolen "
                   f"{steals_text(t.get('steals', []))})"
                   for r in rows for system, t in r["systems"].items() if "spread" in t]
        body = "\n".join([
            f"Last run: `{command}` on {time.strftime('%Y-%m-%d')}; "
            f"{common.machine_line(info)}; {timing}.",
            "", report.model_table(rows, roof, markdown=True)]
            + (["", "Spread of the processes' medians ((max - min) / median): "
                + ", ".join(spreads) + "."] if spreads else [])
            + [""] + [f"- {p}" for p in getattr(args, "phases", [])])
        record_section(args.record, f"{Path(model).name} {mode}", body)


def _conv(args: argparse.Namespace, roof: float | None, out: dict[str, Any]
          ) -> tuple[str, str]:
    from graphcnn.bench import report
    from graphcnn.bench.conv_layers import bench_conv_layers

    against = ["torch"] if args.against is None else args.against
    use_torch = "torch" in against
    note = ""
    if use_torch:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            use_torch = False
            note = f"torch skipped: torch is not installed ({exc})"
            print(note)
    others = [p for p in against if p != "torch"]
    if others:
        print(f"conv-layers compares with torch only; ignoring {', '.join(others)}")
    res = bench_conv_layers(args.batch_size or [1, 16], args.repeats, args.warmup, use_torch,
                            roof, log=lambda s: print(s, flush=True))
    out.update(res)
    out["notes"] = [note] if note else []
    legend = ("ms: median per call of the chosen cpu implementation with preallocated "
              "buffers; x torch: graphcnn's time / torch's; % roof: of the SGEMM roof "
              "(Winograd rows count the direct conv's FLOPs: an effective rate); algorithm: "
              "what the cpu strategy picks (its rules and cost model, or autotune's measured "
              "choice).")
    texts = []
    for markdown in (False, True):
        parts = [report.conv_table(res["rows"], markdown), "", legend]
        if note:
            parts += ["", note]
        texts.append("\n".join(parts))
    return texts[0], texts[1]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_command(sub, "bench", "time a model (or ResNet-18's 3x3 convolutions) "
                       "against numpy, torch and onnxruntime", run, add_arguments)
