#!/usr/bin/env python
"""Held-out top-1 of every int8 variant (ONNX Runtime QDQ, NNCF for OpenVINO) on the main job's digits model.

    python tools/main_job.py --no-report && python tools/int8_accuracy.py output/main_job

Options and method: ``--help``; the code lives in ``modzoo.bench.int8_accuracy``.
"""
import sys

from modzoo.bench.int8_accuracy import main

if __name__ == '__main__':
    sys.exit(main())
