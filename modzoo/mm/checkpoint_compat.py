"""Let ``torch.load(weights_only=True)`` read mmengine checkpoints, process-wide, from ``import modzoo.mm`` on.

mmengine 0.10 calls ``torch.load`` without ``weights_only``; since torch 2.6 that means ``weights_only=True``, and a
full mmengine checkpoint (what ``--resume``, ``tools/test.py``, ``init_model(cfg, ckpt)`` and a Pretrained
``init_cfg`` on a training checkpoint read) pickles a few non-tensor objects besides the weights: the message hub's
``HistoryBuffer``, the numpy arrays and scalars inside it, their numeric dtypes, and its statistics methods, which
pickle as ``getattr(HistoryBuffer, 'mean')``. Those, found by saving real Runner checkpoints (iteration and epoch
loops, mmseg and mmdet, AdamW with parameter schedulers) and loading them under ``weights_only=True``, are what
:func:`allow_mmengine_checkpoints` adds with ``torch.serialization.add_safe_globals``; nothing broader:

* ``getattr`` is not allowed as such (it would reach any attribute of any allowed object): a checkpoint's
  ``builtins.getattr`` is bound to a stand-in that only returns HistoryBuffer's registered statistics methods;
* numpy arrays may only have numeric dtypes (bool, integers, floats): no object arrays;
* everything else must still be tensors and plain containers, so a tampered file fails to load instead of running
  code, and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is never needed.
"""
import contextlib
import pickle
from typing import Any, Iterator, List

import numpy as np
import torch

__all__ = ['mmengine_safe_globals', 'allow_mmengine_checkpoints', 'mmengine_checkpoint_globals']

# the numeric numpy dtypes a HistoryBuffer can hold (bool, signed/unsigned integers, half/single/double floats)
_NUMERIC_DTYPE_CODES = '?bBhHiIlLqQefd'


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``builtins.getattr`` as seen by the unpickler: only HistoryBuffer's statistics methods (min/max/mean/...)."""
    from mmengine.logging import HistoryBuffer
    statistics = set(HistoryBuffer._statistics_methods) | {'min', 'max', 'mean', 'current'}
    if obj is HistoryBuffer and name in statistics:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}); only '
        f'HistoryBuffer statistics methods are allowed in an mmengine checkpoint')


def mmengine_safe_globals() -> List[Any]:
    """The non-tensor globals an mmengine 0.10 checkpoint pickles (runner meta + message hub), nothing more."""
    from mmengine.logging import HistoryBuffer
    safe: List[Any] = [HistoryBuffer, np.ndarray, np.dtype, (_history_buffer_getattr, 'builtins.getattr')]
    # numpy arrays and scalars unpickle through these reconstructors (numpy 1.x: np.core, 2.x: np._core)
    for module_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            module = __import__(module_name, fromlist=['_reconstruct', 'scalar'])
        except ImportError:
            continue
        safe += [module._reconstruct, module.scalar]
        break
    # numpy >= 1.25 pickles a dtype through its concrete class (np.dtypes.Float64DType, ...)
    for code in _NUMERIC_DTYPE_CODES:
        dtype_class = type(np.dtype(code))
        if dtype_class is not np.dtype and dtype_class not in safe:
            safe.append(dtype_class)
    return safe


# named (callable, 'module.name') entries and the scoped block: torch >= 2.6, whose torch.load defaults to weights_only
_SUPPORTED = hasattr(torch.serialization, 'safe_globals') and hasattr(torch.serialization, 'get_safe_globals')


def _allowed() -> bool:
    from mmengine.logging import HistoryBuffer
    return HistoryBuffer in torch.serialization.get_safe_globals()


def allow_mmengine_checkpoints() -> None:
    """Add :func:`mmengine_safe_globals` to torch's weights-only allow-list for the whole process (idempotent)."""
    if _SUPPORTED and not _allowed():
        torch.serialization.add_safe_globals(mmengine_safe_globals())


@contextlib.contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """The same allow-list for one block only (for code that must not depend on ``import modzoo.mm`` having run)."""
    if not _SUPPORTED:
        yield
        return
    allowed_before = _allowed()
    try:
        with torch.serialization.safe_globals(mmengine_safe_globals()):
            yield
    finally:
        # torch's block removes what it added on exit, even globals that were allowed before it
        if allowed_before:
            allow_mmengine_checkpoints()
