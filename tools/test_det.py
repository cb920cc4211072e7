#!/usr/bin/env python
"""Test and evaluate a detector (MMDetection 3.x config) checkpoint.

The command line of mmdet's tools/test.py, plus ``--tiny``.

    python tools/test_det.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT] [--show-dir DIR] [--tta]
        [--cfg-options k=v ...] [--tiny [ROOT]]
    torchrun --nproc_per_node=8 tools/test_det.py CONFIG CHECKPOINT --launcher pytorch
"""
import os
import sys

_TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _TOOLS)  # make_tiny_datasets, for --tiny
sys.path.insert(1, os.path.dirname(_TOOLS))  # modzoo from a plain checkout as well as from an install

from make_tiny_datasets import WRITERS  # noqa: E402
from modzoo.mm.runtime import test_main  # noqa: E402

if __name__ == '__main__':
    test_main('mmdet', tiny_writers=WRITERS)
