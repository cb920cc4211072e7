#!/usr/bin/env python
"""Train a segmentor (MMSegmentation 1.x config): the command line of mmseg's tools/train.py, plus ``--tiny``.

    python tools/train_seg.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...] [--tiny [ROOT]]
    torchrun --nproc_per_node=8 tools/train_seg.py CONFIG --launcher pytorch

``--resume`` without a value continues from the latest checkpoint in the work dir. Checkpoints are read under torch's
``weights_only`` default with an allow-list of mmengine's own types (see modzoo/mm/runtime.py).
"""
import os
import sys

_TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _TOOLS)  # make_tiny_datasets, for --tiny
sys.path.insert(1, os.path.dirname(_TOOLS))  # modzoo from a plain checkout as well as from an install

from make_tiny_datasets import WRITERS  # noqa: E402
from modzoo.mm.runtime import train_main  # noqa: E402

if __name__ == '__main__':
    train_main('mmseg', tiny_writers=WRITERS)
