#!/usr/bin/env python
"""Test and evaluate a detector (MMDetection 3.x config) checkpoint.

The command line of mmdet's tools/test.py, plus ``--tiny``.

    python tools/test_det.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT] [--show-dir DIR] [--tta]
        [--cfg-options k=v ...] [--tiny [ROOT]]
    torchrun --nproc_per_node=8 tools/test_det.py CONFIG CHECKPOINT --launcher pytorch
"""
from modzoo.mm.cli import test_det

if __name__ == '__main__':
    test_det()
