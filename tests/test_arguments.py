"""Arguments are checked where they are given: layer constructors, gc.Input, compile,
value_and_grad and the Trainer refuse bad values with an error naming the argument and
the value (bools and floats are not counts); valid values, NumPy integers included, work."""
from __future__ import annotations

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.arguments import check_int
from graphcnn.errors import ArgumentError, ArgumentTypeError, GraphBuildError
from graphcnn.train.trainer import Trainer


def _model():
    x = gc.Input((1, 6, 6), name="x")
    return gc.Model(inputs=x, outputs=nn.Linear(36, 3)(gc.flatten(x)), name="m")


_DATA = (np.zeros((4, 1, 6, 6), np.float32), np.zeros(4, np.int64))

# (what, call, error type, text the message must contain: the argument and the value)
BAD = [
    ("conv kernel 0", lambda: nn.Conv2d(1, 4, 0), ArgumentError,
     "kernel_size must be greater than zero, got 0"),
    ("conv kernel -1", lambda: nn.Conv2d(1, 4, -1), ArgumentError,
     "kernel_size must be greater than zero, got -1"),
    ("conv kernel 2.5", lambda: nn.Conv2d(1, 4, 2.5), ArgumentTypeError, "kernel_size"),
    ("conv kernel (3, 0)", lambda: nn.Conv2d(1, 4, (3, 0)), ArgumentError,
     "kernel_size[1] must be greater than zero, got 0"),
    ("conv kernel 3 values", lambda: nn.Conv2d(1, 4, (3, 3, 3)), ArgumentError,
     "kernel_size must be an int or a pair of ints, got 3 values"),
    ("conv out 0", lambda: nn.Conv2d(1, 0, 3), ArgumentError,
     "out_channels must be greater than zero, got 0"),
    ("conv in 2.5", lambda: nn.Conv2d(2.5, 4, 3), ArgumentTypeError,
     "in_channels must be a positive int, got 2.5"),
    ("conv in True", lambda: nn.Conv2d(True, 4, 3), ArgumentTypeError,
     "in_channels must be a positive int, got True"),
    ("conv stride 0", lambda: nn.Conv2d(1, 4, 3, stride=0), ArgumentError,
     "stride must be greater than zero, got 0"),
    ("conv padding -1", lambda: nn.Conv2d(1, 4, 3, padding=-1), ArgumentError,
     "padding must be non-negative, got -1"),
    ("conv padding 'full'", lambda: nn.Conv2d(1, 4, 3, padding="full"), ArgumentError,
     "padding must be an int, a tuple, 'same' or 'valid', got 'full'"),
    ("conv dilation 0", lambda: nn.Conv2d(1, 4, 3, dilation=0), ArgumentError,
     "dilation must be greater than zero, got 0"),
    ("conv groups 0", lambda: nn.Conv2d(4, 4, 3, groups=0), ArgumentError,
     "groups must be greater than zero, got 0"),
    ("conv groups 3", lambda: nn.Conv2d(4, 4, 3, groups=3), GraphBuildError,
     "groups=3 must divide in_channels=4"),
    ("conv bias 'yes'", lambda: nn.Conv2d(1, 4, 3, bias="yes"), ArgumentTypeError,
     "bias must be True or False, got 'yes'"),
    ("linear in 0", lambda: nn.Linear(0, 4), ArgumentError,
     "in_features must be greater than zero, got 0"),
    ("linear out 1.0", lambda: nn.Linear(3, 1.0), ArgumentTypeError,
     "out_features must be a positive int, got 1.0"),
    ("batchnorm features -2", lambda: nn.BatchNorm2d(-2), ArgumentError,
     "num_features must be greater than zero, got -2"),
    ("batchnorm eps -1", lambda: nn.BatchNorm2d(4, eps=-1), ArgumentError,
     "eps must be >= 0, got -1"),
    ("batchnorm momentum 1.5", lambda: nn.BatchNorm2d(4, momentum=1.5), ArgumentError,
     "momentum must be in [0, 1], got 1.5"),
    ("batchnorm momentum None", lambda: nn.BatchNorm2d(4, momentum=None), ArgumentTypeError,
     "momentum must be a number, got None"),
    ("dropout p 1.5", lambda: nn.Dropout(1.5), ArgumentError, "p must be in [0, 1), got 1.5"),
    ("dropout p -0.1", lambda: nn.Dropout(-0.1), ArgumentError, "p must be in [0, 1), got -0.1"),
    ("dropout p nan", lambda: nn.Dropout(float("nan")), ArgumentError, "p must be in [0, 1)"),
    ("maxpool kernel 0", lambda: nn.MaxPool2d(0), ArgumentError,
     "kernel_size must be greater than zero, got 0"),
    ("maxpool stride 0", lambda: nn.MaxPool2d(2, stride=0), ArgumentError,
     "stride must be greater than zero, got 0"),
    ("maxpool padding > half", lambda: nn.MaxPool2d(2, padding=2), ArgumentError,
     "padding should be at most half of kernel_size"),
    ("avgpool kernel True", lambda: nn.AvgPool2d(True), ArgumentTypeError,
     "kernel_size must be a positive int, got True"),
    ("avgpool padding -1", lambda: nn.AvgPool2d(3, padding=-1), ArgumentError,
     "padding must be non-negative, got -1"),
    ("zeropad -1", lambda: nn.ZeroPad2d(-1), ArgumentError, "padding must be non-negative"),
    ("leaky slope 'a'", lambda: nn.LeakyReLU("a"), ArgumentTypeError,
     "negative_slope must be a number, got 'a'"),
    ("flatten 1.0", lambda: nn.Flatten(1.0), ArgumentTypeError, "start_dim must be an int"),
    ("input 0", lambda: gc.Input((1, 0, 8)), ArgumentError,
     "shape[1] must be greater than zero, got 0 (in shape (1, 0, 8))"),
    ("input 2.5", lambda: gc.Input((1, 2.5)), ArgumentTypeError,
     "shape[1] must be a positive int, got 2.5"),
    ("input int", lambda: gc.Input(8), ArgumentTypeError,
     "shape must be a sequence of positive ints, got 8"),
    ("compile 2.5", lambda: gc.compile(_model(), 2.5, backend="reference"), ArgumentTypeError,
     "batch_size must be a positive int, got 2.5"),
    ("compile True", lambda: gc.compile(_model(), batch_size=True, backend="reference"),
     ArgumentTypeError, "batch_size must be a positive int, got True"),
    ("compile 0", lambda: gc.compile(_model(), 0, backend="reference"), ArgumentError,
     "batch_size must be greater than zero, got 0"),
    ("value_and_grad -1", lambda: gc.value_and_grad(_model(), batch_size=-1,
                                                    backend="reference"),
     ArgumentError, "batch_size must be greater than zero, got -1"),
    ("fit epochs 2.5", lambda: Trainer(_model(), backend="reference").fit(
        *_DATA, epochs=2.5, verbose=False), ArgumentTypeError,
     "epochs must be a non-negative int, got 2.5"),
    ("fit epochs -1", lambda: Trainer(_model(), backend="reference").fit(
        *_DATA, epochs=-1, verbose=False), ArgumentError, "epochs must be non-negative, got -1"),
    ("fit batch_size False", lambda: Trainer(_model(), backend="reference").fit(
        *_DATA, batch_size=False, verbose=False), ArgumentTypeError,
     "batch_size must be a positive int, got False"),
    ("trainer checkpoint_every 0.5", lambda: Trainer(_model(), checkpoint_every=0.5),
     ArgumentTypeError, "checkpoint_every must be a positive int, got 0.5"),
    ("trainer seed -5", lambda: Trainer(_model(), seed=-5), ArgumentError,
     "seed must be non-negative, got -5"),
]


@pytest.mark.parametrize("call, error, text", [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_arguments_are_refused_where_given(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value)
    # the error classes keep the built-in ones working: ValueError always, TypeError for types
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TypeError) == (error is ArgumentTypeError)


def test_numpy_integers_and_valid_arguments_still_work():
    i = np.int64
    x = gc.Input((i(2), i(8), 8), name="x")
    h = nn.Conv2d(i(2), i(4), i(3), stride=(i(1), 1), padding=i(1), dilation=1, groups=i(2))(x)
    h = nn.BatchNorm2d(i(4), eps=np.float32(1e-3), momentum=0)(h)
    h = nn.MaxPool2d((2, i(2)), stride=None, padding=1)(h)
    h = nn.AvgPool2d(i(1), count_include_pad=np.bool_(False))(h)
    h = nn.Conv2d(4, 4, 1, padding="SAME")(nn.ZeroPad2d((0, 1, 0, i(1)))(h))
    h = nn.Dropout(0.0)(nn.LeakyReLU(0)(h))
    y = nn.Linear(i(4 * 6 * 6), i(3))(nn.Flatten(i(1))(h))
    model = gc.Model(inputs=x, outputs=nn.Softmax(-1)(y), name="ok")
    exe = gc.compile(model, batch_size=np.int32(2), backend="reference")
    assert exe(np.ones((2, 2, 8, 8), np.float32)).shape == (2, 3)
    step = gc.value_and_grad(model, batch_size=np.uint8(2), backend="reference")
    assert np.isfinite(step(np.ones((2, 2, 8, 8), np.float32), np.array([0, 1]))[0])


def test_check_int_is_the_one_count_check():
    assert check_int("n", np.int16(3)) == 3 and type(check_int("n", np.int16(3))) is int
    assert check_int("n", 0, minimum=0) == 0
    for bad in (True, 1.0, "1", None, np.float64(1.0)):
        with pytest.raises(ArgumentTypeError, match="n must be a positive int"):
            check_int("n", bad)
