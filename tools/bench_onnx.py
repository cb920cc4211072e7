#!/usr/bin/env python
"""ONNX Runtime (CPU execution provider) vs PyTorch eager: latency, throughput and peak memory, side by side.

    python tools/bench_onnx.py                                   # every registered model up to 300M params
    python tools/bench_onnx.py zoo_smt_tiny zoo_efficientmod_s --batches 1 8 --threads 1 2 --repeats 9
    python tools/bench_onnx.py --write-benchmarks                # refresh the table in BENCHMARKS.md
    python tools/bench_onnx.py --int8 --profile zoo_efficientmod_s  # fp32 ORT vs int8 ORT, profile the misses
    python tools/bench_onnx.py --exporters zoo_focalnet_tiny_srf # compare the torchscript and dynamo exporters

Options and method: ``--help``; the code lives in ``modzoo.bench.onnx_runtime``.
"""
import sys

from modzoo.bench.onnx_runtime import main

if __name__ == '__main__':
    sys.exit(main())
