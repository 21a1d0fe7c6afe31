"""Fuzzing the file readers (hypothesis): valid ONNX files and artifacts, mutated (byte
flips, truncations, protobuf and manifest fields set to huge, negative or mistyped values,
members removed, renamed, replaced or duplicated), must load or fail with a graphcnn error
that has a message; never another exception, a hang or an allocation over 100 MiB
(tests/file_mutations.py has the mutations and the check). A longer run:
benchmarks/fuzz_files.py."""
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx")

import file_mutations as fm  # noqa: E402
import hostile_files as hf  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "small.gcnn"
    hf.small_artifact(str(path))
    return fm.base_files(str(path))


def _fuzz(bases, kind, seed, which):
    files, mutate, load = bases[kind]
    data = mutate(random.Random(seed), files[which % len(files)])
    fm.run_case(load, data)   # raises fm.Failure if the contract is broken


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, 1))
def test_mutated_onnx_files_fail_with_graphcnn_errors(bases, seed, which):
    _fuzz(bases, "onnx", seed, which)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_artifacts_fail_with_graphcnn_errors(bases, seed):
    _fuzz(bases, "artifact", seed, 0)


def test_the_valid_files_load(bases):
    for kind in ("onnx", "artifact"):
        files, _, load = bases[kind]
        for data in files:
            assert fm.run_case(load, data) == "ok"


def test_the_check_catches_what_it_must():
    """run_case itself: another exception, a message-less error, a big allocation."""
    import numpy as np

    from graphcnn.errors import ArtifactError

    def raises(exc):
        def load(data):
            raise exc
        return load

    assert fm.run_case(raises(ArtifactError("bad")), b"") == "ArtifactError"
    for load in (raises(KeyError("k")), raises(ArtifactError("")),
                 lambda data: np.ones(200 << 20, np.uint8).sum()):
        with pytest.raises(fm.Failure):
            fm.run_case(load, b"")
