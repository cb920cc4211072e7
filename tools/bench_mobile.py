#!/usr/bin/env python
"""Phone targets per family: ExecuTorch (XNNPACK fp32 / int8) and Core ML (fp32 / fp16), one thread.

    python tools/bench_mobile.py                                   # every family's smallest variant, 224 px
    python tools/bench_mobile.py --models zoo_efficientmod_xxs --targets xnnpack-fp32 coreml-fp16
    python tools/bench_mobile.py --digits output/main_job --write-benchmarks --write-readme

Options and method: ``--help``; the code lives in ``modzoo.bench.mobile``.
"""
import sys

from modzoo.bench.mobile import main

if __name__ == '__main__':
    sys.exit(main())
