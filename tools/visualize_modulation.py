#!/usr/bin/env python
"""Modulator and gate maps of one stage of a modulation network for one image, saved as a PNG.

    python tools/visualize_modulation.py --model zoo_focalnet_tiny_srf --pretrained --image cat.jpg --stage 2 \
        --out cat_focalnet_stage2.png
    python tools/visualize_modulation.py --model zoo_efficientmod_xxs --checkpoint runs/x/best.pth --image 7.png

Options and method: ``--help``; the code lives in ``modzoo.visualize``.
"""
import sys

from modzoo.visualize import main

if __name__ == '__main__':
    sys.exit(main())
