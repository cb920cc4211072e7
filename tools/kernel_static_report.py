#!/usr/bin/env python
"""Compile every modzoo Triton kernel configuration used at the models' layer shapes for sm_90, without a GPU,
and report registers, spills, shared memory and SASS instructions per output element.

    python tools/kernel_static_report.py                          # fp32, bf16, fp16; every model shape (minutes)
    python tools/kernel_static_report.py --quick --dtype float32  # one small case per op (about a minute)
    python tools/kernel_static_report.py --json now.json --baseline before.json --write-benchmarks

``--baseline`` takes an earlier ``--json`` output (e.g. from the commit before a kernel change, or under another
Triton version; repeat it, with ``--baseline-name``) and adds a table comparing every kernel's instructions per
element at k = 7 with this run's (``--name``), with the FMAs each must do and its roofline bound.
``--write-benchmarks`` replaces the static-report section of BENCHMARKS.md. Exit status 1 when a configuration
fails to compile, 2 on bad arguments. The logic is in modzoo/bench/static_report.py; installed as
``modzoo-kernel-static-report`` too.
"""
import sys

from modzoo.bench.static_report import main

if __name__ == '__main__':
    sys.exit(main())
