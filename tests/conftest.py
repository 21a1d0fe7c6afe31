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

