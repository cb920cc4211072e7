"""The zoo's naming rule and model look-up on top of timm's registry.

Naming rule: every modzoo model is registered as ``zoo_<family>_<variant>`` (for example ``zoo_focalnet_tiny_srf``,
``zoo_smt_small``). The ``zoo_`` prefix keeps our names apart from timm's own (timm ships ``focalnet_*`` and
``pvt_v2_*``), so importing modzoo never overwrites a timm entry.
"""
import difflib
import fnmatch
import sys
from typing import Any, List, Optional

import timm
from timm.models import get_pretrained_cfg, is_model, list_models as timm_list_models

ZOO_PREFIX = 'zoo_'
# model module -> family name (PVT v1 and v2 live in two files but are one family)
FAMILY_OF_MODULE = {
    'modzoo.models.focalnet': 'focalnet',
    'modzoo.models.efficientmod': 'efficientmod',
    'modzoo.models.smt': 'smt',
    'modzoo.models.gridpe_pvt_v1': 'gridpe_pvt',
    'modzoo.models.gridpe_pvt_v2': 'gridpe_pvt',
}

__all__ = ['ZOO_PREFIX', 'list_models', 'model_family', 'create_model', 'suggest_model_names', 'UnknownModelError']


class UnknownModelError(ValueError):
    """Raised for a model name that neither modzoo nor timm registers; the message suggests close names."""


def _zoo_names() -> List[str]:
    return sorted(n for n in timm_list_models(ZOO_PREFIX + '*') if _module_of(n) in FAMILY_OF_MODULE)


def _module_of(model_name: str) -> str:
    """Full module path of a registered model's entrypoint ('' if unknown)."""
    from timm.models import is_model, model_entrypoint
    if not is_model(model_name):
        return ''
    return getattr(model_entrypoint(model_name), '__module__', '') or ''


def list_models(filter: str = '', pretrained: bool = False, family: Optional[str] = None) -> List[str]:
    """Names of the registered modzoo models, optionally filtered by a wildcard pattern and/or family."""
    names = _zoo_names()
    if filter:
        pattern = filter if filter.startswith(ZOO_PREFIX) or '*' in filter else ZOO_PREFIX + filter
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if family:
        names = [n for n in names if model_family(n) == family]
    if pretrained:
        with_weights = set(timm_list_models(ZOO_PREFIX + '*', pretrained=True))
        names = [n for n in names if any(w.split('.')[0] == n for w in with_weights)]
    return names


def model_family(model_name: str) -> str:
    """The family a registered modzoo model belongs to, e.g. ``'focalnet'`` (see ``FAMILY_OF_MODULE``)."""
    family = FAMILY_OF_MODULE.get(_module_of(model_name.split('.')[0]))
    if family is None:
        raise UnknownModelError(_unknown_message(model_name))
    return family


def family_module(model_name: str):
    """The Python module that defines a modzoo model (its ``checkpoint_filter_fn`` etc.)."""
    model_family(model_name)  # raises for unknown names
    return sys.modules[_module_of(model_name.split('.')[0])]


def suggest_model_names(name: str, n: int = 5) -> List[str]:
    """Registered names (modzoo first, then timm) closest to ``name``."""
    arch = name.split('.')[0]
    zoo = _zoo_names()
    close = difflib.get_close_matches(arch, zoo, n=n, cutoff=0.5)
    if not arch.startswith(ZOO_PREFIX):
        close += [m for m in difflib.get_close_matches(ZOO_PREFIX + arch, zoo, n=n, cutoff=0.5) if m not in close]
    if len(close) < n:
        close += [m for m in difflib.get_close_matches(arch, timm_list_models(), n=n, cutoff=0.6) if m not in close]
    return close[:n]


def _unknown_message(name: str) -> str:
    close = suggest_model_names(name)
    msg = f'Unknown model {name!r}.'
    if close:
        msg += ' Did you mean: ' + ', '.join(close) + '?'
    msg += ' modzoo names follow the rule zoo_<family>_<variant>; modzoo.list_models() lists them.'
    return msg


def _has_tag(model_name: str) -> bool:
    try:
        return get_pretrained_cfg(model_name, allow_unregistered=False) is not None
    except RuntimeError:
        return False


def create_model(model_name: str, pretrained: bool = False, **kwargs: Any):
    """``timm.create_model`` with a helpful error for unknown names (it suggests the closest registered names)."""
    arch = model_name.split('.')[0]
    if ':' not in arch and not is_model(arch):
        raise UnknownModelError(_unknown_message(model_name))
    if '.' in model_name and ':' not in arch and not _has_tag(model_name):
        tags = [n for n in timm_list_models(arch, include_tags=True) if n.startswith(arch + '.')]
        raise UnknownModelError(
            f'Unknown pretrained tag {model_name!r}. Tags registered for {arch}: {", ".join(tags) or "none"}.')
    return timm.create_model(model_name, pretrained=pretrained, **kwargs)
