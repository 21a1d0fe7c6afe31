"""tests/cuda runs only in its own pytest process with the CUDA simulator on (the variable
must be set before numba.cuda is first imported): tests/test_cuda_sim.py starts it as

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda

In the main test run (no NUMBA_ENABLE_CUDASIM) nothing here is collected. With a real GPU,
`GRAPHCNN_CUDA_REAL=1 python -m pytest tests/cuda` runs the same tests on the device."""
import os

_ENABLED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or \
    os.environ.get("GRAPHCNN_CUDA_REAL") == "1"
collect_ignore_glob = [] if _ENABLED else ["test_*.py"]



def pytest_configure(config):
    # The simulator runs dropout's uint64 hash on NumPy scalars, which warn on the
    # (intended) wrap-around.
    config.addinivalue_line("filterwarnings", "ignore:overflow encountered:RuntimeWarning")
