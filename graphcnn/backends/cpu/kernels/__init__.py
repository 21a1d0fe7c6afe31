"""Kernel families; importing this package registers every cpu kernel but those of the ops
with a strategy (conv2d and its gradients, the NCHW16c convs, linear, matmul, fused),
which graphcnn/backends/cpu/strategy.py registers: they choose an implementation."""
from graphcnn.backends.cpu.kernels import (  # noqa: F401
    broadcast,
    collective,
    conv,
    dense,
    fused,
    loss,
    loss_binary,
    loss_box,
    loss_pixel,
    nchw16c,
    nchw16c_expand,
    norm,
    pool,
    resize,
    shape,
    softmax,
    transpose,
    upsample,
)
