"""Export a zoo model to ONNX, import the file back, compile it, and compare graphcnn's
outputs with ONNX Runtime's on the same file. Needs the onnx extra:
`pip install -e ".[onnx]"` (onnx and onnxruntime).

    python examples/onnx_roundtrip.py [--model resnet18] [--batch-size 8] [--quick]

--quick uses LeNet-5 at batch 2 (seconds instead of a ResNet-18 compile).
"""
import argparse

import numpy as np
import onnxruntime as ort  # the peer, for comparison

import graphcnn as gc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="resnet18", help="a zoo name (default resnet18)")
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--quick", action="store_true", help="lenet5 at batch 2")
args = parser.parse_args()
name, batch = ("lenet5", 2) if args.quick else (args.model, args.batch_size)

# 1. export: any graphcnn Model (here a zoo one) to a file, with a dynamic batch 'N'
path = gc.onnx.save(gc.models.get_model(name), f"{name}.onnx")
# 2. import: the file (yours, or one torch.onnx.export wrote) as a graphcnn Model
model = gc.onnx.load(path)
exe = gc.compile(model, batch_size=batch)          # the batch size binds here
x = np.random.default_rng(0).random((batch, *model.inputs[0].type.shape[1:]), np.float32)
mine = exe(x)

session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
error = np.abs(mine - theirs).max() / np.abs(theirs).max()
print(f"{path}: {model.num_parameters():,} parameters, output {mine.shape}, largest "
      f"difference from ONNX Runtime {error:.1e} of its largest output")
assert error < 1e-4
