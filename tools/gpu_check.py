#!/usr/bin/env python
"""The prepared GPU check of modzoo's fused Triton kernels: one bounded run on an H100/H200.

On a lent GPU, from a bare checkout (no install: torch, Triton, timm and numpy are enough)::

    PYTHONPATH=$PWD python tools/gpu_check.py --out results/   # check, time; results/ rewritten after every step
    PYTHONPATH=$PWD python tools/gpu_check.py --plan           # the steps and an estimate of their time
    PYTHONPATH=$PWD python tools/gpu_check.py --dry-run        # CPU, Triton interpreter, tiny shapes: every path
    PYTHONPATH=$PWD python tools/gpu_check.py --from-json results/gpu_check.json   # rewrite BENCHMARKS.md and table

The logic is in modzoo/bench/gpu_check.py; installed as ``modzoo-gpu-check`` too.
"""
import sys

try:
    from modzoo.bench.gpu_check import main
except ModuleNotFoundError as e:
    if e.name != 'modzoo':
        raise
    print('error: cannot import modzoo; run from the checkout as `PYTHONPATH=$PWD python tools/gpu_check.py ...` '
          '(or install it)', file=sys.stderr)
    sys.exit(2)

if __name__ == '__main__':
    sys.exit(main())
