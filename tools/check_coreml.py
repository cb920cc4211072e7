#!/usr/bin/env python
"""On a Mac: run a Core ML package written by ``tools/export_onnx.py --format coreml`` and compare it with PyTorch.

    python tools/check_coreml.py zoo_efficientmod_xxs.mlpackage zoo_efficientmod_xxs --checkpoint m.pth

Core ML predicts only on macOS (elsewhere this says so, exit 2). The logic lives in ``modzoo/export/coreml.py``.
Exit status: 0 match, 1 mismatch, 2 bad input.
"""
import sys

from modzoo.export.coreml import main

if __name__ == '__main__':
    sys.exit(main())
