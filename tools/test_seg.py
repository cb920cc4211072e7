#!/usr/bin/env python
"""Test and evaluate a segmentor (MMSegmentation 1.x config) checkpoint.

The command line of mmseg's tools/test.py, plus ``--tiny``.

    python tools/test_seg.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT] [--show-dir DIR] [--tta]
        [--cfg-options k=v ...] [--tiny [ROOT]]
    torchrun --nproc_per_node=8 tools/test_seg.py CONFIG CHECKPOINT --launcher pytorch
"""
from modzoo.mm.cli import test_seg

if __name__ == '__main__':
    test_seg()
