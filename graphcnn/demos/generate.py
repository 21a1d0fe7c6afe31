"""The generate demo: a DCGAN (reduced width, one channel) learns the scikit-learn digits,
and a LeNet-5 trained as the classify demo trains it judges 1,000 generated samples.

The GAN's training loop is written with the public lower-level API: two Adam optimizers,
`gc.value_and_grad` steps, and a combined model z -> generator -> discriminator built from
the two models (their arrays are shared), of which each step applies only one model's
gradients. See docs/generate.md.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from graphcnn.commands.common import CommandFailed, check_output_dir

DEFAULTS = {"epochs": 40, "batch_size": 32, "lr": 2e-4}


@dataclass
class GanConfig:
    """A DCGAN's sizes and its training (the tutorial's Adam: betas (0.5, 0.999))."""
    image_size: int = 16          # the digits (8 x 8) upsampled to this (a power of two)
    nz: int = 32                  # latent size
    ngf: int = 48                 # generator width (the tutorial: 64)
    ndf: int = 24                 # discriminator width (the tutorial: 64)
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    real_label: float = 0.9       # one-sided label smoothing of the real images
    ema: float = 0.999            # the generator's weights averaged for sampling (0: off)
    d_lr: float | None = None     # the discriminator's learning rate (None: lr)
    g_steps: int = 2              # generator steps per discriminator step
    decay_from: float = 1.0       # both learning rates decay linearly to 0 from this
                                  # fraction of the iterations on (1.0: no decay)
    backend: str = "cpu"
    seed: int = 0


@dataclass
class GanRun:
    """What train_gan returns: the models, the per-iteration losses, and the running
    average of the generator's trainable weights (empty with ema=0)."""
    generator: Any
    discriminator: Any
    d_losses: list[float] = field(default_factory=list)
    g_losses: list[float] = field(default_factory=list)
    averaged: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


def digits_for_gan(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The digits' training split at size x size, scaled to [-1, 1] (the tanh's range),
    and its labels (not used by the GAN; the judge trains on the 32 x 32 split)."""
    import graphcnn as gc
    (X, y), _ = gc.data.load_digits(size=size)
    return X * 2.0 - 1.0, y


def gan_models(cfg: GanConfig) -> tuple[Any, Any, Any]:
    """(generator, discriminator, combined): the combined model z -> G -> D calls the two
    models as layers, so its parameters are theirs (names prefixed with the model's)."""
    import graphcnn as gc
    G = gc.models.dcgan_generator(nz=cfg.nz, ngf=cfg.ngf, nc=1, image_size=cfg.image_size)
    D = gc.models.dcgan_discriminator(nc=1, ndf=cfg.ndf, image_size=cfg.image_size)
    z = gc.Input((cfg.nz, 1, 1), name="z")
    return G, D, gc.Model(z, D(G(z)), name="gan")


def train_gan(X: np.ndarray, cfg: GanConfig,
              progress: Callable[[GanRun], None] | None = None) -> GanRun:
    """Train a DCGAN on images X in [-1, 1] (N, 1, size, size).

    Each iteration, on a batch of real images and a batch of latent vectors z:
    1. discriminator: bce(D(real), 0.9) + bce(D(G(z)), 0), its gradients summed, one Adam
       step of D's parameters (the fake half runs on the combined model differentiated
       for D's parameters only: PyTorch's fake.detach());
    2. generator: bce(D(G(z)), 1) on the combined model differentiated for G's parameters
       only, one Adam step of them, through the discriminator just updated; cfg.g_steps
       such steps, each on a fresh z (two by default: with one, D wins steadily);
    3. the running average of G's weights moves towards them (decay cfg.ema, warmed up as
       min(ema, (1 + t) / (10 + t))): samples from the averaged weights are cleaner than
       from the last ones (Yazici et al. 2019). At the end the generator holds the
       averaged weights (with its batch norms' running statistics as they are).

    With cfg.decay_from < 1 both learning rates decay linearly to 0 over the last
    iterations; cfg.d_lr sets D's learning rate apart. `progress(run)` is called after
    each epoch.
    """
    import graphcnn as gc

    start = time.perf_counter()
    gc.manual_seed(cfg.seed)
    G, D, gan = gan_models(cfg)
    B = cfg.batch_size
    d_prefix, g_prefix = f"{D.name}.", f"{G.name}."
    g_params = {k: v for k, v in gan.trainable_parameters().items() if k.startswith(g_prefix)}
    d_names = [k for k in gan.trainable_parameters() if k.startswith(d_prefix)]

    def step(model: Any, wrt: list[str] | None = None) -> Any:
        # One executable for any batch up to B: the epoch's last, smaller batch trains too
        # (PyTorch's DataLoader keeps it by default).
        return gc.value_and_grad(model, loss="bce_with_logits", batch_size=None, max_batch=B,
                                 backend=cfg.backend, wrt=wrt)

    d_step = step(D)
    # The same combined model twice: differentiated for D's parameters only (no backward
    # pass through G: PyTorch's fake.detach()) and for G's only.
    fake_step, g_step = step(gan, d_names), step(gan, list(g_params))
    d_lr = cfg.lr if cfg.d_lr is None else cfg.d_lr
    d_opt = gc.optim.Adam(lr=d_lr, betas=cfg.betas)
    g_opt = gc.optim.Adam(lr=cfg.lr, betas=cfg.betas)
    total = cfg.epochs * -(-len(X) // B)
    decay_start = int(cfg.decay_from * total)
    real = np.full((B, 1, 1, 1), cfg.real_label, np.float32)
    fake, ones = np.zeros_like(real), np.ones_like(real)
    rng = np.random.default_rng(cfg.seed)
    run = GanRun(G, D)
    if cfg.ema:
        run.averaged = {k: v.copy() for k, v in G.trainable_parameters().items()}
    for _ in range(cfg.epochs):
        order = rng.permutation(len(X))
        for first in range(0, len(X), B):                  # the last batch may be smaller
            t = len(run.g_losses)
            if t >= decay_start:
                scale = 1.0 - (t - decay_start) / max(1, total - decay_start)
                d_opt.lr, g_opt.lr = d_lr * scale, cfg.lr * scale
            batch = X[order[first:first + B]]
            b = len(batch)
            z = rng.standard_normal((b, cfg.nz, 1, 1)).astype(np.float32)
            loss_real, grads = d_step(batch, real[:b])
            loss_fake, through = fake_step(z, fake[:b])
            d_opt.step(D.trainable_parameters(),
                       {k: g + through[d_prefix + k] for k, g in grads.items()})
            loss_g, through = g_step(z, ones[:b])
            g_opt.step(g_params, through)
            for _ in range(cfg.g_steps - 1):
                z = rng.standard_normal((b, cfg.nz, 1, 1)).astype(np.float32)
                loss_g, through = g_step(z, ones[:b])
                g_opt.step(g_params, through)
            decay = min(cfg.ema, (1.0 + t) / (10.0 + t))
            for name, average in run.averaged.items():   # average += (1 - decay) (w - average)
                average += (1.0 - decay) * (G.parameters()[name] - average)
            run.d_losses.append(loss_real + loss_fake)
            run.g_losses.append(loss_g)
            if not np.isfinite(run.d_losses[-1] + loss_g):
                raise CommandFailed(f"the GAN's losses became non-finite at iteration "
                                    f"{len(run.g_losses)} (D {run.d_losses[-1]}, G {loss_g}); "
                                    f"try a smaller --lr")
        if progress is not None:
            progress(run)
    if run.averaged:
        G.load_parameters({**G.parameters(), **run.averaged})
    run.seconds = time.perf_counter() - start
    return run


def sample(generator: Any, n: int, nz: int, seed: int, backend: str = "cpu",
           batch_size: int = 200) -> np.ndarray:
    """n images from the generator (inference mode: batch norm's running statistics)."""
    import graphcnn as gc
    batch_size = min(batch_size, n)
    exe = gc.compile(generator, batch_size=batch_size, backend=backend)
    z = np.random.default_rng(seed).standard_normal((n, nz, 1, 1)).astype(np.float32)
    out = [exe(z[i:i + batch_size]) for i in range(0, n - batch_size + 1, batch_size)]
    rest = n % batch_size
    if rest:
        padded = np.concatenate([z[n - rest:], z[:batch_size - rest]])
        out.append(exe(padded)[:rest])
    return np.concatenate(out)


def judge(trainer: Any, images: np.ndarray, threshold: float = 0.9) -> dict[str, Any]:
    """The judge's verdict on generated images in [-1, 1]: each resized to the judge's
    32 x 32 and scaled to [0, 1] as the digits it learned; softmax confidence, predicted
    class; the share of confident ones (>= threshold) and their class histogram."""
    import graphcnn as gc
    pixels = (images[:, 0].astype(np.float64) + 1.0) / 2.0
    if pixels.shape[-1] != 32:
        pixels = gc.data.resize_bilinear(pixels, 32)
    x = np.clip(pixels, 0.0, 1.0).astype(np.float32)[:, None]
    logits = trainer.predict_logits(x).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    confident = confidence >= threshold
    histogram = np.bincount(predicted[confident], minlength=10)
    return {"confident_share": float(confident.mean()), "histogram": histogram,
            "classes_covered": int((histogram > 0).sum()), "predicted": predicted,
            "confidence": confidence, "threshold": threshold}


def save_grid(images: np.ndarray, verdict: dict[str, Any], run: GanRun, path: Path) -> Path:
    """A PNG: generated digits, one row per class the judge gave them confidently (up to
    10 each), beside the two losses over the iterations."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 5.5))
    grid = fig.add_gridspec(10, 20, wspace=0.05, hspace=0.05)
    confident = verdict["confidence"] >= verdict["threshold"]
    for digit in range(10):
        chosen = np.flatnonzero(confident & (verdict["predicted"] == digit))[:10]
        for col in range(10):
            ax = fig.add_subplot(grid[digit, col])
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(chosen):
                ax.imshow(images[chosen[col], 0], cmap="gray_r", vmin=-1, vmax=1)
            if col == 0:
                ax.set_ylabel(str(digit), rotation=0, labelpad=8)
    fig.text(0.28, 0.95, f"generated digits by the judge's class "
             f"({verdict['confident_share']:.0%} confident >= {verdict['threshold']})",
             ha="center")
    ax = fig.add_subplot(grid[1:9, 12:])
    ax.plot(run.d_losses, label="discriminator", lw=0.8)
    ax.plot(run.g_losses, label="generator", lw=0.8)
    ax.set_xlabel("iteration")
    ax.set_title("losses (bce with logits)")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train_judge(epochs: int, backend: str, seed: int, quiet: bool = True) -> tuple[Any, float]:
    """LeNet-5 on the 32 x 32 digits, trained as the classify demo trains it; returns its
    trainer and its test accuracy."""
    import graphcnn as gc
    from graphcnn.demos.classify import DEFAULTS as CLASSIFY
    from graphcnn.demos.classify import lenet_trainer

    (X, y), (Xt, yt) = gc.data.load_digits()
    gc.manual_seed(seed)
    trainer = lenet_trainer(gc.models.lenet5(), lr=float(CLASSIFY["lr"]), epochs=epochs,
                            backend=backend, seed=seed)
    trainer.fit(X, y, epochs=epochs, batch_size=int(CLASSIFY["batch_size"]), verbose=not quiet)
    return trainer, float(trainer.evaluate(Xt, yt)["accuracy"])


def run(args: argparse.Namespace) -> int:
    """DCGAN on the digits (16 x 16, one channel), judged by LeNet-5: the share of 1,000
    samples it classifies with confidence >= 0.9, and their classes."""
    start = time.perf_counter()
    out = check_output_dir(args.out, "--out")
    cfg = GanConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    backend=args.backend, seed=args.seed)
    from graphcnn.demos.classify import DEFAULTS as CLASSIFY
    judge_epochs = int(getattr(args, "judge_epochs", CLASSIFY["epochs"]))
    trainer, accuracy = train_judge(judge_epochs, args.backend, args.seed)
    print(f"judge: LeNet-5 trained {judge_epochs} epochs on the digits, test accuracy "
          f"{accuracy:.2%}")
    X, _ = digits_for_gan(cfg.image_size)
    print(f"DCGAN on {len(X)} digits at {cfg.image_size}x{cfg.image_size}: nz={cfg.nz}, "
          f"ngf={cfg.ngf}, ndf={cfg.ndf}; {cfg.epochs} epochs of batch {cfg.batch_size}, "
          f"Adam lr {cfg.lr} betas {cfg.betas}, real labels {cfg.real_label}, "
          f"{cfg.g_steps} generator steps per discriminator step")

    def progress(run: GanRun) -> None:
        if not args.quiet:
            print(f"  iteration {len(run.g_losses):5d}  D loss "
                  f"{np.mean(run.d_losses[-20:]):.3f}  G loss {np.mean(run.g_losses[-20:]):.3f}",
                  flush=True)

    gan = train_gan(X, cfg, progress)
    print(f"GAN training: {len(gan.g_losses)} iterations in {gan.seconds:.1f} s")
    n = getattr(args, "samples", 1000)
    images = sample(gan.generator, n, cfg.nz, args.seed + 1, args.backend)
    verdict = judge(trainer, images)
    hist = verdict["histogram"]
    print(f"generated samples classified with confidence >= {verdict['threshold']}: "
          f"{verdict['confident_share']:.1%} of {n}")
    print("their classes: " + "  ".join(f"{d}:{c}" for d, c in enumerate(hist)))
    print(f"digit classes among them: {verdict['classes_covered']} of 10")
    png = save_grid(images, verdict, gan, Path(out) / "dcgan_digits.png")
    print(f"generated digits: {png}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    return 0
