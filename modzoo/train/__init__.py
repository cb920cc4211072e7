"""Classification training and evaluation: the logic behind ``tools/train.py``, ``tools/validate.py`` and the main job.

Modules: ``config`` (options and recipe YAML files), ``data`` (ImageFolder / timm datasets, transforms from the
model's ``pretrained_cfg``, resumable sharded sampling), ``loss`` (criterion and soft distillation), ``checkpoint``
(atomic writes, resume checks), ``distributed`` (torchrun / DDP), ``engine`` (train and evaluation loops),
``trainer`` (the driver) and ``validate``.
Nothing here is imported by ``import modzoo``.
"""
from .checkpoint import ResumeError, atomic_save, read_training_checkpoint
from .config import ConfigError, load_recipe, parse_train_args
from .data import DatasetNotFoundError
from .loss import DistillationLoss, build_criterion

__all__ = [
    'ConfigError', 'DatasetNotFoundError', 'DistillationLoss', 'ResumeError', 'atomic_save', 'build_criterion',
    'load_recipe', 'parse_train_args', 'read_training_checkpoint',
]
