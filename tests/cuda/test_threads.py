"""The cuda runner called from several threads at once: its launches are bound to one set of
device buffers, so calls take turns, and each returns the result of its own inputs (small
shapes: the simulator runs every kernel in Python)."""
import threading

import numpy as np
from helpers import rand

import graphcnn as gc
from graphcnn import nn
from graphcnn.backends.cuda.runner import run_device


def _small_model():
    """Two kernels (the simulator starts a Python thread per CUDA thread of a launch)."""
    x = gc.Input((8,), name="image")
    logits = nn.Linear(8, 4)(gc.relu(x))
    return gc.Model(inputs=x, outputs=logits, name="small")


def _threads(work, workers):
    errors = []

    def guarded(w):
        try:
            work(w)
        except BaseException as err:  # reported below, not lost in the thread
            errors.append(err)

    pool = [threading.Thread(target=guarded, args=(w,)) for w in range(workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


def test_calls_from_threads_each_get_their_own_result():
    model = _small_model()
    exe = gc.compile(model, batch_size=2, backend="cuda")
    xs = [rand(2, 8, seed=k) for k in range(3)]
    want = [exe(x) for x in xs]
    wrong = []

    def work(w):
        for i in range(2):
            k = (w + i) % len(xs)
            y = exe(xs[k])
            if not np.array_equal(y, want[k]):
                wrong.append((w, i))
            out = run_device(exe, {"image": xs[k]})   # the device-array path too
            if not np.array_equal(list(out.values())[0].copy_to_host(), want[k]):
                wrong.append((w, i, "run_device"))

    _threads(work, 2)
    assert not wrong, wrong
    assert exe.report()["contexts"] == 1   # calls take turns on the one set of buffers


def test_training_steps_from_threads():
    model = _small_model()
    step = gc.value_and_grad(model, batch_size=2, backend="cuda")
    batches = [(rand(2, 8, seed=10 + k), np.array([k, 3 - k])) for k in range(2)]
    want = [step(x, t) for x, t in batches]
    wrong = []

    def work(w):
        for _ in range(2):
            loss, grads = step(*batches[w])
            if loss != want[w][0] or any(not np.array_equal(grads[n], want[w][1][n])
                                         for n in grads):
                wrong.append(w)

    _threads(work, 2)
    assert not wrong, wrong
