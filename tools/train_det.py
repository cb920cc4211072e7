#!/usr/bin/env python
"""Train a detector (MMDetection 3.x config): the command line of mmdet's tools/train.py, plus ``--tiny``.

    python tools/train_det.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...] [--tiny [ROOT]]
    torchrun --nproc_per_node=8 tools/train_det.py CONFIG --launcher pytorch

``--resume`` without a value continues from the latest checkpoint in the work dir. Checkpoints are read under torch's
``weights_only`` default with an allow-list of mmengine's own types (see modzoo/mm/checkpoint_compat.py).
"""
from modzoo.mm.cli import train_det

if __name__ == '__main__':
    train_det()
