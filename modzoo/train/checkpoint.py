"""Training checkpoints: atomic writes, ``last``/``best`` files, and resume with clear errors.

A checkpoint is written to a temporary file in the target folder, flushed to disk (fsync) and then renamed over the
target (``os.replace`` is atomic on POSIX and Windows). A process killed at any moment therefore leaves either the old
complete file or the new complete file, never a truncated one; stale temporaries are removed on the next save.

The file holds plain containers and tensors only, so it loads with ``torch.load(weights_only=True)``. Its model
weights sit under ``state_dict`` (EMA weights under ``state_dict_ema``), the timm train-script convention, so
``modzoo.load_checkpoint``, ``tools/validate.py`` and ``timm.create_model(..., pretrained_cfg_overlay=dict(file=...))``
read it directly.
"""
import glob
import logging
import os
from typing import Any, Dict, Mapping, Optional, Union

import torch

from modzoo.utils.files import TMP_SUFFIX as _TMP_SUFFIX, atomic_write

_logger = logging.getLogger(__name__)

__all__ = [
    'CHECKPOINT_FORMAT', 'ResumeError', 'atomic_save', 'remove_stale_temporaries',
    'read_training_checkpoint', 'check_resume_compatible',
]

CHECKPOINT_FORMAT = 'modzoo.train/1'


class ResumeError(RuntimeError):
    """A ``--resume`` file that cannot continue this run (another model, not a training checkpoint, ...)."""


def atomic_save(obj: Any, path: Union[str, os.PathLike]) -> str:
    """``torch.save`` to a temporary file beside ``path``, fsync, then atomically rename it to ``path``."""
    path = os.fspath(path)
    with atomic_write(path) as f:
        torch.save(obj, f)
    return path


def remove_stale_temporaries(path: Union[str, os.PathLike]) -> int:
    """Delete temporaries a killed writer left beside ``path``; returns how many were removed."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    stale = glob.glob(os.path.join(glob.escape(folder), f'.{glob.escape(base)}.*{_TMP_SUFFIX}'))
    for f in stale:
        try:
            os.remove(f)
        except OSError:
            pass
    return len(stale)


def read_training_checkpoint(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Load a checkpoint written by the trainer, or raise :class:`ResumeError` saying what the file is instead."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ResumeError(f'--resume file not found: {path!r}')
    from modzoo.models import CheckpointFileError, load_torch_file
    try:
        ckpt = load_torch_file(path)
    except CheckpointFileError as e:
        raise ResumeError(f'--resume {e}') from None
    if not isinstance(ckpt, Mapping) or ckpt.get('format') != CHECKPOINT_FORMAT:
        raise ResumeError(
            f'{path!r} is not a modzoo training checkpoint (no optimizer/scheduler/epoch state). To start a new run '
            f'from its weights use --initial-checkpoint {path} instead of --resume.')
    return dict(ckpt)


def check_resume_compatible(ckpt: Mapping[str, Any], path: str, model_name: str, num_classes: int,
                            model_kwargs: Optional[Mapping[str, Any]] = None) -> None:
    """Refuse a checkpoint written for another model, head size or architecture override."""
    problems = []
    if ckpt.get('model_name') != model_name:
        problems.append(f'it was written for model {ckpt.get("model_name")!r}, this run trains {model_name!r}')
    if ckpt.get('num_classes') != num_classes:
        problems.append(f'it has {ckpt.get("num_classes")} classes, this run has {num_classes}')
    saved_kwargs = dict(ckpt.get('model_kwargs') or {})
    if model_kwargs is not None and saved_kwargs != dict(model_kwargs):
        problems.append(f'its --model-kwargs were {saved_kwargs}, this run uses {dict(model_kwargs)}')
    if problems:
        raise ResumeError(f'Cannot resume from {path!r}: ' + '; '.join(problems) + '. Resume with the same --model, '
                          'dataset and --model-kwargs, or start a new run (use --initial-checkpoint to start from '
                          'its weights).')
