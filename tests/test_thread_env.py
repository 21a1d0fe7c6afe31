"""Importing graphcnn makes idle OpenMP threads sleep at once by default (GOMP_SPINCOUNT=0,
so they leave the cores to the BLAS threads), and keeps a user's own setting."""
import os
import subprocess
import sys

SHOW = "import graphcnn, os; print(os.environ['GOMP_SPINCOUNT'])"


def _run(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_default_when_unset():
    assert _run({k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}) == "0"


def test_the_users_setting_wins():
    assert _run(dict(os.environ, GOMP_SPINCOUNT="1000")) == "1000"
