#!/usr/bin/env python
"""Train a classification model (any registered modzoo or timm name) on ImageFolder data or a timm dataset.

    # one process (CPU or one GPU)
    python tools/train.py --config configs/imagenet/focalnet/tiny_srf.yaml --data-dir /data/imagenet
    # 8 GPUs on one machine (NCCL); on CPU torchrun uses gloo. --resume auto continues after an interruption.
    torchrun --nproc_per_node 8 tools/train.py --config configs/imagenet/efficientmod/s.yaml \
        --data-dir /data/imagenet --teacher-checkpoint regnety_160-a5fe301d.pth --output runs/emod_s --resume auto

Every option: ``python tools/train.py --help``. The logic lives in ``modzoo/train/``.
"""
import sys

from modzoo.train.trainer import main

if __name__ == '__main__':
    sys.exit(main())
