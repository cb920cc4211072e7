#!/usr/bin/env python
"""The prepared GPU check of modzoo's fused Triton kernels: one run of at most 8 minutes on an H100/H200.

    python tools/gpu_check.py --out results/         # on a CUDA GPU: check, time, write BENCHMARKS.md and the table
    python tools/gpu_check.py --dry-run              # CPU, Triton interpreter, tiny shapes: every code path, quickly
    python tools/gpu_check.py --from-json results/gpu_check.json   # rewrite both files from an earlier run

It checks every op at the models' per-stage shapes against a float64 reference (TF32 off), forward and every
gradient, and that two backward passes agree; times the first call; runs bf16 training steps of FocalNet-T srf,
EfficientMod-s and SMT-S with the kernels on and off beside timm's focalnet_tiny_srf; times eager PyTorch,
torch.compile and the fused kernels from CUDA graphs, with peak memory and the roofline (see
modzoo/kernels/gpu_check.py). A time budget (--budget-s) skips what would start too late, and says so.

It writes the kernel section of BENCHMARKS.md and the validated-kernel table (modzoo/data/validated_kernels.json,
only this card's entries are replaced), from which `auto` decides where the kernels run, and, with --out, the raw
results (gpu_check.json), the section (kernels_section.md) and the table into that folder. --dry-run writes into
--out (a temporary folder by default) and never into BENCHMARKS.md or the packaged table.
Installed as ``modzoo-gpu-check`` too.
"""
import sys

from modzoo.kernels.gpu_check import main

if __name__ == '__main__':
    sys.exit(main())
