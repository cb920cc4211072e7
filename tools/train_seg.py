#!/usr/bin/env python
"""Train a segmentor (MMSegmentation 1.x config): the command line of mmseg's tools/train.py, plus ``--tiny``.

    python tools/train_seg.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...] [--tiny [ROOT]]
    torchrun --nproc_per_node=8 tools/train_seg.py CONFIG --launcher pytorch

``--resume`` without a value continues from the latest checkpoint in the work dir. Checkpoints are read under torch's
``weights_only`` default with an allow-list of mmengine's own types (see modzoo/mm/checkpoint_compat.py).
"""
from modzoo.mm.cli import train_seg

if __name__ == '__main__':
    train_seg()
