#!/usr/bin/env python
"""Train and test every dense-digits config (configs/digits_dense) with the stock mm train/test tools, check the
goals (segmentation mIoU >= 70; detection bbox AP >= 0.50, AP50 >= 0.85) and write the BENCHMARKS.md section between
<!-- dense:start --> and <!-- dense:end --> (logic: modzoo/bench/dense.py). Exit status 1 when a goal is missed.

    python tools/bench_dense.py --work-dir output/dense --update BENCHMARKS.md
    python tools/bench_dense.py --only "EfficientMod-xxs FPN"
    python tools/bench_dense.py --work-dir output/dense_quick --parallel 2 --quick   # every run for a few steps
"""
import sys

from modzoo.bench.dense import main

if __name__ == '__main__':
    sys.exit(main())
