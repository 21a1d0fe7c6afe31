"""U-Net (Ronneberger, Fischer and Brox, "U-Net: convolutional networks for biomedical image
segmentation", MICCAI 2015) as the widely used PyTorch definition (milesial/Pytorch-UNet):
"same"-padded 3x3 convolutions with batch normalization, four 2x2 max-pool downs, four
transposed-convolution (or bilinear) ups whose output is concatenated with the skip.

    DoubleConv   (conv3x3 pad 1, no bias -> BatchNorm2d -> ReLU) x 2
    Down         MaxPool2d(2) -> DoubleConv
    Up           ConvTranspose2d(in, in // 2, 2, stride 2) -> pad to the skip's size ->
                 concat([skip, up], axis 1) -> DoubleConv
    OutConv      conv1x1 (with bias) to n_classes logits

The output is (N, n_classes, H, W) logits, at the input's size.
"""
from __future__ import annotations

from typing import Sequence

from graphcnn import functional as F
from graphcnn import nn
from graphcnn.dsl import Tensor
from graphcnn.model import Model
from graphcnn.models._blocks import conv_bn, image_input, spatial


def double_conv(x: Tensor, in_channels: int, out_channels: int, prefix: str,
                mid_channels: int | None = None) -> Tensor:
    """Two conv3x3-BN-ReLU, named as the torch Sequential "<prefix>.double_conv.{0,1,3,4}"."""
    mid = mid_channels or out_channels
    h = conv_bn(x, in_channels, mid, 3, conv=f"{prefix}.double_conv.0",
                bn=f"{prefix}.double_conv.1")
    return conv_bn(h, mid, out_channels, 3, conv=f"{prefix}.double_conv.3",
                   bn=f"{prefix}.double_conv.4")


def down(x: Tensor, in_channels: int, out_channels: int, prefix: str) -> Tensor:
    """Max-pool 2x2 then DoubleConv ("<prefix>.maxpool_conv.1.double_conv...")."""
    h = nn.MaxPool2d(2, name=f"{prefix}.maxpool_conv.0")(x)
    return double_conv(h, in_channels, out_channels, f"{prefix}.maxpool_conv.1")


def up(x: Tensor, skip: Tensor, in_channels: int, out_channels: int, bilinear: bool,
       prefix: str) -> Tensor:
    """Upsample x 2x, pad it to the skip's size (half on each side, the odd pixel at the
    bottom/right, as F.pad in the torch code), concat [skip, x], DoubleConv."""
    if bilinear:
        h = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)(x)
        mid: int | None = in_channels // 2
    else:
        h = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2,
                               name=f"{prefix}.up")(x)
        mid = None
    (sh, sw), (hh, hw) = spatial(skip), spatial(h)
    dy, dx = sh - hh, sw - hw
    if dy or dx:
        h = F.pad2d(h, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
    return double_conv(F.concat([skip, h], axis=1), in_channels, out_channels,
                       f"{prefix}.conv", mid)


def unet(n_channels: int = 3, n_classes: int = 2, base_width: int = 64,
         bilinear: bool = False, *, input_size: int | Sequence[int] = 256) -> Model:
    """U-Net for `n_classes`-way per-pixel logits on (n_channels, H, W) images.

    Parameter names are the state_dict keys of milesial/Pytorch-UNet's ``UNet``
    ("inc.double_conv.0.weight", "down1.maxpool_conv.1.double_conv.0.weight",
    "up1.up.weight", "up1.conv.double_conv.0.weight", "outc.conv.weight", ...; batch
    norms keep running_mean and running_var, not torch's num_batches_tracked). The widths
    are base_width x (1, 2, 4, 8, 16); at the defaults (3 channels, 2 classes, 64) the
    model has 31,037,698 trainable parameters, as the torch one. With ``bilinear=True``
    the ups are bilinear upsamplings (align_corners=True) and the deepest width halves.
    ``input_size`` is the image's (H, W) (an int: square); sizes that are not multiples
    of 16 work (each up pads to its skip's size).

    >>> import graphcnn as gc
    >>> gc.models.unet(3, 4, base_width=4, input_size=32).outputs[0].shape
    (None, 4, 32, 32)
    """
    if not isinstance(base_width, int) or isinstance(base_width, bool) or base_width < 1:
        raise ValueError(f"unet: base_width must be an int >= 1, got {base_width!r}")
    if not isinstance(bilinear, bool):
        raise ValueError(f"unet: bilinear must be True or False, got {bilinear!r}")
    x = image_input("unet", n_classes, n_channels, input_size)
    if min(spatial(x)) < 16:
        raise ValueError(f"unet: input_size must be at least 16 (four 2x2 poolings), got "
                         f"{input_size!r}")
    w = base_width
    factor = 2 if bilinear else 1
    x1 = double_conv(x, n_channels, w, "inc")
    x2 = down(x1, w, 2 * w, "down1")
    x3 = down(x2, 2 * w, 4 * w, "down2")
    x4 = down(x3, 4 * w, 8 * w, "down3")
    x5 = down(x4, 8 * w, 16 * w // factor, "down4")
    h = up(x5, x4, 16 * w, 8 * w // factor, bilinear, "up1")
    h = up(h, x3, 8 * w, 4 * w // factor, bilinear, "up2")
    h = up(h, x2, 4 * w, 2 * w // factor, bilinear, "up3")
    h = up(h, x1, 2 * w, w, bilinear, "up4")
    logits = nn.Conv2d(w, n_classes, 1, name="outc.conv")(h)
    return Model(inputs=x, outputs=logits, name="unet")
