#!/usr/bin/env python
"""Where an ExecuTorch program spends its time inside XNNPACK, by XNNPACK operator and by node (ETDump).

    python tools/profile_pte.py zoo_efficientmod_xxs
    python tools/profile_pte.py zoo_gridpe_pvt_v2_b0 --int8 --size 160 --top 20

Options and method: ``--help``; the code lives in ``modzoo.bench.profile_pte``.
"""
import sys

from modzoo.bench.profile_pte import main

if __name__ == '__main__':
    sys.exit(main())
