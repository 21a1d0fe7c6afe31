"""Full-size ResNet-50 and GoogLeNet at opset 9, as the ONNX model zoo published them, for
timing graphcnn against ONNX Runtime on files that go through the version converter.

    .venv/bin/python benchmarks/old_opset_models.py OUT_DIR
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/graphcnn bench \
        OUT_DIR/resnet50_opset9.onnx,OUT_DIR/googlenet_opset9.onnx --against onnxruntime \
        --record benchmarks/RESULTS.md

The zoo's own files are not downloaded (this machine reaches no model hub): graphcnn's
ResNet-50 and GoogLeNet (224 x 224, 1000 classes, seeded weights) are exported at opset 13
and rewritten node by node to opset 9 (tests/test_onnx_old_opsets.py's downgrade_to_9, the
rewrite its tests check against ONNX Runtime).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import onnx  # noqa: E402
from test_onnx_old_opsets import downgrade_to_9  # noqa: E402

import graphcnn as gc  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("resnet50", "googlenet"):
        gc.manual_seed(0)
        model = gc.models.get_model(name)
        current = gc.onnx.save(model, out / f"{name}_opset13.onnx", opset=13)
        path = out / f"{name}_opset9.onnx"
        onnx.save(downgrade_to_9(onnx.load(current)), path)
        print(path)


if __name__ == "__main__":
    main()
