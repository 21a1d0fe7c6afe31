"""Read two numbers off each image: how many shapes it holds, and how much of it they cover.

    python examples/regress_shapes.py [--n 30000] [--size 32] [--epochs 12] [--out regress.png] [--quick]
"""
import argparse

import matplotlib

import graphcnn as gc

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=30000)
p.add_argument("--size", type=int, default=32)
p.add_argument("--epochs", type=int, default=12)
p.add_argument("--width", type=int, default=16)
p.add_argument("--out", default="regress.png")
p.add_argument("--quick", action="store_true", help="64 images, one epoch, width 4 (a check)")
args = p.parse_args()
if args.quick:
    args.n, args.epochs, args.width = 64, 1, 4

train, test = gc.data.shapes(args.n, args.size, seed=0), gc.data.shapes(1000, args.size, seed=1)
mean, std = train.targets.mean(axis=0), train.targets.std(axis=0)   # training set only
stages = args.size.bit_length() - 3            # halve the image down to 4x4 (32 px: 3)
model = gc.models.cnn_regressor(2, input_size=args.size, width=args.width, stages=stages)
trainer = gc.Trainer(model, loss="mse", optimizer=gc.optim.Adam(lr=0.003),
                     schedule=gc.optim.CosineAnnealingLR(T_max=args.epochs),
                     augment="flip,vflip")      # mirrored images keep their targets
trainer.fit(train.images, (train.targets - mean) / std, epochs=args.epochs, batch_size=32)
predicted = trainer.predict(test.images) * std + mean                 # back to the units

fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
for k, (name, ax) in enumerate(zip(train.target_names, axes)):
    t, y = test.targets[:, k], predicted[:, k]
    m = gc.metrics.regression_metrics(t, y)
    print(f"{name:14s} MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}  R^2 {m['r2']:.4f}")
    ax.scatter(t, y, s=5, alpha=0.4)
    ax.plot([t.min(), t.max()], [t.min(), t.max()], "r-", lw=1)   # predicted = true
    ax.set(title=f"{name}: R^2 {m['r2']:.3f}", xlabel="true", ylabel="predicted")
fig.savefig(args.out, dpi=100)
print(f"wrote {args.out}")
