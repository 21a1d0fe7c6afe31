"""Kernel families; importing this package registers every cuda kernel (it imports
numba.cuda: only the cuda runner and the tests import it)."""
from graphcnn.backends.cuda.kernels import (  # noqa: F401
                                            collective,
                                            conv,
                                            dense,
                                            fused,
                                            layout,  # noqa: F401,E402
                                            loss,
                                            loss_binary,
                                            loss_box,
                                            loss_pixel,
                                            norm,
                                            norm_group,
                                            norm_running,
                                            pad_modes,
                                            pool,
                                            reduce,
                                            resize,
                                            shape,
                                            softmax,
)
