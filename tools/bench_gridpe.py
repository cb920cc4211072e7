#!/usr/bin/env python
"""GridPE overhead and PVT v2 parity, CPU eager, measured side by side in one run.

    python tools/bench_gridpe.py                         # PVT v2 b2, 224 px, batch 1
    python tools/bench_gridpe.py --batch 8 --repeats 9 --json out.json
    python tools/bench_gridpe.py --threads 1 2           # one result per thread count (a JSON list)

Options and method: ``--help``; the code lives in ``modzoo.bench.gridpe``.
"""
from modzoo.bench.gridpe import main

if __name__ == '__main__':
    main()
