#!/usr/bin/env python
"""Params and GFLOPs of every registered modzoo model beside the papers' numbers.

    python tools/model_table.py                      # print the markdown table
    python tools/model_table.py --write-readme       # also refresh the table in README.md
    python tools/model_table.py --filter 'zoo_smt*' --json stats.json

Options and method: ``--help``; the code lives in ``modzoo.bench.model_table``.
"""
from modzoo.bench.model_table import main

if __name__ == '__main__':
    main()
