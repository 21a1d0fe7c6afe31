"""Data-parallel training of LeNet-5 on the digits over MPI ranks: the same script runs
under plain python (a world of one) and under mpiexec. Needs the distributed extra
(`pip install -e ".[distributed]"`) for more than one rank.

    python examples/distributed_train.py [--epochs 10] [--quick]
    mpiexec -n 2 python examples/distributed_train.py --epochs 10

Each rank trains on its own shard of every batch (batch size per rank); rank 0 prints,
evaluates and saves the weights.
"""
import argparse

import numpy as np

import graphcnn as gc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--quick", action="store_true", help="one epoch on 256 images")
args = parser.parse_args()

(X, y), (Xt, yt) = gc.data.load_digits(size=32)
epochs = args.epochs
if args.quick:
    X, y, epochs = X[:256], y[:256], 1

gc.manual_seed(0)                                  # rank 0's weights are broadcast anyway
model = gc.models.lenet5()
trainer = gc.Trainer(model, optimizer=gc.optim.SGD(lr=0.05, momentum=0.9),
                     distributed=True)             # a world of one under plain python
trainer.fit(X, y, epochs=epochs, batch_size=32, verbose=gc.distributed.is_main())
if gc.distributed.is_main():                       # every rank holds the same weights
    accuracy = trainer.evaluate(Xt, yt)["accuracy"]
    print(f"{gc.distributed.world_size()} rank(s), {epochs} epoch(s): test accuracy "
          f"{accuracy:.3f}")
    np.savez("lenet5_distributed.npz", **model.parameters())
