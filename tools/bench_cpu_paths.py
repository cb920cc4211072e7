#!/usr/bin/env python
"""Where eager CPU time goes: PyTorch eager vs ``torch.compile`` (inductor, CPU), and eager vs ONNX Runtime by op.

    python tools/bench_cpu_paths.py                       # compile vs eager, one model per family, batch 1 and 8
    python tools/bench_cpu_paths.py --profile             # + torch profiler vs ORT profiler, FocalNet-T batch 8
    python tools/bench_cpu_paths.py --write-benchmarks    # refresh the section in BENCHMARKS.md

Options and method: ``--help``; the code lives in ``modzoo.bench.cpu_paths``.
"""
import sys

from modzoo.bench.cpu_paths import main

if __name__ == '__main__':
    sys.exit(main())
