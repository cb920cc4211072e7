"""Loading classification and dense-task checkpoints into a features-only modzoo backbone.

The features-only model is pruned (no final norm, no classifier) and may carry layers a classification file lacks
(per-stage output norms). Loading therefore goes through the family's own ``checkpoint_filter_fn`` (which converts
official/timm layouts and adapts what it knows how to adapt, e.g. FocalNet's focal windows) and is then checked
against the pruned model here:

* checkpoint tensors of layers the features model dropped (classifier, final norm) are *unused* and reported;
* model tensors the checkpoint lacks are *missing* and reported (kept at their initialisation);
* checkpoint tensors that fit no layer, or fit with the wrong shape, are a *misfit*: with ``strict=True`` (default)
  that raises :class:`~modzoo.CheckpointMismatchError`; with ``strict=False`` they are skipped and reported.

Missing tensors raise too under ``strict=True`` unless they belong to layers that exist only for dense tasks
(``dense_only`` keys, e.g. per-stage output norms, which a classification file cannot have), because a silently
half-initialised backbone trains to a worse result without any error. A family filter may fill such layers with the
model's own initial values (FocalNet's does); those are reported as missing (kept at initialisation), not as loaded.
"""
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch
import torch.nn as nn

from modzoo.models import CheckpointMismatchError, read_checkpoint, unwrap_state_dict
from modzoo.models import CheckpointFileError, convert_state_dict

__all__ = ['LoadReport', 'fetch_checkpoint', 'load_into_features_model']


@dataclass
class LoadReport:
    """What happened to every tensor of a checkpoint loaded into a features-only backbone."""
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # in the model, not in the checkpoint: kept at init
    unused: List[str] = field(default_factory=list)  # checkpoint layers the features model pruned (norm, head)
    unexpected: List[str] = field(default_factory=list)  # fit no layer of the model
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f'loaded {len(self.loaded)} tensors']
        for title, keys in (('missing (kept at initialisation)', self.missing),
                            ('unused by the features model (pruned classifier/final norm)', self.unused),
                            ('unexpected (skipped)', self.unexpected)):
            if keys:
                lines.append(f'{len(keys)} {title}: {_clip(keys)}')
        if self.mismatched:
            lines.append(f'{len(self.mismatched)} shape mismatch(es) (skipped): '
                         + _clip([f'{k} {a} vs {b}' for k, a, b in self.mismatched]))
        return '; '.join(lines)


def _clip(keys: Sequence[str], limit: int = 12) -> str:
    keys = list(keys)
    text = ', '.join(keys[:limit])
    return text + (f', ... (+{len(keys) - limit})' if len(keys) > limit else '')


def fetch_checkpoint(
        checkpoint: Union[str, os.PathLike, Mapping], trust_pickle: bool = False) -> Dict[str, torch.Tensor]:
    """Read a checkpoint and unwrap it to a flat tensor dict.

    ``checkpoint`` may be a loaded dict, a local path (``.pth``/``.bin``/``.safetensors``), an http(s) URL (cached
    under torch hub's folder), ``hf-hub:<repo id>`` (the repo's timm weights), or ``timm:<model>[.<tag>]``: the
    weights a registered model's pretrained tag points to (its ``file``, ``hf_hub_id`` or ``url``, as
    ``timm.create_model(..., pretrained=True)`` would resolve them).
    """
    if isinstance(checkpoint, Mapping):
        return unwrap_state_dict(checkpoint)
    path = os.fspath(checkpoint)
    if path.startswith('timm:'):
        return _fetch_pretrained_tag(path[len('timm:'):], trust_pickle)
    if path.startswith('hf-hub:'):
        from timm.models import load_state_dict_from_hf
        return unwrap_state_dict(load_state_dict_from_hf(path[len('hf-hub:'):]))
    parsed = urlparse(path)
    if parsed.scheme in ('http', 'https'):
        path = _download(path)
    elif parsed.scheme == 'file':
        path = parsed.path
    elif len(parsed.scheme) > 1:  # (a Windows drive letter parses as a one-letter scheme)
        raise ValueError(
            f'Unsupported checkpoint location {path!r}: use a local path, an http(s) URL, hf-hub:<repo> or '
            f'timm:<model>.<tag>')
    try:
        return read_checkpoint(os.path.expanduser(path), trusted=trust_pickle)
    except CheckpointFileError as e:
        if trust_pickle or e.pickled_global is None:
            raise
        # mmengine checkpoints load already (import modzoo.mm allow-lists their types): this file holds other objects
        raise CheckpointFileError(
            f'{path} holds pickled objects besides tensors and mmengine checkpoint metadata ({e.pickled_global}). '
            f'If you trust the file, load it with init_cfg=dict(type="Pretrained", checkpoint=..., '
            f'trust_pickle=True)', e.pickled_global) from None


def _download(url: str) -> str:
    from torch.hub import download_url_to_file, get_dir
    parsed = urlparse(url)
    # host + path keep files of the same basename from different releases apart
    name = (parsed.netloc + parsed.path).strip('/').replace('/', '--')
    cached = os.path.join(get_dir(), 'checkpoints', 'modzoo', name)
    if not os.path.isfile(cached):
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        download_url_to_file(url, cached, progress=False)
    return cached


def _fetch_pretrained_tag(name: str, trust_pickle: bool) -> Dict[str, torch.Tensor]:
    from timm.models import get_pretrained_cfg
    cfg = get_pretrained_cfg(name, allow_unregistered=False)
    if cfg is None:
        raise ValueError(f'timm:{name}: no such model/pretrained tag is registered')
    load_from, location = _pretrained_source(cfg.to_dict())
    if load_from == 'state_dict':
        return unwrap_state_dict(location)
    if load_from in ('file', 'local-dir'):
        return read_checkpoint(location, trusted=trust_pickle)
    if load_from == 'hf-hub':
        from timm.models import load_state_dict_from_hf
        repo, filename = location if isinstance(location, tuple) else (location, None)
        sd = load_state_dict_from_hf(repo, filename) if filename else load_state_dict_from_hf(repo)
        return unwrap_state_dict(sd)
    if load_from == 'url':
        return read_checkpoint(_download(location), trusted=trust_pickle)
    raise ValueError(
        f'timm:{name} has no downloadable weights (no file, hf_hub_id or url in its pretrained cfg); '
        f'download them yourself and pass the local path as the checkpoint')


def _pretrained_source(cfg: Mapping) -> Tuple[str, object]:
    """Where ``timm.create_model(..., pretrained=True)`` takes a pretrained cfg's weights from, in timm's order.

    The cfg's ``source`` (hf-hub, local-dir) first, then an in-memory ``state_dict``, a ``file``, the Hugging Face
    hub (when ``huggingface_hub`` is installed) and the ``url``. Returns ``(kind, location)``; kind '' for none.
    """
    import importlib.util
    has_hf_hub = importlib.util.find_spec('huggingface_hub') is not None
    hf_hub_id = cfg.get('hf_hub_id')
    if cfg.get('source') == 'hf-hub' and has_hf_hub:
        load_from, location = 'hf-hub', hf_hub_id
    elif cfg.get('source') == 'local-dir':
        load_from, location = 'local-dir', cfg.get('file')
    elif cfg.get('state_dict'):
        load_from, location = 'state_dict', cfg['state_dict']
    elif cfg.get('file'):
        load_from, location = 'file', cfg['file']
    elif hf_hub_id and has_hf_hub:
        load_from, location = 'hf-hub', hf_hub_id
    elif cfg.get('url'):
        load_from, location = 'url', cfg['url']
    else:
        load_from, location = '', ''
    if load_from == 'hf-hub' and cfg.get('hf_hub_filename'):
        location = (location, cfg['hf_hub_filename'])
    return load_from, location


def load_into_features_model(
        model: nn.Module,
        state_dict: Dict[str, torch.Tensor],
        filter_fn: Optional[Callable],
        full_model_keys: Sequence[str],
        model_name: str,
        strict: bool = True,
        dense_only: Sequence[str] = (),
        full_model: Optional[nn.Module] = None,
) -> LoadReport:
    """Convert ``state_dict`` with the family's ``filter_fn`` and load it into the pruned features ``model``.

    Args:
        model: the network inside the features-only backbone (pruned by timm).
        state_dict: flat tensors (already unwrapped from any container).
        filter_fn: the family's ``checkpoint_filter_fn(state_dict, model, verify=...)``, or None.
        full_model_keys: state_dict keys of the unpruned model, to tell pruned layers from foreign tensors.
        model_name: for messages.
        strict: raise on any misfit or on missing tensors outside ``dense_only``.
        dense_only: keys of layers that exist only in dense-task backbones (allowed to be missing).
        full_model: the unpruned model (on the meta device is enough): the checkpoint is also converted for it, so
            tensors a filter drops because the pruned model lacks their layers (a final norm, a classifier) are
            reported as unused instead of vanishing from the report.
    """
    model_sd = model.state_dict()
    pruned = set(full_model_keys) - set(model_sd)
    dropped_by_filter: List[str] = []
    if filter_fn is not None:
        source = state_dict
        state_dict = convert_state_dict(dict(source), model, filter_fn, verify=False)
        if full_model is not None and pruned:
            full_layout = convert_state_dict(dict(source), full_model, filter_fn, verify=False)
            dropped_by_filter = [k for k in full_layout if k in pruned and k not in state_dict]
    dense_only = set(dense_only)
    # dense-only layers the filter filled with the model's current (initial) values did not come from the file
    filled = {k for k in dense_only if k in state_dict and k in model_sd and torch.equal(state_dict[k], model_sd[k])}
    state_dict = {k: v for k, v in state_dict.items() if k not in filled}

    report = LoadReport()
    fitting = {}
    for key, value in state_dict.items():
        target = model_sd.get(key)
        if target is None:
            (report.unused if key in pruned else report.unexpected).append(key)
        elif tuple(target.shape) != tuple(value.shape):
            report.mismatched.append((key, tuple(value.shape), tuple(target.shape)))
        else:
            fitting[key] = value
    # BatchNorm's num_batches_tracked is bookkeeping that some releases drop; it needs no value from the file
    report.missing = [k for k in model_sd if k not in fitting and not k.endswith('num_batches_tracked')]
    report.loaded = sorted(fitting)
    report.unused += dropped_by_filter

    required_missing = [k for k in report.missing if k not in dense_only]
    if strict and (report.unexpected or report.mismatched or required_missing):
        hint = ('Pass init_cfg=dict(type="Pretrained", checkpoint=..., strict=False) to load the fitting tensors '
                'anyway, or check that model_name and the model kwargs match the checkpoint.')
        if any('out_norm' in k for k in report.unexpected):
            hint += ' The checkpoint has per-stage output norms: build the backbone with out_norms=True.'
        raise CheckpointMismatchError(
            f'{model_name} (features-only backbone)', required_missing, report.unexpected, report.mismatched, hint)
    model.load_state_dict(fitting, strict=False)
    return report
