#!/usr/bin/env python
"""FLOPs and parameters of a whole MMSegmentation/MMDetection config (fvcore, one FMA = one FLOP).

    python tools/analysis/get_flops.py \
        configs/focalnet/upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py --shape 512 2048
    python tools/analysis/get_flops.py configs/focalnet/mask-rcnn_focalnet-t-srf_fpn_ms-crop-1x_coco.py \
        --shape 800 1280

Counts the inference forward (no auxiliary head), with attention (SDPA) counted; see modzoo/mm/flops.py for the
conventions. Papers' resolutions: ADE20K UperNet 512x2048, COCO 800x1280 (H W).
"""
from modzoo.mm.flops import main

if __name__ == '__main__':
    main()
