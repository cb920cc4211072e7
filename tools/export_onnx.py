#!/usr/bin/env python
"""Export a modzoo model to ONNX and (with ``--check``) prove the graph right in ONNX Runtime.

    python tools/export_onnx.py zoo_smt_small --dynamic batch --check
    python tools/export_onnx.py zoo_focalnet_tiny_srf --checkpoint focalnet_tiny_srf.pth --dynamic batch,spatial \\
        --deploy --simplify --check --output focalnet_t.onnx
    python tools/export_onnx.py zoo_efficientmod_s --checkpoint m.pth --int8 --calib-data imagenet/val --check

Every option: ``python tools/export_onnx.py --help``. The logic lives in ``modzoo/export/cli.py``.
Exit status: 0 success, 1 export or parity failure, 2 bad input.
"""
import sys

from modzoo.export.cli import main

if __name__ == '__main__':
    sys.exit(main())
