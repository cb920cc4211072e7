#!/usr/bin/env python
"""Aliasing measure of the SFM paper: share of feature power above the Nyquist limit of each stride-2 layer.

    python tools/aliasing.py --model zoo_focalnet_tiny_srf --images data/ade/ADEChallengeData2016/images/validation \
        --size 512 --max-images 50 --pretrained --out aliasing.png

Options and method: ``--help``; the code lives in ``modzoo.bench.aliasing``.
"""
from modzoo.bench.aliasing import main

if __name__ == '__main__':
    main()
