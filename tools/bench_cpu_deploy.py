#!/usr/bin/env python
"""Every CPU deployment path side by side: eager, torch.compile, ONNX Runtime fp32/int8, OpenVINO fp32/int8.

    python tools/bench_cpu_deploy.py --json out.json --write-benchmarks --write-readme   # BENCHMARKS.md + README
    python tools/bench_cpu_deploy.py --quick zoo_efficientmod_xxs                        # tool check, seconds

Options and method: ``--help``; the code lives in ``modzoo.bench.cpu_deploy``.
"""
import sys

from modzoo.bench.cpu_deploy import main

if __name__ == '__main__':
    sys.exit(main())
