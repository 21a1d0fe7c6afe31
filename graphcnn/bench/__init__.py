"""Benchmarks of graphcnn against its peers: ``graphcnn bench MODEL`` and
``graphcnn bench conv-layers``; see graphcnn/bench/cli.py.

    >>> from graphcnn.bench import bench_model                         # doctest: +SKIP
    >>> results = bench_model("lenet5", [64], training=True, against=["torch"])

Modules: flops (FLOPs of a graph), model_bench (whole models vs numpy/torch/onnxruntime),
conv_layers (ResNet-18's 3x3 convolutions vs torch), profile (per-kernel times of a
compiled executable), torch_models (PyTorch equivalents of zoo models), report (tables,
targets, charts), common (timing, the SGEMM roof, the machine).
"""
from graphcnn.bench.flops import graph_flops, node_flops
from graphcnn.bench.model_bench import bench_model, bench_workload

__all__ = ["bench_model", "bench_workload", "graph_flops", "node_flops"]
