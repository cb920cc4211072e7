#!/usr/bin/env python
"""Write tiny synthetic datasets in the real on-disk layouts that MMSegmentation 1.x reads.

They exist so that configs can train and evaluate for a few iterations in CI without the real data. Images are
synthetic (shapes and textures with matching labels), deterministic for a given seed. One writer per dataset, each in
its own function; add further datasets as further functions and entries in ``WRITERS``.

* ``synapse`` -> ``<root>/synapse/{img_dir,ann_dir}/{train,val}/caseNNNN_sliceNNN.{jpg,png}``: grey CT-like slices
  saved as RGB JPEGs and ``L`` PNG labels 0..8 (background + 8 organs), as mmseg's ``tools/dataset_converters/
  synapse.py`` writes them for ``SynapseDataset`` (data_root ``data/synapse/``).
* ``ade20k`` -> ``<root>/ade/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_{train,val}_NNNNNNNN
  .{jpg,png}``: RGB JPEGs and PNG labels 0..150 where 0 is "other" (``ADE20KDataset`` uses reduce_zero_label=True).

    python tools/make_tiny_datasets.py --root data --datasets synapse ade20k
"""
import argparse
import os
from typing import Callable, Dict, Sequence

import numpy as np
from PIL import Image


def _ellipse_mask(h: int, w: int, cy: float, cx: float, ry: float, rx: float, angle: float = 0.) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.


# ----------------------------------------------------------------------------------------------------------------------
# Synapse (multi-organ CT, TransUNet preprocessing, 9 classes)
# ----------------------------------------------------------------------------------------------------------------------

# organ label -> (relative centre y, x, radii y, x, CT-like grey level); labels follow mmseg's SynapseDataset order:
# 1 aorta, 2 gallbladder, 3 left kidney, 4 right kidney, 5 liver, 6 pancreas, 7 spleen, 8 stomach
_SYNAPSE_ORGANS = {
    5: (0.45, 0.30, 0.17, 0.15, 150),
    7: (0.45, 0.75, 0.09, 0.07, 140),
    8: (0.35, 0.62, 0.10, 0.09, 110),
    3: (0.62, 0.70, 0.07, 0.05, 170),
    4: (0.62, 0.30, 0.07, 0.05, 170),
    1: (0.58, 0.50, 0.035, 0.035, 200),
    6: (0.52, 0.55, 0.04, 0.10, 125),
    2: (0.50, 0.38, 0.04, 0.03, 90),
}


def write_tiny_synapse(root: str, cases: Dict[str, Sequence[int]] = None, slices: int = 3, size: int = 96,
                       seed: int = 0) -> str:
    """Write the Synapse layout under ``<root>/synapse`` and return that directory.

    ``cases`` maps the split (``train``/``val``) to case ids; every case gets ``slices`` slices whose organs move and
    change size slightly from slice to slice, as in a CT volume.
    """
    cases = cases or {'train': [5, 6], 'val': [1]}
    rng = np.random.default_rng(seed)
    out = os.path.join(root, 'synapse')
    for split, ids in cases.items():
        img_dir = os.path.join(out, 'img_dir', split)
        ann_dir = os.path.join(out, 'ann_dir', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for case in ids:
            jitter = rng.normal(0, 0.02, size=(len(_SYNAPSE_ORGANS), 2))
            for sl in range(slices):
                img = np.full((size, size), 10., np.float32)
                label = np.zeros((size, size), np.uint8)
                body = _ellipse_mask(size, size, size * 0.5, size * 0.5, size * 0.40, size * 0.46)
                img[body] = 60.
                scale = 1. - 0.15 * abs(sl - (slices - 1) / 2) / max(slices, 1)
                for (organ, (cy, cx, ry, rx, grey)), (jy, jx) in zip(_SYNAPSE_ORGANS.items(), jitter):
                    mask = _ellipse_mask(size, size, (cy + jy) * size, (cx + jx) * size, ry * size * scale,
                                         rx * size * scale, angle=rng.uniform(-0.3, 0.3)) & body
                    img[mask] = grey
                    label[mask] = organ
                img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
                name = f'case{case:04d}_slice{sl:03d}'
                Image.fromarray(img).convert('RGB').save(os.path.join(img_dir, name + '.jpg'), quality=95)
                Image.fromarray(label).convert('L').save(os.path.join(ann_dir, name + '.png'))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# ADE20K (SceneParsing, ADEChallengeData2016, 150 classes + "other" = 0)
# ----------------------------------------------------------------------------------------------------------------------

def write_tiny_ade20k(root: str, num_train: int = 4, num_val: int = 2, size=(96, 128), seed: int = 0) -> str:
    """Write the ADE20K layout under ``<root>/ade/ADEChallengeData2016`` and return that directory.

    Each image is a background class plus a few shapes of other classes (labels 1..150, some pixels left at 0 =
    "other"), each class drawn with its own colour and a striped texture so the images have edges and fine detail.
    """
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(151, 3))
    out = os.path.join(root, 'ade', 'ADEChallengeData2016')
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for split, prefix, count in (('training', 'ADE_train', num_train), ('validation', 'ADE_val', num_val)):
        img_dir = os.path.join(out, 'images', split)
        ann_dir = os.path.join(out, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(count):
            label = np.full((h, w), rng.integers(1, 151), np.uint8)
            label[:, : w // 10] = 0  # an unlabelled ("other") strip
            for _ in range(4):
                cls = rng.integers(1, 151)
                mask = _ellipse_mask(h, w, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(h / 8, h / 3),
                                     rng.uniform(w / 8, w / 3), rng.uniform(0, np.pi))
                label[mask] = cls
            img = palette[label].astype(np.float32)
            period = 3 + (label.astype(np.float32) % 7)  # class-dependent stripe period: texture per region
            img += 40 * np.sin(2 * np.pi * (xx + 0.5 * yy) / period)[..., None]
            img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
            name = f'{prefix}_{i + 1:08d}'
            Image.fromarray(img).save(os.path.join(img_dir, name + '.jpg'), quality=95)
            Image.fromarray(label).save(os.path.join(ann_dir, name + '.png'))
    return out


WRITERS: Dict[str, Callable[..., str]] = {
    'synapse': write_tiny_synapse,
    'ade20k': write_tiny_ade20k,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', default='data', help='parent folder (configs expect data/...)')
    parser.add_argument('--datasets', nargs='+', default=sorted(WRITERS), choices=sorted(WRITERS))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    for name in args.datasets:
        print(f'{name}: {WRITERS[name](args.root, seed=args.seed)}')


if __name__ == '__main__':
    main()
