"""Tiny synthetic datasets in the real on-disk layouts that MMSegmentation 1.x and MMDetection 3.x read, and the
``--tiny`` config rewrite that runs any config on them.

The datasets exist so that configs can train and evaluate for a few iterations in CI without the real data. Images are
synthetic (shapes and textures with matching labels), deterministic for a given seed. One writer per dataset, each in
its own function; add further datasets as further functions and entries in ``WRITERS`` (and ``TINY_DATASETS``).

* ``synapse`` -> ``<root>/synapse/{img_dir,ann_dir}/{train,val}/caseNNNN_sliceNNN.{jpg,png}``: grey CT-like slices
  saved as RGB JPEGs and ``L`` PNG labels 0..8 (background + 8 organs), as mmseg's ``tools/dataset_converters/
  synapse.py`` writes them for ``SynapseDataset`` (data_root ``data/synapse/``).
* ``ade20k`` -> ``<root>/ade/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_{train,val}_NNNNNNNN
  .{jpg,png}``: RGB JPEGs and PNG labels 0..150 where 0 is "other" (``ADE20KDataset`` uses reduce_zero_label=True).
* ``coco`` -> ``<root>/coco/{train2017,val2017}/NNNNNNNNNNNN.jpg`` and ``<root>/coco/annotations/instances_{train2017,
  val2017}.json``: COCO instance annotations (the 80 categories with their official ids 1..90, polygon
  ``segmentation``, ``bbox`` as [x, y, w, h], ``area`` of the mask, ``iscrowd``), as ``CocoDataset`` and
  ``CocoMetric`` (bbox and segm AP through pycocotools) read them (data_root ``data/coco/``).

Config rewrites: :func:`apply_tiny` (what ``--tiny`` of the train/test command lines does, writing the config's
dataset when it is missing), and the two it is made of that other code also needs, :func:`use_batchnorm` and
:func:`fewer_boxes`.

    python tools/make_tiny_datasets.py --root data --datasets synapse ade20k coco
"""
import argparse
import json
import os
import os.path as osp
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    'write_tiny_synapse', 'write_tiny_ade20k', 'write_tiny_coco', 'WRITERS', 'COCO_CLASSES', 'COCO_CATEGORY_IDS',
    'DEFAULT_TINY_ROOT', 'TINY_DATASETS', 'use_batchnorm', 'fewer_boxes', 'apply_tiny', 'make_tiny_datasets',
]

DEFAULT_TINY_ROOT = osp.join('data', 'tiny')


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
                for (organ, (cy, cx, ry, rx, grey)), (jy, jx) in zip(_SYNAPSE_ORGANS.items(), jitter, strict=True):
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


# ----------------------------------------------------------------------------------------------------------------------
# COCO (instances, 80 categories; detection and instance segmentation)
# ----------------------------------------------------------------------------------------------------------------------

COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
    'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant',
    'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard',
    'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli',
    'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'dining table', 'toilet',
    'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')
# the official category ids skip 10 numbers that the 2014 paper's 91-category list had
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
# supercategory by category-id range, as in instances_*.json
_COCO_SUPERCATEGORIES = (
    (1, 'person'), (2, 'vehicle'), (10, 'outdoor'), (16, 'animal'), (27, 'accessory'), (34, 'sports'),
    (44, 'kitchen'), (52, 'food'), (62, 'furniture'), (72, 'electronic'), (78, 'appliance'), (84, 'indoor'))
# the categories the tiny images draw: few enough that every one recurs across images (AP needs repeats)
_COCO_DRAWN = ('person', 'car', 'dog', 'cup', 'chair')


def _coco_supercategory(cat_id: int) -> str:
    return [name for start, name in _COCO_SUPERCATEGORIES if cat_id >= start][-1]


def write_tiny_coco(root: str, num_train: int = 4, num_val: int = 2, size=(128, 160), seed: int = 0) -> str:
    """Write the COCO 2017 instances layout under ``<root>/coco`` and return that directory.

    Every image holds 2-4 non-overlapping objects (random convex polygons in distinct cells of a 2x2 grid) of the
    categories in ``_COCO_DRAWN``, each filled with its category's colour and a striped texture over a noisy
    background. Annotations carry the polygon, its bounding box and the area of the rasterised mask.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    out = os.path.join(root, 'coco')
    os.makedirs(os.path.join(out, 'annotations'), exist_ok=True)
    cat_ids = dict(zip(COCO_CLASSES, COCO_CATEGORY_IDS, strict=True))
    colours = {name: rng.integers(40, 256, size=3) for name in _COCO_DRAWN}
    categories = [dict(id=i, name=n, supercategory=_coco_supercategory(i)) for n, i in cat_ids.items()]
    yy, xx = np.mgrid[0:h, 0:w]
    image_id, ann_id = 0, 0
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        img_dir = os.path.join(out, split)
        os.makedirs(img_dir, exist_ok=True)
        images, annotations = [], []
        for _ in range(count):
            image_id += 1
            img = rng.normal(110, 20, size=(h, w, 3))
            cells = rng.permutation(4)[:rng.integers(2, 5)]
            for cell in cells:
                name = _COCO_DRAWN[rng.integers(len(_COCO_DRAWN))]
                # a random convex polygon inside the cell (vertices at sorted angles around a centre)
                cy0, cx0 = (cell // 2) * h / 2, (cell % 2) * w / 2
                cy, cx = cy0 + h / 4 + rng.uniform(-h / 16, h / 16), cx0 + w / 4 + rng.uniform(-w / 16, w / 16)
                n = rng.integers(5, 9)
                angles = np.sort(rng.uniform(0, 2 * np.pi, n))
                radius = rng.uniform(0.45, 0.95, n) * min(h, w) / 5
                xy = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
                xy = np.clip(np.round(xy, 1), 0, [w - 1, h - 1])
                mask_img = Image.new('L', (w, h), 0)
                ImageDraw.Draw(mask_img).polygon([tuple(p) for p in xy], fill=1)
                mask = np.asarray(mask_img, dtype=bool)
                if mask.sum() < 16:
                    continue
                stripes = 30 * np.sin(2 * np.pi * (xx + yy) / (4 + COCO_CLASSES.index(name) % 5))
                img[mask] = colours[name] + stripes[mask][:, None]
                ys, xs = np.nonzero(mask)
                x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
                ann_id += 1
                annotations.append(dict(
                    id=ann_id, image_id=image_id, category_id=cat_ids[name], iscrowd=0,
                    segmentation=[[float(v) for v in xy.reshape(-1)]],
                    area=float(mask.sum()), bbox=[x0, y0, x1 - x0, y1 - y0],
                ))
            file_name = f'{image_id:012d}.jpg'
            img = np.clip(img, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(img_dir, file_name), quality=95)
            images.append(dict(id=image_id, file_name=file_name, height=h, width=w, license=1,
                               date_captured='2017-01-01 00:00:00'))
        data = dict(
            info=dict(description='modzoo tiny synthetic COCO', version='1.0', year=2017, contributor='modzoo',
                      date_created='2017/01/01'),
            licenses=[dict(id=1, name='CC0 1.0 (synthetic data)', url='')],
            images=images, annotations=annotations, categories=categories,
        )
        with open(os.path.join(out, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(data, f)
    return out


WRITERS: Dict[str, Callable[..., str]] = {
    'synapse': write_tiny_synapse,
    'ade20k': write_tiny_ade20k,
    'coco': write_tiny_coco,
}


# ----------------------------------------------------------------------------------------------------------------------
# config rewrites
# ----------------------------------------------------------------------------------------------------------------------

def _walk(node: Any, fn: Callable[[Any], None]) -> None:
    """Call ``fn`` on every dict (mmengine ConfigDict included) nested anywhere in ``node``."""
    if isinstance(node, Mapping):
        fn(node)
        for value in list(node.values()):
            _walk(value, fn)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _walk(value, fn)


def use_batchnorm(cfg) -> None:
    """Replace SyncBN by BN everywhere in ``cfg`` (single-process runs and model builds outside the Runner).

    The configs keep the papers' SyncBN for multi-GPU training; mmengine's Runner reverts it on its own when not
    distributed, but a model built directly with ``MODELS.build`` cannot run SyncBN without a process group.
    """

    def fix(d):
        if d.get('type') in ('SyncBN', 'MMSyncBN'):
            d['type'] = 'BN'

    _walk(cfg._cfg_dict if hasattr(cfg, '_cfg_dict') else cfg, fix)


def fewer_boxes(train_or_test_cfg) -> None:
    """Cap a detector's proposals/detections (20 per image) and sampled RoIs (64), in place.

    RoI heads on the default 1000 proposals dominate the CPU time of tiny runs; the caps keep every head in use.
    """

    def cap(d):
        for key, limit in (('nms_pre', 100), ('max_per_img', 20), ('num', 64)):
            if isinstance(d.get(key), int) and (key != 'num' or 'Sampler' in str(d.get('type', ''))):
                d[key] = min(d[key], limit)

    _walk(train_or_test_cfg, cap)


# tiny dataset per dataset type: (WRITERS key, data_root below the tiny root)
TINY_DATASETS: Dict[str, tuple] = {
    'ADE20KDataset': ('ade20k', osp.join('ade', 'ADEChallengeData2016')),
    'CocoDataset': ('coco', 'coco' + os.sep),
    'SynapseDataset': ('synapse', 'synapse' + os.sep),
}
_SCALE_KEYS = ('scale', 'scales', 'crop_size', 'img_scale')


def _scaled(value: Any, factor: int) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(16, int(round(value / factor)))
    if isinstance(value, (list, tuple)):
        return type(value)(_scaled(v, factor) for v in value)
    return value


def _base_dataset(dataset_cfg: Mapping) -> Mapping:
    while 'dataset' in dataset_cfg and 'data_root' not in dataset_cfg:  # RepeatDataset / ClassBalancedDataset
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def apply_tiny(
        cfg,
        root: str = DEFAULT_TINY_ROOT,
        iters: int = 4,
        scale_factor: int = 8,
        write_missing: bool = True,
) -> None:
    """Rewrite ``cfg`` in place to train/evaluate for a few iterations on the tiny synthetic datasets.

    * data roots (and evaluator annotation files) point at ``root``'s copy of the config's dataset, written by its
      ``WRITERS`` entry when it is missing (``write_missing=False``: the config only, no files written);
    * every resize scale / crop size in the pipelines and the data preprocessor shrinks by ``scale_factor`` (512 crops
      become 64), keeping the pipelines' structure (multi-scale choices, crops) intact;
    * ``iters`` training iterations (iteration loops) or ``iters // 2`` epochs of 2 batches (epoch loops), evaluation
      and a checkpoint every half of that, batch 2, no worker processes, BN instead of SyncBN;
    * no pretrained download (``init_cfg`` dropped), and detectors keep boxes of any score (``score_thr=0``) so an
      untrained model still gives the COCO evaluator something to score, but at most 20 per image (proposals and
      detections) and 64 sampled RoIs, since RoI heads dominate the CPU time.
    """
    train_ds = _base_dataset(cfg.train_dataloader.dataset)
    dataset_type = train_ds.get('type')
    if dataset_type not in TINY_DATASETS:
        raise ValueError(f'No tiny dataset for {dataset_type}; known: {sorted(TINY_DATASETS)}')
    writer_key, sub_root = TINY_DATASETS[dataset_type]
    new_root = osp.join(root, sub_root)
    if write_missing and not osp.isdir(new_root.rstrip(os.sep)):
        WRITERS[writer_key](root)
    old_root = train_ds['data_root']

    def reroot(d):
        for key, value in d.items():
            if isinstance(value, str) and value.startswith(old_root):
                d[key] = new_root + value[len(old_root):]

    def shrink(d):
        if 'type' in d:  # a transform
            for key in _SCALE_KEYS:
                if key in d:
                    d[key] = _scaled(d[key], scale_factor)

    def use_tiny_loader(loader, batch_size):
        loader['batch_size'] = batch_size
        loader['num_workers'] = 0
        loader['persistent_workers'] = False

    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(name) is not None:
            _walk(cfg[name], reroot)
            _walk(cfg[name].dataset, shrink)
            use_tiny_loader(cfg[name], 2 if name == 'train_dataloader' else 1)
    for name in ('val_evaluator', 'test_evaluator', 'train_pipeline', 'test_pipeline', 'tta_pipeline'):
        if cfg.get(name) is not None:
            _walk(cfg[name], reroot)
            if name.endswith('pipeline'):
                _walk(cfg[name], shrink)
    preprocessor = cfg.model.get('data_preprocessor') or {}
    if preprocessor.get('size') is not None:
        preprocessor['size'] = _scaled(preprocessor['size'], scale_factor)
    test_cfg = cfg.model.get('test_cfg') or {}
    for key in ('crop_size', 'stride'):
        if test_cfg.get(key) is not None:
            test_cfg[key] = _scaled(test_cfg[key], scale_factor)

    use_batchnorm(cfg)
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    _walk(cfg.model, lambda d: d.pop('init_cfg', None) if d.get('type') == 'ModzooBackbone' else None)
    _walk(cfg.model.get('test_cfg') or {}, lambda d: d.__setitem__('score_thr', 0.0) if 'score_thr' in d else None)
    for name in ('train_cfg', 'test_cfg'):
        fewer_boxes(cfg.model.get(name) or {})

    loop = cfg.train_cfg.get('type', '')
    half = max(1, iters // 2)
    if 'Epoch' in loop or 'max_epochs' in cfg.train_cfg:
        cfg.train_cfg.max_epochs = half  # 4 train images at batch 2: 2 iterations per epoch
        cfg.train_cfg.val_interval = 1
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, by_epoch=True)
    else:
        cfg.train_cfg.max_iters = iters
        cfg.train_cfg.val_interval = half
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=half, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1, log_metric_by_epoch='Epoch' in loop)
    cfg.env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                       dist_cfg=dict(backend='gloo'))


def make_tiny_datasets(argv: Optional[Sequence[str]] = None) -> None:
    """``modzoo-make-tiny-datasets`` / ``tools/make_tiny_datasets.py``: write the tiny datasets under ``--root``."""
    parser = argparse.ArgumentParser(description=(
        'Write tiny synthetic datasets in the real on-disk layouts that MMSegmentation 1.x and MMDetection 3.x read.'))
    parser.add_argument('--root', default='data', help='parent folder (configs expect data/...)')
    parser.add_argument('--datasets', nargs='+', default=sorted(WRITERS), choices=sorted(WRITERS))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    for name in args.datasets:
        print(f'{name}: {WRITERS[name](args.root, seed=args.seed)}')
