#!/usr/bin/env python
"""Top-1/top-5 and throughput of a model + checkpoint on an ImageFolder, with the model's evaluation transform.

    python tools/validate.py --model zoo_focalnet_tiny_srf --pretrained --data-dir /data/imagenet
    python tools/validate.py --model zoo_efficientmod_s --checkpoint runs/emod_s/best.pth --data-dir /data/imagenet
    python tools/validate.py --model zoo_smt_tiny --checkpoint smt_tiny.pth --data-dir /data/imagenet/val \
        --crop-pct 0.875 --results-file smt_tiny.json

The logic lives in ``modzoo/train/validate.py``.
"""
import sys

from modzoo.train.validate import main

if __name__ == '__main__':
    sys.exit(main())
