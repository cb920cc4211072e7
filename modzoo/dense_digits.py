"""A dense dataset from real images: scikit-learn's handwritten digits composed on canvases, written for
MMSegmentation's ``BaseSegDataset`` and MMDetection's ``CocoDataset`` as users write their own data.

``sklearn.datasets.load_digits`` ships 1,797 real 8x8 scans (17 grey levels) inside the scikit-learn wheel. The scans
are split per digit (stratified) into train and val *before* composing, so no scan is drawn on canvases of both
splits. Each canvas (``canvas`` px square, size drawn per canvas) holds ``digits`` scans at random scales and
positions whose squares do not touch; a scan is upsampled (bilinear) to its square, drawn at a contrast drawn per
digit, and the pixels of its square that are visibly ink in the written image (grey value >= :data:`INK_LEVEL`, while
the background stays at or below :data:`BACKGROUND_MAX`) carry the digit's class, so a label edge is an image edge.
Written under ``root``:

* ``img_dir/{train,val}/NNNNN.png``: the canvases, grey RGB (dim noisy background, bright ink);
* ``ann_dir/{train,val}/NNNNN.png``: ``L`` label maps, 0 = background, 1..10 = the digits 0..9 (:data:`SEG_METAINFO`);
* ``annotations/instances_{train,val}.json``: COCO instances of the same canvases (``file_name`` relative to
  ``img_dir/<split>/``): one per placed digit, category ids 1..10 = digits 0..9 (:data:`DET_METAINFO`), uncompressed
  RLE masks of its labelled pixels, their tight ``bbox`` and pixel ``area``, ``iscrowd`` 0, and the scan's index in
  ``load_digits`` as ``source_index``;
* ``dense_digits.json``: the settings and the scan indices of each split.

Deterministic for a seed. Only numpy, PIL and scikit-learn are needed to write it.

    python tools/make_dense_digits.py data/dense_digits
"""
import json
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .utils.cli import OneLineArgumentParser, UsageError, print_error
from .utils.files import read_marker

__all__ = ['DIGIT_CLASSES', 'SEG_METAINFO', 'DET_METAINFO', 'INK_LEVEL', 'BACKGROUND_MAX', 'split_sources',
           'compose_canvas', 'mask_to_rle', 'write_dense_digits', 'make_dense_digits']

DIGIT_CLASSES = tuple(str(d) for d in range(10))
_PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
            [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]]
SEG_METAINFO = dict(classes=('background',) + DIGIT_CLASSES, palette=[[0, 0, 0]] + _PALETTE)
DET_METAINFO = dict(classes=DIGIT_CLASSES, palette=[tuple(c) for c in _PALETTE])
BACKGROUND_MAX = 60  # background pixels stay at or below this grey value
# a pixel is a digit's when its written grey value is at least this: the label is what the image shows. (Labelling
# the upsampled scan at half its own scale instead gave soft, contrast-dependent edges; EfficientMod-xxs FPN
# plateaued at mIoU ~65 on those.)
INK_LEVEL = 70
_MIN_CONTRAST = 180  # a digit's full-scale ink value is drawn from [_MIN_CONTRAST, 255]
_MARKER = 'dense_digits.json'
_SPLITS = ('train', 'val')


def split_sources(targets: np.ndarray, val_fraction: float, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Scan indices per split, stratified by digit: ``val_fraction`` of each digit's scans go to val."""
    parts = {'train': [], 'val': []}
    for digit in range(10):
        idx = np.flatnonzero(targets == digit)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        parts['val'].append(idx[:n_val])
        parts['train'].append(idx[n_val:])
    return {split: np.sort(np.concatenate(p)) for split, p in parts.items()}


def _place_squares(rng: np.random.Generator, side: int, count: int, size_range: Tuple[int, int],
                   tries: int = 200) -> List[Tuple[int, int, int]]:
    """Up to ``count`` squares (y, x, size) inside a ``side`` canvas, pairwise at least one pixel apart."""
    placed: List[Tuple[int, int, int]] = []
    for _ in range(tries):
        if len(placed) == count:
            break
        size = int(rng.integers(size_range[0], min(size_range[1], side) + 1))
        y, x = (int(v) for v in rng.integers(0, side - size + 1, size=2))
        if all(y + size < py or py + ps < y or x + size < px or px + ps < x for py, px, ps in placed):
            placed.append((y, x, size))
    return placed


def _upsampled_ink(scan: np.ndarray, size: int) -> np.ndarray:
    """The 8x8 scan (grey levels 0..16) as a ``size`` x ``size`` ink map in [0, 1] (bilinear)."""
    small = Image.fromarray(np.asarray(scan, np.float32) / 16.0, mode='F')
    return np.clip(np.asarray(small.resize((size, size), Image.BILINEAR)), 0.0, 1.0)


def compose_canvas(rng: np.random.Generator, scans: np.ndarray, targets: np.ndarray, pool: np.ndarray,
                   side: int, count: int, size_range: Tuple[int, int]):
    """One canvas from the scans in ``pool``: (RGB uint8 image, uint8 label map, instances).

    Each instance is ``dict(digit, source_index, mask)`` with ``mask`` its labelled pixels (boolean, canvas size).
    """
    image = np.clip(rng.uniform(0, 40) + rng.normal(0, 8, size=(side, side)), 0, BACKGROUND_MAX)
    label = np.zeros((side, side), np.uint8)
    instances = []
    image = np.round(image)
    squares = _place_squares(rng, side, count, size_range)
    for (y, x, size), source in zip(squares, rng.choice(pool, size=len(squares), replace=False), strict=True):
        ink = _upsampled_ink(scans[source], size)
        window = (slice(y, y + size), slice(x, x + size))
        image[window] = np.maximum(image[window], np.round(ink * rng.uniform(_MIN_CONTRAST, 255)))
        mask = np.zeros((side, side), bool)
        mask[window] = image[window] >= INK_LEVEL
        if not mask.any():
            continue
        digit = int(targets[source])
        label[mask] = digit + 1
        instances.append(dict(digit=digit, source_index=int(source), mask=mask))
    rgb = np.repeat(image.astype(np.uint8)[..., None], 3, axis=2)
    return rgb, label, instances


def mask_to_rle(mask: np.ndarray) -> Dict:
    """COCO's uncompressed RLE of a boolean mask: run lengths in column-major order, starting with a 0-run."""
    flat = np.asarray(mask, bool).reshape(-1, order='F')
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return dict(size=list(mask.shape), counts=counts)


def _coco_annotation(instance: Dict, ann_id: int, image_id: int) -> Dict:
    mask = instance['mask']
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(id=ann_id, image_id=image_id, category_id=instance['digit'] + 1, iscrowd=0,
                segmentation=mask_to_rle(mask), area=int(mask.sum()),
                bbox=[x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
                source_index=instance['source_index'])


def _coco_document(images: List[Dict], annotations: List[Dict]) -> Dict:
    categories = [dict(id=d + 1, name=name, supercategory='digit') for d, name in enumerate(DIGIT_CLASSES)]
    return dict(info=dict(description='modzoo dense digits (scikit-learn load_digits on canvases)', version='1.0'),
                licenses=[], images=images, annotations=annotations, categories=categories)


def _shuffled_labels(labels: List[np.ndarray], rng: np.random.Generator) -> List[np.ndarray]:
    """The label maps moved one place along a random cycle of the images (no image keeps its own), each resized
    (nearest) to its new image's size."""
    cycle = rng.permutation(len(labels))
    donor = np.empty_like(cycle)
    donor[cycle] = np.roll(cycle, -1)
    return [np.asarray(Image.fromarray(labels[j]).resize(labels[i].shape[::-1], Image.NEAREST))
            for i, j in enumerate(donor)]


def _write_split(root: str, split: str, canvases: Sequence, first_image_id: int) -> Tuple[Dict, int]:
    img_dir, ann_dir = (os.path.join(root, kind, split) for kind in ('img_dir', 'ann_dir'))
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    images, annotations = [], []
    for i, (rgb, label, instances) in enumerate(canvases):
        name = f'{i:05d}.png'
        Image.fromarray(rgb).save(os.path.join(img_dir, name))
        Image.fromarray(label, mode='L').save(os.path.join(ann_dir, name))
        image_id = first_image_id + i
        images.append(dict(id=image_id, file_name=name, height=label.shape[0], width=label.shape[1]))
        for instance in instances:
            annotations.append(_coco_annotation(instance, len(annotations) + 1, image_id))
    return _coco_document(images, annotations), first_image_id + len(canvases)


def _check_target(root: str, info: Dict, overwrite: bool) -> Optional[Dict]:
    """The existing description when ``root`` already holds this dataset; raises when it holds something else."""
    existing, same = read_marker(os.path.join(root, _MARKER), info)
    if same:
        return existing
    if existing is not None:
        if not overwrite:
            raise UsageError(f'{root} holds dense digits written with other settings; pass --overwrite to replace '
                             'them, or choose another folder')
    elif os.path.isdir(root) and os.listdir(root):
        raise UsageError(f'{root} is not empty and holds no dense digits ({_MARKER}); choose an empty or new folder')
    return None


def write_dense_digits(root: str, num_train: int = 1500, num_val: int = 150, canvas: Tuple[int, int] = (96, 160),
                       digits: Tuple[int, int] = (3, 8), digit_size: Tuple[int, int] = (28, 48),
                       val_fraction: float = 0.3, seed: int = 0, shuffle_train_labels: bool = False,
                       overwrite: bool = False) -> Dict:
    """Write the dense digits under ``root`` (see the module docstring) and return the stored description.

    ``canvas``, ``digits`` and ``digit_size`` are inclusive ranges (canvas side, digits per canvas, digit square
    side). ``shuffle_train_labels`` is the negative control: the training label maps are permuted across the training
    images (val keeps the true ones) and no COCO files are written. A folder that already holds this dataset with the
    same settings is left as it is; one with other settings is replaced only with ``overwrite``.
    """
    if not (0 < val_fraction < 1 and num_train > 0 and num_val > 0 and digits[0] >= 1 and digit_size[0] >= 8
            and digit_size[1] <= canvas[0]):
        raise UsageError('dense digits need 0 < val_fraction < 1, at least one canvas per split, at least one digit '
                         'per canvas and digit sizes from 8 px up to the smallest canvas side')
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError('the dense digits need scikit-learn: pip install scikit-learn') from None
    info = dict(source='sklearn.datasets.load_digits', num_train=num_train, num_val=num_val, canvas=list(canvas),
                digits=list(digits), digit_size=list(digit_size), val_fraction=val_fraction, seed=seed,
                shuffle_train_labels=shuffle_train_labels)
    existing = _check_target(root, info, overwrite)
    if existing is not None:
        return existing
    for sub in ('img_dir', 'ann_dir', 'annotations'):  # only what an earlier write made (_check_target)
        shutil.rmtree(os.path.join(root, sub), ignore_errors=True)

    data = load_digits()
    rng = np.random.default_rng(seed)
    pools = split_sources(data.target, val_fraction, rng)
    image_id = 1
    for split, count in (('train', num_train), ('val', num_val)):
        canvases = [compose_canvas(rng, data.images, data.target, pools[split],
                                   int(rng.integers(canvas[0], canvas[1], endpoint=True)),
                                   int(rng.integers(digits[0], digits[1], endpoint=True)), digit_size)
                    for _ in range(count)]
        if split == 'train' and shuffle_train_labels:
            labels = _shuffled_labels([label for _, label, _ in canvases], np.random.default_rng([seed, 1]))
            canvases = [(rgb, label, []) for (rgb, _, _), label in zip(canvases, labels, strict=True)]
        document, image_id = _write_split(root, split, canvases, image_id)
        if not shuffle_train_labels:
            os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
            with open(os.path.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
                json.dump(document, f)
        info[f'{split}_instances'] = len(document['annotations'])
    info['sources'] = {split: pools[split].tolist() for split in _SPLITS}
    with open(os.path.join(root, _MARKER), 'w') as f:
        json.dump(info, f)
    return info


def make_dense_digits(argv: Optional[Sequence[str]] = None) -> int:
    """``modzoo-make-dense-digits`` / ``tools/make_dense_digits.py``: write the dense digits under OUT_DIR."""
    parser = OneLineArgumentParser(description=(
        'Compose scikit-learn\'s real digit scans on canvases and write them for mmseg\'s BaseSegDataset '
        '(img_dir/ann_dir) and mmdet\'s CocoDataset (annotations/instances_{train,val}.json).'))
    parser.add_argument('out_dir', help='folder to write (new or empty; configs/digits_dense expect data/dense_digits)')
    parser.add_argument('--num-train', type=int, default=1500, help='training canvases (default 1500)')
    parser.add_argument('--num-val', type=int, default=150, help='validation canvases (default 150)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--shuffle-train-labels', action='store_true',
                        help='negative control: permute the training label maps across images (no COCO files)')
    parser.add_argument('--overwrite', action='store_true', help='replace dense digits written with other settings')
    args = parser.parse_args(argv)
    try:
        info = write_dense_digits(args.out_dir, num_train=args.num_train, num_val=args.num_val, seed=args.seed,
                                  shuffle_train_labels=args.shuffle_train_labels, overwrite=args.overwrite)
    except UsageError as e:
        return print_error(e)
    print(f'{args.out_dir}: {info["num_train"]} train / {info["num_val"]} val canvases, '
          f'{info.get("train_instances", 0)} / {info.get("val_instances", 0)} digits')
    return 0
