import os

from hypothesis import HealthCheck, settings

# Numba's cache outside the checkout: kernels compile once per machine, not once per run.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache",
                                                      "graphcnn", "numba"))

# Algorithms by the cost model, not by timing: a run's kernels must not depend on the
# machine's load (tests/test_autotune.py turns the measuring on where it tests it).
os.environ.setdefault("GRAPHCNN_AUTOTUNE", "0")

settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))



# ---- tests/cuda on Numba's simulator, alongside the rest of the suite --------------------
# The simulator runs every cuda thread in Python on one core, for minutes; the main suite
# spends much of its time compiling, on one core too. When a run collects
# test_cuda_sim.py's whole-suite test, the simulator's pytest starts in the background
# as soon as collection ends, and the test (moved to the end of the run) waits for it.
def pytest_collection_modifyitems(session, config, items):
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from cuda_suite import CUDA_SUITE_TEST, cuda_suite_command

    suite = [item for item in items if item.name == CUDA_SUITE_TEST]
    if not suite or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or len(items) == 1:
        return   # inside the simulator's run, or the test alone: it runs in place
    items[:] = [item for item in items if item.name != CUDA_SUITE_TEST] + suite
    output = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(
        cuda_suite_command(), cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}, stdout=output,
        stderr=subprocess.STDOUT, text=True)
    config.cuda_suite_run = (process, output, time.perf_counter())


def pytest_unconfigure(config):
    run = getattr(config, "cuda_suite_run", None)
    if run is not None and run[0].poll() is None:
        run[0].kill()   # the run ended before its test waited for it (-x, Ctrl-C)
