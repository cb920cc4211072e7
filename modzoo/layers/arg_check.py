"""The one rule per user-facing constructor argument (sizes, rates, indices), shared by every modzoo model.

A model calls :func:`check_model_args` first thing in ``__init__`` with the arguments a user sets; a bad value raises
a ``ValueError`` that names the model, the argument and its allowed range, instead of failing deep inside a layer
(or, for a negative drop-path rate, not at all).
"""
import math
import numbers
from typing import Any, Callable, Dict, Optional, Sequence

__all__ = ['check_model_args', 'check_out_indices']


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_seq(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, (str, bytes))


def _int_at_least(low: int) -> Callable[[Any], Optional[str]]:
    return lambda v: None if _is_int(v) and v >= low else f'must be a whole number >= {low}'


def _ints_at_least(low: int, scalar: bool = False) -> Callable[[Any], Optional[str]]:
    def rule(v):
        if scalar and _is_int(v):
            return None if v >= low else f'must be a whole number >= {low} (or one per stage)'
        if _is_seq(v) and len(v) and all(_is_int(x) and x >= low for x in v):
            return None
        return f'must be {"a whole number or " if scalar else ""}a non-empty sequence of whole numbers >= {low}'
    return rule


def _positive_numbers(v: Any) -> Optional[str]:
    values = v if _is_seq(v) else [v]
    if len(values) and all(_is_real(x) and x > 0 for x in values):
        return None
    return 'must be a number > 0 (or a non-empty sequence of them)'


def _rate(v: Any) -> Optional[str]:
    return None if _is_real(v) and 0 <= v < 1 else 'must be a number in [0, 1)'


def _img_size(v: Any) -> Optional[str]:
    if _is_int(v) and v >= 1 or _is_seq(v) and len(v) == 2 and all(_is_int(x) and x >= 1 for x in v):
        return None
    return 'must be a whole number >= 1 or a (height, width) pair of them'


def _depths(v: Any) -> Optional[str]:
    if _is_seq(v) and len(v) and all(_is_int(x) and x >= 0 for x in v) and sum(v) >= 1:
        return None
    return 'must be a non-empty sequence of whole numbers >= 0 (blocks per stage) with at least one block'


_RULES: Dict[str, Callable[[Any], Optional[str]]] = {
    'in_chans': _int_at_least(1),
    'num_classes': _int_at_least(0),
    'patch_size': _int_at_least(1),
    'context_size': _int_at_least(1),
    'embed_dim': _ints_at_least(1, scalar=True),
    'embed_dims': _ints_at_least(1),
    'num_heads': _ints_at_least(1, scalar=True),
    'sr_ratios': _ints_at_least(1),
    'focal_levels': _ints_at_least(1),
    'focal_windows': _ints_at_least(1),
    'depths': _depths,
    'mlp_ratio': _positive_numbers,
    'mlp_ratios': _positive_numbers,
    'img_size': _img_size,
    'drop_rate': _rate,
    'pos_drop_rate': _rate,
    'proj_drop_rate': _rate,
    'attn_drop_rate': _rate,
    'drop_path_rate': _rate,
}


def check_model_args(owner: str, **args: Any) -> None:
    """Raise ``ValueError('<owner>: <name>=<value> must be ...')`` for the first argument outside its range."""
    for name, value in args.items():
        problem = _RULES[name](value)
        if problem:
            raise ValueError(f'{owner}: {name}={value!r} {problem}')


def check_out_indices(owner: str, out_indices: Any, count: Optional[int], name: str = 'out_indices') -> None:
    """``out_indices`` must be a non-empty sequence of distinct feature indices in ``[-count, count)`` (or timm's
    count of last stages); ``count`` None checks the form only."""
    top = count if count is not None else 1 << 30
    if _is_int(out_indices):
        if 1 <= out_indices <= top:
            return
    elif _is_seq(out_indices) and len(out_indices) and all(_is_int(i) and -top <= i < top for i in out_indices) \
            and len({i % top for i in out_indices}) == len(out_indices):
        return
    where = f' in [{-count}, {count - 1}] (or a count of last stages from 1 to {count})' if count is not None else ''
    raise ValueError(f'{owner}: {name}={out_indices!r} must be a non-empty sequence of distinct feature indices{where}')
