"""Import real exported CNNs: torchvision's resnet18, mobilenet_v2 and googlenet (random
seeded weights, random batch-norm statistics), exported by torch.onnx, imported with
gc.onnx.load and compared with ONNX Runtime.

Two steps, two environments (graphcnn does not need torch):

    # 1. in an environment with torch, torchvision and onnx (onnxscript for --dynamo):
    python examples/onnx_torchvision.py export OUT_DIR [--dynamo]
    # 2. in graphcnn's environment (with onnx and onnxruntime):
    python examples/onnx_torchvision.py check OUT_DIR/*.onnx

`check` prints, per file and batch size, the largest error of graphcnn's outputs relative
to the largest magnitude of ONNX Runtime's, and the compile time.
"""
from __future__ import annotations

import argparse
import os
import time

MODELS = ("resnet18", "mobilenet_v2", "googlenet")


def export(out_dir: str, dynamo: bool) -> None:
    import torch
    import torchvision

    os.makedirs(out_dir, exist_ok=True)
    for name in MODELS:
        kwargs = dict(weights=None)
        if name == "googlenet":
            kwargs.update(aux_logits=False, init_weights=True)
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(**kwargs).eval()
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.copy_(torch.randn(module.running_mean.shape,
                                                          generator=gen) * 0.1)
                    module.running_var.copy_(torch.rand(module.running_var.shape,
                                                        generator=gen) + 0.5)
        x = torch.randn(1, 3, 224, 224, generator=gen)
        path = os.path.join(out_dir, f"{name}{'_dynamo' if dynamo else ''}.onnx")
        if dynamo:
            torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("N")}}, dynamo=True)
        else:
            torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                              opset_version=17, dynamo=False)
        print(path)


def check(paths: list[str], batches: tuple[int, ...] = (1, 4)) -> None:
    import numpy as np
    import onnxruntime as ort

    import graphcnn as gc

    for path in paths:
        start = time.perf_counter()
        model = gc.onnx.load(path)
        load_s = time.perf_counter() - start
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for batch in batches:
            shape = model.inputs[0].type.shape[1:]       # (3, 224, 224) for these models
            x = np.random.default_rng(batch).standard_normal((batch, *shape))
            x = x.astype(np.float32)
            want = session.run(None, {session.get_inputs()[0].name: x})[0]
            exe = gc.compile(model, batch_size=batch, backend="cpu")
            got = exe(x)
            error = float(np.abs(got - want).max() / np.abs(want).max())
            print(f"{os.path.basename(path):26s} batch {batch}: max rel error vs ONNX Runtime "
                  f"{error:.1e}, load {load_s:.2f} s, compile {exe.compile_seconds:.2f} s, "
                  f"{model.num_parameters():,} parameters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    e = sub.add_parser("export")
    e.add_argument("out_dir")
    e.add_argument("--dynamo", action="store_true", help="torch.onnx's dynamo exporter")
    c = sub.add_parser("check")
    c.add_argument("paths", nargs="+")
    args = parser.parse_args()
    if args.step == "export":
        export(args.out_dir, args.dynamo)
    else:
        check(args.paths)


if __name__ == "__main__":
    main()
