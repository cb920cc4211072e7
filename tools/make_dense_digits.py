#!/usr/bin/env python
"""Write the dense digits: scikit-learn's real digit scans composed on canvases, for mmseg's BaseSegDataset
(img_dir/ann_dir PNG label maps) and mmdet's CocoDataset (annotations/instances_{train,val}.json).

The scans are split into train and val before composing; deterministic for --seed (modzoo/dense_digits.py).

    python tools/make_dense_digits.py data/dense_digits
    python tools/make_dense_digits.py data/dense_digits_shuffled --shuffle-train-labels   # the negative control
"""
import sys

from modzoo.dense_digits import make_dense_digits

if __name__ == '__main__':
    sys.exit(make_dense_digits())
