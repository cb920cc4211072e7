"""Datasets, transforms and loaders for classification training and validation.

* Folder datasets use the ImageFolder layout (``<root>/<split>/<class>/<image>``) through timm's ``ImageDataset``;
  any other ``--dataset`` name goes to timm's dataset factory (``torch/cifar10``, ``hfds/...``, ...).
* Transforms come from the model's ``pretrained_cfg`` (input size, interpolation, mean/std, crop_pct) via timm's
  ``resolve_data_config``; training adds the recipe's augmentation (RandAugment, random erasing, ...).
* :class:`SeededDataset` and :class:`ResumableShardSampler` make the data stream a pure function of
  ``(seed, epoch, position)``, which is what lets a killed run resume bit-exactly (see ``seeding.py``).
"""
import logging
import os
import random
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .seeding import derive_seed

_logger = logging.getLogger(__name__)

__all__ = [
    'DatasetNotFoundError', 'FOLDER_DATASETS', 'find_split_dir', 'folder_classes', 'build_dataset',
    'ImageFolderDataset', 'SeededDataset', 'ResumableShardSampler', 'resolve_model_data_config', 'build_transforms',
    'build_loader',
]

FOLDER_DATASETS = ('', 'folder', 'imagefolder')
_SPLIT_SYNONYMS = {
    'train': ('train', 'training'),
    'val': ('val', 'validation', 'valid', 'eval', 'evaluation', 'test'),
    'validation': ('validation', 'val', 'valid', 'eval', 'evaluation', 'test'),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder or split is missing or holds no images; the message shows the expected layout."""


def _layout_hint(root: str) -> str:
    return (f'Expected the ImageFolder layout: {root}/train/<class>/<image> and {root}/val/<class>/<image> '
            f'(one sub-folder per class, e.g. ImageNet\'s n01440764/...).')


def find_split_dir(root: str, split: str) -> str:
    """``<root>/<split>`` (or a common synonym: val/validation, train/training); ``root`` itself when it already
    holds class folders and no split folders."""
    if not root:
        raise DatasetNotFoundError('No dataset folder given (--data-dir). ' + _layout_hint('DATA_DIR'))
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f'Dataset folder not found: {root!r}. ' + _layout_hint(root))
    for name in (split,) + _SPLIT_SYNONYMS.get(split, ()):
        candidate = os.path.join(root, name)
        if os.path.isdir(candidate):
            return candidate
    all_split_names = {n for names in _SPLIT_SYNONYMS.values() for n in names}
    subdirs = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    if subdirs and not any(d in all_split_names for d in subdirs):
        return root  # root is the split folder itself (e.g. --data-dir imagenet/val for validation)
    raise DatasetNotFoundError(
        f'No {split!r} split in {root!r} (found: {", ".join(sorted(subdirs)) or "nothing"}). ' + _layout_hint(root))


def _listdir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except PermissionError:
        raise DatasetNotFoundError(f'cannot read the folder {path!r} (permission denied): make it readable '
                                   f'(chmod -R a+rX) or leave it out of the dataset') from None


def _has_image(folder: str) -> bool:
    """Whether ``folder`` (searched recursively, as timm's folder reader does) holds a file with an image suffix."""
    from timm.data.readers.img_extensions import get_img_extensions
    extensions = tuple(get_img_extensions())

    def walk_error(e: OSError):
        raise DatasetNotFoundError(f'cannot read the folder {e.filename!r} ({e.strerror}): make it readable '
                                   f'(chmod -R a+rX) or leave it out of the dataset')
    for _, _, files in os.walk(folder, onerror=walk_error):
        if any(f.lower().endswith(extensions) for f in files):
            return True
    return False


def folder_classes(split_dir: str) -> List[str]:
    """Class folder names sorted as timm sorts them (natural order), so indices match timm's own folder reader.

    A class folder without images is an error, not a silent extra class (it would add an output no image teaches)."""
    from timm.utils.misc import natural_key
    classes = sorted((d for d in _listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d))), key=natural_key)
    if not classes:
        raise DatasetNotFoundError(
            f'{split_dir!r} has no class sub-folders. ' + _layout_hint(os.path.dirname(split_dir)))
    empty = [c for c in classes if not _has_image(os.path.join(split_dir, c))]
    if empty:
        shown = ', '.join(empty[:10]) + (f' and {len(empty) - 10} more' if len(empty) > 10 else '')
        raise DatasetNotFoundError(
            f'{len(empty)} of the {len(classes)} class folders in {split_dir!r} hold no images: {shown}. Put images '
            f'in them, or remove them (or list the classes to use with --class-map)')
    return classes


class ImageFolderDataset(Dataset):
    """timm's ``ImageDataset`` for folders, reading images with :func:`modzoo.datasets.open_image` (16-bit images at
    their full range) and skipping, with the path logged, every image it cannot decode: damaged, truncated or over
    PIL's decompression-bomb limit. Training (``evaluation=False``) takes the next readable image instead, as timm
    does; evaluation returns a blank image with target -1, which :func:`~modzoo.train.engine.evaluate` leaves out of
    the counts."""

    max_retries = 10

    def __init__(self, root: str, class_map: Dict[str, int], evaluation: bool = False):
        from timm.data import ImageDataset
        self.base = ImageDataset(root, class_map=dict(class_map))
        self.reader = self.base.reader
        self.evaluation = evaluation
        self.transform = None

    def __len__(self) -> int:
        return len(self.reader)

    def _read(self, index: int):
        from modzoo.datasets import open_image
        path, target = self.reader.samples[index]
        return open_image(path), target

    def __getitem__(self, index: int):
        for _ in range(self.max_retries):
            try:
                img, target = self._read(index)
                break
            except OSError as e:
                _logger.warning('skipped unreadable image %s', e)
                if self.evaluation:
                    from PIL import Image
                    img, target = Image.new('RGB', (8, 8)), -1
                    break
                index = (index + 1) % len(self.reader)
        else:
            raise DatasetNotFoundError(f'{self.max_retries} images in a row cannot be read (the last at index '
                                       f'{index}): check the dataset files')
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def build_dataset(
        name: str,
        root: str,
        split: str,
        class_to_idx: Optional[Dict[str, int]] = None,
        download: bool = False,
        evaluation: bool = False,
        every_class: bool = False,
) -> Tuple[Dataset, Dict[str, int]]:
    """A dataset without transforms and its class -> index map.

    For folder datasets ``class_to_idx`` should come from the training split, so a validation split with fewer
    classes keeps the training indices. ``every_class``: each class of ``class_to_idx`` must have a folder (a
    ``--class-map`` for the training split). ``evaluation``: unreadable images are left out, not replaced.
    """
    from timm.data import create_dataset
    if name.lower() in FOLDER_DATASETS:
        split_dir = find_split_dir(root, split)
        if class_to_idx is None:
            class_to_idx = {c: i for i, c in enumerate(folder_classes(split_dir))}
        else:
            missing = [c for c in class_to_idx if not os.path.isdir(os.path.join(split_dir, c))]
            for c in class_to_idx:  # a listed class that is unreadable is named now, not mid-epoch
                if c not in missing:
                    _has_image(os.path.join(split_dir, c))
            if len(missing) == len(class_to_idx):
                raise DatasetNotFoundError(
                    f'none of the {len(class_to_idx)} classes ({", ".join(list(class_to_idx)[:5])}...) has a folder '
                    f'in {split_dir!r}: check --data-dir, the split name and --class-map')
            if missing and every_class:
                raise DatasetNotFoundError(
                    f'--class-map lists {len(missing)} class(es) with no folder in {split_dir!r}: '
                    f'{", ".join(missing[:10])}; they would train as empty classes. Remove them from the class map '
                    f'or add their image folders')
        dataset = ImageFolderDataset(split_dir, class_to_idx, evaluation=evaluation)
        if len(dataset) == 0:
            raise DatasetNotFoundError(f'No images found under {split_dir!r}. ' + _layout_hint(root))
        folders = {d for d in _listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d))}
        unknown = folders - set(class_to_idx)
        if unknown:
            _logger.warning('%s: ignoring images in folders that are not training classes: %s', split_dir,
                            ', '.join(sorted(unknown)[:10]))
        return dataset, dict(class_to_idx)
    if root and not os.path.exists(root) and not download:
        raise DatasetNotFoundError(f'Dataset root not found: {root!r} (pass --dataset-download to fetch {name}).')
    dataset = create_dataset(name, root=root, split=split, download=download, class_map=class_to_idx)
    if class_to_idx is None:
        classes = getattr(dataset, 'classes', None)
        reader = getattr(dataset, 'reader', None)
        if classes is None and reader is not None:
            class_to_idx = getattr(reader, 'class_to_idx', None)
        else:
            class_to_idx = {str(c): i for i, c in enumerate(classes or [])}
    return dataset, dict(class_to_idx or {})


class SeededDataset(Dataset):
    """Reseeds Python, NumPy and torch before each sample's transform from ``(seed, epoch, index)``.

    Random augmentation (crops, RandAugment, random erasing) then depends only on which sample is loaded in which
    epoch, not on worker count, worker scheduling or how many batches ran before a resume.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        # takes effect for loader iterators created afterwards (workers get a copy of the dataset at start)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        s = derive_seed(self.seed, self.epoch, index)
        random.seed(s)
        np.random.seed(s % (2 ** 32))
        torch.random.default_generator.manual_seed(s)
        return self.dataset[index]


class ResumableShardSampler(Sampler[int]):
    """Shards indices over ranks like ``DistributedSampler`` and can start part-way into an epoch.

    Training (``pad=True``): a permutation seeded by ``(seed, epoch)``, padded by wrapping so every rank gets the
    same number of samples. Evaluation (``shuffle=False, pad=False``): ``indices[rank::world_size]`` with no
    duplicates, so summed counts over ranks are exactly the dataset. ``set_start(n)`` skips this rank's first ``n``
    samples of the current epoch (used when resuming mid-epoch).
    """

    def __init__(self, num_samples: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 pad: bool = True):
        if num_samples <= 0:
            raise ValueError('cannot sample from an empty dataset')
        self.num_samples = num_samples
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.pad = pad
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = start

    def shard_size(self) -> int:
        if self.pad:
            return -(-self.num_samples // self.num_replicas)
        return len(range(self.rank, self.num_samples, self.num_replicas))

    def _indices(self) -> List[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            indices = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            indices = list(range(self.num_samples))
        if self.pad:
            total = self.shard_size() * self.num_replicas
            while len(indices) < total:
                indices += indices[:total - len(indices)]
        return indices[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start:])

    def __len__(self) -> int:
        return max(0, self.shard_size() - self.start)


def resolve_model_data_config(model: torch.nn.Module, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """timm's data config from the model's ``pretrained_cfg`` with explicit overrides (None = keep the model's)."""
    from timm.data import resolve_data_config
    args = {k: v for k, v in (overrides or {}).items() if v is not None}
    return resolve_data_config(args, model=model)


def _posterize_any_bits(img, bits_to_keep, **_):
    """timm's posterize, keeping zero bits as the all-black image Pillow < 13 produced (Pillow 13 raises)."""
    from PIL import ImageOps
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def patch_timm_posterize() -> None:
    """RandAugment with magnitude noise (``rand-m9-mstd0.5``, every recipe here) can draw magnitude 10, for which
    timm's ``PosterizeIncreasing`` keeps 0 bits; Pillow 13 rejects that (``ValueError: bits must be between or equal
    to 1 and 8``) and the data loader dies mid-epoch. Route timm's posterize ops through a version that keeps the
    zero-bit behaviour of older Pillow (a black image), so the augmentation matches what the papers trained with."""
    import timm.data.auto_augment as auto_augment
    for name in ('Posterize', 'PosterizeIncreasing', 'PosterizeOriginal'):
        if name in auto_augment.NAME_TO_OP:
            auto_augment.NAME_TO_OP[name] = _posterize_any_bits


def build_transforms(data_config: Dict[str, Any], train_aug: Optional[Dict[str, Any]] = None):
    """(train transform or None, eval transform). ``train_aug`` holds timm ``create_transform`` keywords."""
    from timm.data import create_transform
    patch_timm_posterize()
    common = dict(input_size=data_config['input_size'], mean=data_config['mean'], std=data_config['std'])
    eval_tf = create_transform(
        is_training=False, interpolation=data_config['interpolation'], crop_pct=data_config['crop_pct'],
        crop_mode=data_config.get('crop_mode'), **common)
    train_tf = None
    if train_aug is not None:
        aug = dict(train_aug)
        aug.setdefault('interpolation', data_config['interpolation'])
        train_tf = create_transform(is_training=True, **common, **aug)
    return train_tf, eval_tf


def build_loader(dataset: Dataset, sampler: Sampler, batch_size: int, workers: int, drop_last: bool,
                 pin_memory: bool = False) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
        pin_memory=pin_memory, persistent_workers=False)
