"""Importing graphcnn sets the thread pools' spin settings by default, and keeps the user's."""
import os
import subprocess
import sys

SHOW = ("import graphcnn, os; "
        "print(os.environ['GOMP_SPINCOUNT'], os.environ['OPENBLAS_THREAD_TIMEOUT'])")


def _run(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True,
                          text=True, check=True).stdout.split()


def test_defaults_when_unset():
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT")}
    assert _run(env) == ["0", "12"]


def test_the_users_settings_win():
    env = dict(os.environ, GOMP_SPINCOUNT="1000", OPENBLAS_THREAD_TIMEOUT="28")
    assert _run(env) == ["1000", "28"]
