#!/usr/bin/env python
"""CPU eager throughput of modzoo models against timm's implementation of the same architecture, side by side.

    python tools/bench_vs_timm.py                                  # the FocalNet pairs
    python tools/bench_vs_timm.py --pairs zoo_focalnet_tiny_srf=focalnet_tiny_srf --batch 8 --threads 1 2
    python tools/bench_vs_timm.py --write-benchmarks               # refresh the table in BENCHMARKS.md

Options and method: ``--help``; the code lives in ``modzoo.bench.vs_timm``.
"""
from modzoo.bench.vs_timm import main

if __name__ == '__main__':
    main()
