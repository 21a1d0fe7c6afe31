"""DCGAN (Radford, Metz and Chintala, "Unsupervised representation learning with deep
convolutional generative adversarial networks", ICLR 2016), as PyTorch's DCGAN tutorial
defines it (https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html): the same
layers, the same parameter names ('main.0.weight', 'main.1.weight', ... the tutorial's
state_dict keys) and the same weight initialization.

Sizes: the tutorial's 64 x 64 images take four stride-2 layers after the first 4 x 4 one.
Other sizes (a power of two, at least 8) take log2(image_size / 4) stride-2 layers, so
each halving of the size removes the widest block (image_size=32: one block fewer, the
generator starting at ngf * 4 channels, the discriminator ending at ndf * 4):

    generator:      ConvTranspose2d(nz, ngf * 2^(n-1), 4, 1, 0) BN ReLU      -> 4 x 4
                    ConvTranspose2d(ngf * 2^k, ngf * 2^(k-1), 4, 2, 1) BN ReLU   (x2 each)
                    ConvTranspose2d(ngf, nc, 4, 2, 1) Tanh                -> image_size
    discriminator:  Conv2d(nc, ndf, 4, 2, 1) LeakyReLU(0.2)
                    Conv2d(ndf * 2^(k-1), ndf * 2^k, 4, 2, 1) BN LeakyReLU(0.2)  (/2 each)
                    Conv2d(ndf * 2^(n-1), 1, 4, 1, 0) [Sigmoid]           -> 1 x 1

(n = log2(image_size / 4); no convolution has a bias, as in the tutorial.) Both models
are Sequential models, so they can be called as layers inside a bigger model: a GAN's
generator step trains z -> generator -> discriminator, whose parameters are the two
models' own arrays, named "dcgan_generator.main.0.weight", ... (see docs/generate.md).
"""
from __future__ import annotations

import math

from graphcnn import nn
from graphcnn.arguments import check_bool, check_int
from graphcnn.nn.layers import Sequential
from graphcnn.seeding import generator as rng


def _blocks(image_size: int, owner: str) -> int:
    """n = log2(image_size / 4): the number of stride-2 layers."""
    image_size = check_int("image_size", image_size, owner=owner)
    n = int(round(math.log2(image_size))) - 2 if image_size > 0 else 0
    if image_size < 8 or 4 * 2 ** n != image_size:
        raise ValueError(f"{owner}: image_size must be a power of two, at least 8 "
                         f"(the tutorial's is 64), got {image_size}")
    return n


def dcgan_init(model: Sequential) -> Sequential:
    """The tutorial's weights_init: every (transposed) convolution's weight drawn from
    N(0, 0.02), every batch norm's weight from N(1, 0.02) and its bias set to 0, from
    graphcnn's seeded generator (gc.manual_seed), in place. Returns the model."""
    main = model.layers[0]
    if not isinstance(main, Sequential):
        raise TypeError(f"dcgan_init takes a DCGAN model (a Sequential around 'main'), "
                        f"got {model!r}")
    for layer in main.layers:
        for p in layer.own_parameters():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and p.attr == "weight":
                p.data[...] = rng().normal(0.0, 0.02, p.data.shape)
            elif isinstance(layer, nn.BatchNorm2d) and p.attr == "weight":
                p.data[...] = rng().normal(1.0, 0.02, p.data.shape)
            elif isinstance(layer, nn.BatchNorm2d) and p.attr == "bias":
                p.data[...] = 0.0
    return model


def dcgan_generator(nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64, *,
                    init: bool = True) -> Sequential:
    """The DCGAN generator: a latent vector of shape (nz, 1, 1) per sample -> an
    (nc, image_size, image_size) image in [-1, 1] (tanh). 3,576,704 trainable parameters
    at the defaults (nz=100, ngf=64, nc=3, 64 x 64). `init=False` keeps the layers'
    default (PyTorch) initialization instead of the DCGAN one."""
    owner = "dcgan_generator"
    n = _blocks(image_size, owner)
    nz, ngf, nc = (check_int(k, v, owner=owner) for k, v in (("nz", nz), ("ngf", ngf),
                                                             ("nc", nc)))
    width = ngf * 2 ** (n - 1)
    layers: list[nn.Layer] = [nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
                              nn.BatchNorm2d(width), nn.ReLU()]
    for _ in range(n - 1):
        layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(width // 2), nn.ReLU()]
        width //= 2
    layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
    model = Sequential(Sequential(*layers, name="main"), input_shape=(nz, 1, 1), name=owner)
    return dcgan_init(model) if check_bool("init", init, owner=owner) else model


def dcgan_discriminator(nc: int = 3, ndf: int = 64, image_size: int = 64, *,
                        sigmoid: bool = False, init: bool = True) -> Sequential:
    """The DCGAN discriminator: an (nc, image_size, image_size) image -> one score per
    sample, shape (1, 1, 1) (the tutorial flattens it with .view(-1)). 2,765,568
    trainable parameters at the defaults (nc=3, ndf=64, 64 x 64).

    By default it returns LOGITS (no final Sigmoid), for the numerically stable
    "bce_with_logits" loss; `sigmoid=True` appends the tutorial's Sigmoid (probabilities,
    the tutorial's module exactly; no parameter changes). `init=False` keeps the layers'
    default initialization instead of the DCGAN one."""
    owner = "dcgan_discriminator"
    n = _blocks(image_size, owner)
    nc, ndf = (check_int(k, v, owner=owner) for k, v in (("nc", nc), ("ndf", ndf)))
    layers: list[nn.Layer] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
    width = ndf
    for _ in range(n - 1):
        layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2)]
        width *= 2
    layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=False))
    if check_bool("sigmoid", sigmoid, owner=owner):
        layers.append(nn.Sigmoid())
    model = Sequential(Sequential(*layers, name="main"), input_shape=(nc, image_size,
                                                                      image_size), name=owner)
    return dcgan_init(model) if check_bool("init", init, owner=owner) else model

