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

__all__ = ['write_digits_imagefolder']

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
    marker = os.path.join(root, _MARKER)
    if os.path.isfile(marker):
        with open(marker) as f:
            existing = json.load(f)
        if all(existing.get(k) == v for k, v in info.items()):
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
    with open(marker, 'w') as f:
        json.dump(info, f, indent=1)
    return info
