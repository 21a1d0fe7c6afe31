"""The runnable examples in the public API's docstrings run, and give what they say."""
import doctest
import importlib
import os

import pytest

MODULES = ["graphcnn", "graphcnn.api", "graphcnn.backends", "graphcnn.dsl", "graphcnn.model",
           "graphcnn.models", "graphcnn.optim", "graphcnn.optim.optimizers",
           "graphcnn.runtime.artifact.writer", "graphcnn.train.augment",
           "graphcnn.data", "graphcnn.axes", "graphcnn.nn.resample"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path):
    module = importlib.import_module(name)
    here = os.getcwd()
    os.chdir(tmp_path)   # examples that write files write them here
    try:
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    finally:
        os.chdir(here)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0
