"""Registration of modzoo modules into the OpenMMLab registries that are installed.

A module may belong to several OpenMMLab codebases at once (a backbone serves both MMSegmentation and MMDetection),
so registration goes through :func:`register_module`, which registers the class into each requested scope's
``MODELS`` registry whose package imports, and skips (with a record of why) the ones that are not installed.

New modules (for example a decode head in ``modzoo/mm/seg/heads.py``) use the same decorator with the scopes they
belong to, and are imported from ``modzoo/mm/__init__.py`` so that ``custom_imports=['modzoo.mm']`` registers them::

    @register_module(scopes=('mmseg',))
    class MyHead(BaseDecodeHead):
        ...
"""
import importlib
from typing import Callable, Dict, Sequence, Type

__all__ = ['SCOPES', 'register_module', 'registered_scopes', 'unavailable_scopes']

# OpenMMLab scope -> module exposing its MODELS registry
SCOPES: Dict[str, str] = {
    'mmseg': 'mmseg.registry',
    'mmdet': 'mmdet.registry',
}

_registered: Dict[str, list] = {}
_unavailable: Dict[str, str] = {}


def _models_registry(scope: str):
    if scope not in SCOPES:
        raise ValueError(f'Unknown OpenMMLab scope {scope!r}; known: {sorted(SCOPES)}')
    return importlib.import_module(SCOPES[scope]).MODELS


def register_module(scopes: Sequence[str] = tuple(SCOPES), force: bool = False) -> Callable[[Type], Type]:
    """Class decorator: register into ``MODELS`` of every scope in ``scopes`` that is installed.

    A scope whose package is missing is skipped (``unavailable_scopes()`` says why); any other error is raised.
    """

    def _register(cls: Type) -> Type:
        for scope in scopes:
            try:
                registry = _models_registry(scope)
            except ImportError as e:  # that codebase is not installed: the module is simply not offered there
                _unavailable[scope] = f'{type(e).__name__}: {e}'
                continue
            registry.register_module(module=cls, force=force)
            _registered.setdefault(scope, []).append(cls.__name__)
        return cls

    return _register


def registered_scopes() -> Dict[str, list]:
    """Scope -> names of the modzoo classes registered there."""
    return {k: list(v) for k, v in _registered.items()}


def unavailable_scopes() -> Dict[str, str]:
    """Scope -> the import error that kept modzoo modules out of it."""
    return dict(_unavailable)
