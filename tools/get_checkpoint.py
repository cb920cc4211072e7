#!/usr/bin/env python
"""Fetch a pretrained checkpoint listed in modzoo/data/manifest/, verify it, convert it to modzoo's layout.

    python tools/get_checkpoint.py zoo_focalnet_tiny_srf                 # default tag, first live source
    python tools/get_checkpoint.py zoo_focalnet_tiny_srf.ms_in1k --source 1
    python tools/get_checkpoint.py zoo_focalnet_tiny_iso --file ~/Downloads/focalnet_tiny_iso_16.pth --trust-pickle
    python tools/get_checkpoint.py zoo_focalnet_tiny_srf --url file:///data/focalnet_tiny_srf.pth

Every option: ``python tools/get_checkpoint.py --help``. The logic lives in ``modzoo/hub.py``.
"""
import sys

from modzoo.hub import main

if __name__ == '__main__':
    sys.exit(main())
