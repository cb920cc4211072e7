#!/usr/bin/env python
"""The main job: the whole zoo working end to end on 2 CPU cores, with no download.

    .venv/bin/python tools/main_job.py

Data (scikit-learn's digits as an ImageFolder), training, validation, ONNX export and int8 quantization checked in
ONNX Runtime, modulation maps and the zoo report, all written under ``output/main_job`` (``--update-docs`` rewrites
the tracked ``docs/`` report instead). Every option: ``python tools/main_job.py --help``. The logic lives in
``modzoo/main_job.py``.
"""
import sys

from modzoo.main_job import main

if __name__ == '__main__':
    sys.exit(main())
