#!/usr/bin/env python
"""Write tiny synthetic datasets in the real on-disk layouts that MMSegmentation 1.x and MMDetection 3.x read.

Synapse, ADE20K and COCO, each in the layout its mmseg/mmdet dataset class reads, so that configs train and evaluate
for a few iterations without the real data (the writers and layouts: modzoo/mm/tiny.py).

    python tools/make_tiny_datasets.py --root data --datasets synapse ade20k coco
"""
from modzoo.mm.tiny import make_tiny_datasets

if __name__ == '__main__':
    make_tiny_datasets()
