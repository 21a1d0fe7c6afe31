"""graphcnn bench over several models and ONNX files at once, each system timed in fresh
processes of its own (--isolate, --processes N: the spread over processes), and the
last run of each model kept in a Markdown file (--record)."""
from __future__ import annotations

import json
import os

import pytest

import graphcnn as gc
from graphcnn.bench.record import record_section, sections
from graphcnn.cli import main

FAST = ["--repeats", "2", "--warmup", "0", "--roof-size", "128"]


def bench(*argv: str) -> int:
    return main(["bench", *argv, *FAST])


def test_several_models_and_an_onnx_file_in_one_run(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    path = str(tmp_path / "lenet.onnx")
    gc.onnx.save(gc.models.lenet5(), path)
    js = tmp_path / "r.json"
    assert bench(f"lenet5,{path}", "--against", "torch,onnxruntime", "--json", str(js)) == 0
    zoo, from_file = json.loads(js.read_text())["results"]
    assert zoo["model"] == "lenet5"
    assert set(zoo["systems"]) | set(zoo["notes"]) == {"graphcnn", "torch", "onnxruntime"}
    assert "onnxruntime" in zoo["systems"]   # torch: timed where installed, else a note
    assert from_file["model"] == path
    assert set(from_file["systems"]) == {"graphcnn", "onnxruntime"}
    assert "an ONNX file" in from_file["notes"]["torch"]
    assert from_file["checks"]["onnxruntime"]["relative"] < 1e-4
    assert "one process: each system's calls in blocks of their own" in zoo["timing"]


def test_processes_time_each_system_in_fresh_processes_of_its_own(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    js = tmp_path / "p.json"
    assert bench("lenet5", "--against", "onnxruntime", "--processes", "2",
                 "--json", str(js)) == 0
    result = json.loads(js.read_text())["results"][0]
    pids = []
    for system in ("graphcnn", "onnxruntime"):
        timing = result["systems"][system]
        assert len(timing["process_medians_ms"]) == 2 and len(timing["times_ms"]) == 4
        assert timing["spread"] >= 0
        # the host's phase after each process's timing (None with one thread)
        assert len(timing["cross_core_ratios"]) == 2
        assert all(r is None or r > 0 for r in timing["cross_core_ratios"])
        # the share of the cores' time the host took meanwhile (None: not known)
        assert len(timing["steals"]) == 2
        assert all(s is None or 0 <= s <= 1 for s in timing["steals"])
        assert sorted(timing["process_medians_ms"])[0] <= timing["median_ms"]
        pids += timing["pids"]
    assert len(set(pids)) == 4 and os.getpid() not in pids   # four fresh processes
    assert "in 2 fresh process(es)" in result["timing"]
    out = capsys.readouterr().out
    assert "spread over processes" in out and "cross-core " in out
    assert "stolen by the host " in out
    record = tmp_path / "r.md"
    assert bench("lenet5", "--against", "", "--processes", "2", "--record", str(record)) == 0
    assert "Spread of the processes' medians" in sections(record)["lenet5 infer"]
    assert "(cross-core " in sections(record)["lenet5 infer"]


def test_isolate_is_one_fresh_process_per_system(tmp_path):
    js = tmp_path / "i.json"
    assert bench("lenet5", "--against", "", "--isolate", "--json", str(js)) == 0
    timing = json.loads(js.read_text())["results"][0]["systems"]["graphcnn"]
    assert len(timing["pids"]) == 1 and timing["pids"][0] != os.getpid()


def test_record_keeps_the_last_run_of_each_model(tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nWritten by hand.\n")
    assert bench("lenet5", "--against", "", "--record", str(results)) == 0
    assert bench("lenet5", "--against", "", "--batch-size", "2", "--record",
                 str(results)) == 0
    text = results.read_text()
    assert text.startswith("# Results\n\nWritten by hand.\n")
    found = sections(results)
    assert list(found) == ["lenet5 infer"]          # replaced, not appended
    assert "| lenet5 | 2 | infer |" in found["lenet5 infer"]
    assert "| lenet5 | 1 | infer |" not in found["lenet5 infer"]
    assert "graphcnn bench lenet5" in found["lenet5 infer"]


def test_record_section_replaces_its_own_and_appends_new_ones(tmp_path):
    path = tmp_path / "r.md"
    record_section(path, "a infer", "first")
    record_section(path, "b train", "second")
    record_section(path, "a infer", "third")
    assert sections(path) == {"a infer": "third", "b train": "second"}
    assert path.read_text().index("third") < path.read_text().index("second")


def test_a_missing_onnx_file_is_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "lenet5,no_such.onnx"])
    assert info.value.code == 2
    assert "no such ONNX file: no_such.onnx" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two cores")
def test_a_parent_pinned_to_one_core_still_times_on_all(tmp_path):
    """Under OMP_PROC_BIND the OpenMP runtime pins the bench's main thread to one core;
    each fresh process must still get the cores (and the threads) it is asked for."""
    cores = os.sched_getaffinity(0)
    js = tmp_path / "pinned.json"
    gc.set_num_threads(2)   # this process's threads start first, then the pinning, as there
    os.sched_setaffinity(0, {min(cores)})
    try:
        assert bench("lenet5", "--against", "", "--isolate", "--threads", "2",
                     "--json", str(js)) == 0
    finally:
        os.sched_setaffinity(0, cores)
    timing = json.loads(js.read_text())["results"][0]["systems"]["graphcnn"]
    assert len(timing["pids"]) == 1 and timing["median_ms"] > 0
