"""Small real datasets that need no download: scikit-learn's handwritten digits written out as an ImageFolder
(the main job's data; any ImageFolder consumer can read it).

``sklearn.datasets.load_digits`` ships inside the scikit-learn wheel (UCI "Optical Recognition of Handwritten Digits":
1,797 greyscale 8x8 images of the digits 0-9, 17 grey levels), so it needs no download. The images are upsampled
(bicubic) to ``size`` x ``size`` RGB PNGs so the unchanged ImageFolder pipeline and a stride-32 backbone can use
them, and split per class (stratified) into ``train``/``val`` with a fixed seed.
"""
import json
import os
import shutil
from typing import Dict

import numpy as np

from .utils.files import read_marker

__all__ = ['write_digits_imagefolder', 'open_image', 'UnreadableImageError']


class UnreadableImageError(OSError):
    """An image file that cannot be decoded (damaged, truncated, or over PIL's decompression-bomb pixel limit)."""


def open_image(path: str, mode: str = 'RGB'):
    """A decoded PIL image of ``path`` in ``mode`` (as timm's ``ImageDataset`` reads it), reading 16-bit and 32-bit
    grey images at their full range (PIL's own conversion clips them to 255, leaving them nearly white). Raises
    :class:`UnreadableImageError` (an ``OSError``, which loaders skip) for any file it cannot decode."""
    from PIL import Image
    try:
        image = Image.open(path)
        image.load()
        if image.mode.startswith('I;16') or image.mode in ('I', 'F'):
            values = np.asarray(image, dtype=np.float64)
            # full scale: 65535 for 16-bit data (what PNG/TIFF readers give as I;16 or I), else 255 (or 1.0 floats)
            peak = float(values.max(initial=0.0))
            top = 65535.0 if image.mode.startswith('I;16') or peak > 255 else 1.0 if peak <= 1.0 and \
                image.mode == 'F' else 255.0
            image = Image.fromarray(np.uint8(np.clip(np.round(values / top * 255.0), 0, 255)), mode='L')
        return image.convert(mode) if mode else image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = (f'over PIL\'s decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels'
                  if isinstance(e, Image.DecompressionBombError) else f'{type(e).__name__}: {e}')
        raise UnreadableImageError(f'{path}: cannot read the image ({reason})') from None

_MARKER = 'digits.json'


def write_digits_imagefolder(root: str, size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> Dict:
    """Write ``<root>/{train,val}/<digit>/<index>.png`` (skipped when an identical copy is already there).

    Returns the description stored in ``<root>/digits.json`` (counts per split, size, seed, source).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise RuntimeError('the main job needs scikit-learn (pip install "modzoo[dev]" or scikit-learn)') from e
    from PIL import Image

    info = {'source': 'sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)',
            'size': size, 'val_fraction': val_fraction, 'seed': seed}
    existing, same = read_marker(os.path.join(root, _MARKER), info)
    if same:
        return existing

    # a partial or differently split copy must not leave images in the wrong split
    for split in ('train', 'val'):
        shutil.rmtree(os.path.join(root, split), ignore_errors=True)
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # grey levels 0..16
    targets = digits.target
    rng = np.random.default_rng(seed)
    counts = {'train': 0, 'val': 0}
    for label in range(10):
        idx = np.flatnonzero(targets == label)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        for split, members in (('val', idx[:n_val]), ('train', idx[n_val:])):
            folder = os.path.join(root, split, str(label))
            os.makedirs(folder, exist_ok=True)
            for i in members:
                small = Image.fromarray(np.uint8(np.round(images[i] * 255)), mode='L')
                big = small.resize((size, size), Image.BICUBIC).convert('RGB')
                big.save(os.path.join(folder, f'{i:04d}.png'))
                counts[split] += 1
    info.update(train_images=counts['train'], val_images=counts['val'], classes=10)
    with open(os.path.join(root, _MARKER), 'w') as f:
        json.dump(info, f, indent=1)
    return info
