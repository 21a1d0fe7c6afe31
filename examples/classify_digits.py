"""Classify handwritten digits with LeNet-5: train, score, predict one image, save the
weights and load them into a fresh model.

    python examples/classify_digits.py [--epochs 10] [--weights lenet5_digits.npz] [--quick]

--quick trains one epoch on 256 images (a check that it runs, not a good model).
"""
import argparse

import numpy as np

import graphcnn as gc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--weights", default="lenet5_digits.npz")
parser.add_argument("--quick", action="store_true", help="one epoch on 256 images")
args = parser.parse_args()

print("zoo models:", ", ".join(gc.models.available_models()))
(X, y), (Xt, yt) = gc.data.load_digits(size=32)       # float32 (N, 1, 32, 32), int64 (N,)
epochs = args.epochs
if args.quick:
    X, y, epochs = X[:256], y[:256], 1

model = gc.models.lenet5(num_classes=10)
trainer = gc.Trainer(model, optimizer=gc.optim.SGD(lr=0.05, momentum=0.9))
trainer.fit(X, y, epochs=epochs, batch_size=32, validation_data=(Xt, yt), verbose=False)
print(f"test accuracy: {trainer.evaluate(Xt, yt)['accuracy']:.3f}")

# one image: a batch of one, (1, 1, 32, 32); the logits' argmax is the class
logits = trainer.predict(Xt[:1])
print(f"first test image: predicted {int(logits.argmax(1)[0])}, labelled {int(yt[0])}")

# the weights are plain arrays by name: save them, load them into a fresh model
np.savez(args.weights, **model.parameters())
fresh = gc.models.lenet5(num_classes=10)
fresh.load_parameters(dict(np.load(args.weights)))
exe = gc.compile(fresh, batch_size=1)                 # inference at batch 1
assert np.allclose(exe(Xt[:1]), logits, atol=1e-4)
print(f"weights: {args.weights} (reloaded, same outputs)")
