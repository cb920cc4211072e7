#!/usr/bin/env python
"""Where an exported graph spends its time in ONNX Runtime and OpenVINO, by op type and by node, beside another graph.

    python tools/profile_graph.py zoo_efficientmod_s --anchor efficientformerv2_s2
    python tools/profile_graph.py zoo_smt_tiny --anchor convnext_nano --runtimes ort --top 20
    python tools/profile_graph.py a.onnx --anchor b.onnx

Options and method: ``--help``; the code lives in ``modzoo.bench.profile_graph``.
"""
import sys

from modzoo.bench.profile_graph import main

if __name__ == '__main__':
    sys.exit(main())
