"""Inputs for parity checks: random tensors and real-looking, normalised photographs.

Random N(0, 1) inputs exercise every channel evenly but look nothing like data; activations on real photographs have
other ranges (large smooth regions, strong edges) and are what a deployed model sees. The photographs are the two
sample images scikit-learn ships (``china.jpg``, ``flower.jpg``; read straight from its package folder, no download
and no sklearn import). Without scikit-learn a smooth synthetic scene (gradients, blobs and edges) stands in, and the
caller is told which one it got.
"""
import functools
import os
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['random_images', 'photo_images', 'sample_photos']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def random_images(batch: int, size: Tuple[int, int], in_chans: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch, in_chans) + tuple(size), generator=gen)


def _synthetic_scene(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 image with gradients, soft blobs and hard edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / width, yy / height, 1 - xx / width], -1) * 0.5
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(20, 120)
        colour = rng.uniform(0, 1, 3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - blob) + colour * blob
    for _ in range(4):  # hard-edged rectangles
        y0, x0 = rng.integers(0, height - 40), rng.integers(0, width - 40)
        img[y0:y0 + rng.integers(20, 160), x0:x0 + rng.integers(20, 160)] = rng.uniform(0, 1, 3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def sample_photos() -> Tuple[Sequence[np.ndarray], str]:
    """``(images, source)``: uint8 HWC RGB photographs and where they came from."""
    try:
        import importlib.util
        from PIL import Image
        folder = os.path.join(importlib.util.find_spec('sklearn').submodule_search_locations[0], 'datasets', 'images')
        photos = tuple(np.array(Image.open(os.path.join(folder, f)).convert('RGB'))
                       for f in ('china.jpg', 'flower.jpg'))
        return photos, 'scikit-learn sample photos (china.jpg, flower.jpg)'
    except Exception:  # scikit-learn is a dev dependency only
        return (_synthetic_scene(seed=0), _synthetic_scene(seed=1)), 'synthetic scenes (scikit-learn not installed)'


def photo_images(
        batch: int,
        size: Tuple[int, int],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        in_chans: int = 3,
) -> Tuple[torch.Tensor, str]:
    """A normalised ``(batch, in_chans, H, W)`` batch of photographs (crops and flips of the samples) and its source.

    Each image is a different square-ish crop, resized with bilinear anti-aliasing to ``size`` as a data pipeline
    would; odd batch entries are mirrored. Non-RGB ``in_chans`` take the grey level repeated.
    """
    photos, source = sample_photos()
    out = []
    for i in range(batch):
        img = torch.from_numpy(np.array(photos[i % len(photos)])).permute(2, 0, 1).float() / 255
        h, w = img.shape[-2:]
        crop = int(min(h, w) * (0.9 - 0.1 * (i // len(photos) % 4)))
        top = (h - crop) * ((i * 37) % 11) // 10
        left = (w - crop) * ((i * 53) % 13) // 12
        img = img[:, top:top + crop, left:left + crop]
        img = F.interpolate(img[None], size=tuple(size), mode='bilinear', align_corners=False, antialias=True)[0]
        if i % 2:
            img = img.flip(-1)
        out.append(img)
    x = torch.stack(out).clamp_(0, 1)
    if in_chans != 3:
        x = x.mean(1, keepdim=True).expand(-1, in_chans, -1, -1)
        mean, std = [sum(mean) / len(mean)] * in_chans, [sum(std) / len(std)] * in_chans
    mean_t = torch.tensor(list(mean)[:in_chans]).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std)[:in_chans]).view(1, -1, 1, 1)
    return ((x - mean_t) / std_t).contiguous(), source
