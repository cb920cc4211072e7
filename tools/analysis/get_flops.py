#!/usr/bin/env python
"""FLOPs and parameters of a whole MMSegmentation/MMDetection config (fvcore, one FMA = one FLOP).

    python tools/analysis/get_flops.py \
        configs/focalnet/upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py --shape 512 2048
    python tools/analysis/get_flops.py configs/focalnet/mask-rcnn_focalnet-t-srf_fpn_ms-crop-1x_coco.py \
        --shape 800 1280

Counts the inference forward (no auxiliary head), with attention (SDPA) counted; see modzoo/mm/flops.py for the
conventions. Papers' resolutions: ADE20K UperNet 512x2048, COCO 800x1280 (H W).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from modzoo.mm.flops import count_config_flops  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='+', help='config file(s)')
    parser.add_argument('--shape', type=int, nargs='+', default=[512, 2048], help='input H W (one value: square)')
    parser.add_argument('--json', help='also write the reports to this JSON file')
    args = parser.parse_args(argv)
    shape = args.shape * 2 if len(args.shape) == 1 else args.shape
    if len(shape) != 2:
        parser.error('--shape takes H W or a single size')
    reports = []
    for config in args.config:
        report = count_config_flops(config, shape)
        reports.append(report)
        print(report.table(), end='\n\n')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump([r.__dict__ for r in reports], f, indent=1)


if __name__ == '__main__':
    main()
