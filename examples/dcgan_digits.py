"""A DCGAN on the scikit-learn digits with graphcnn's lower-level training API: two Adam
optimizers, value_and_grad steps, and a combined model z -> G -> D whose parameters are the
two models' own arrays. Writes dcgan_digits.png (a grid of generated digits).

    python examples/dcgan_digits.py [epochs] [--quick]

--quick trains one epoch on 140 digits (four batches of 32 and one of 12: a check that
it runs).
"""
import sys

import numpy as np

import graphcnn as gc

QUICK = "--quick" in sys.argv[1:]
ARGS = [a for a in sys.argv[1:] if a != "--quick"]
EPOCHS = 1 if QUICK else int(ARGS[0]) if ARGS else 40
B, NZ, SIZE = 32, 32, 16

(X, _), _ = gc.data.load_digits(size=SIZE)           # (1437, 1, 16, 16) in [0, 1]
X = X * 2 - 1                                        # tanh's range, [-1, 1]
if QUICK:
    X = X[:140]

gc.manual_seed(0)
G = gc.models.dcgan_generator(nz=NZ, ngf=48, nc=1, image_size=SIZE)
D = gc.models.dcgan_discriminator(nc=1, ndf=24, image_size=SIZE)   # logits, no sigmoid
z_in = gc.Input((NZ, 1, 1), name="z")
gan = gc.Model(z_in, D(G(z_in)), name="gan")         # shares G's and D's arrays

g_params = {k: v for k, v in gan.trainable_parameters().items()
            if k.startswith("dcgan_generator.")}     # the generator's, by their gan names
d_names = [k for k in gan.trainable_parameters() if k.startswith("dcgan_discriminator.")]
# batch_size=None, max_batch=B: one executable for any batch up to B, so each epoch's
# last, smaller batch trains too
any_batch = dict(loss="bce_with_logits", batch_size=None, max_batch=B)
d_step = gc.value_and_grad(D, **any_batch)
fake_step = gc.value_and_grad(gan, wrt=d_names, **any_batch)
g_step = gc.value_and_grad(gan, wrt=list(g_params), **any_batch)
d_opt = gc.optim.Adam(lr=2e-4, betas=(0.5, 0.999))
g_opt = gc.optim.Adam(lr=2e-4, betas=(0.5, 0.999))

real = np.full((B, 1, 1, 1), 0.9, np.float32)        # one-sided label smoothing
fake, ones = np.zeros_like(real), np.ones_like(real)
rng = np.random.default_rng(0)
for epoch in range(EPOCHS):
    order = rng.permutation(len(X))
    for i in range(0, len(X), B):
        batch = X[order[i:i + B]]
        b = len(batch)                               # B, or fewer at the epoch's end
        z = rng.standard_normal((b, NZ, 1, 1)).astype(np.float32)
        # 1. discriminator: real images towards 0.9, generated ones towards 0
        loss_real, grads = d_step(batch, real[:b])
        loss_fake, through = fake_step(z, fake[:b])  # D's gradients only (fake.detach())
        d_opt.step(D.trainable_parameters(),
                   {k: g + through["dcgan_discriminator." + k] for k, g in grads.items()})
        # 2. generator: make the updated discriminator say "real" (1); two steps, each on
        #    fresh noise (with one, the discriminator wins steadily)
        for _ in range(2):
            loss_g, through = g_step(z, ones[:b])    # G's gradients only
            g_opt.step(g_params, through)
            z = rng.standard_normal((b, NZ, 1, 1)).astype(np.float32)
    print(f"epoch {epoch + 1}: D loss {loss_real + loss_fake:.3f}  G loss {loss_g:.3f}")

sampler = gc.compile(G, batch_size=100)              # inference: BN running statistics
images = sampler(rng.standard_normal((100, NZ, 1, 1)).astype(np.float32))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

grid = images[:, 0].reshape(10, 10, SIZE, SIZE).transpose(0, 2, 1, 3).reshape(10 * SIZE, -1)
plt.imsave("dcgan_digits.png", grid, cmap="gray_r", vmin=-1, vmax=1)
print("wrote dcgan_digits.png")
