#!/usr/bin/env python
"""modzoo against the timm networks users would pick instead: latency ratios and the goals of issue 32.

    python tools/bench_anchors.py --write-benchmarks --write-readme --json anchors.json   # the full table
    python tools/bench_anchors.py --pairs zoo_gridpe_pvt_v2_b0=pvt_v2_b0 --paths ort_fp32 --settings 1x1
    python tools/bench_anchors.py --quick                                               # tool check

Options and method: ``--help``; the code lives in ``modzoo.bench.anchors``.
"""
import sys

from modzoo.bench.anchors import main

if __name__ == '__main__':
    sys.exit(main())
