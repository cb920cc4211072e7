"""Where the OpenMMLab backbone's checkpoints come from, and loading them into a features-only model.

The features-only model is pruned (no final norm, no classifier) and may carry layers a classification file lacks
(per-stage output norms). Loading goes through the checkpoint contract of :mod:`modzoo.models` (read once, explicit
``prefix`` applied as mmengine does, the family's key filter, one matcher):

* checkpoint tensors of layers the features model dropped (classifier, final norm) are *unused* and reported;
* model tensors the checkpoint lacks are *missing* and reported (kept at their initialisation);
* checkpoint tensors that fit no layer, or fit with the wrong shape, are a *misfit*: with ``strict=True`` (default)
  that raises :class:`~modzoo.CheckpointMismatchError`; with ``strict=False`` they are skipped and reported.

Missing tensors raise too under ``strict=True`` unless they belong to layers no classification file can have (the
family's new layers, e.g. FocalNet's per-stage output norms), because a silently half-initialised backbone trains to
a worse result without any error.
"""
import os
from typing import Dict, Mapping, NamedTuple, Optional, Tuple, Union
from urllib.parse import urlparse

import torch
import torch.nn as nn

from modzoo.models import Checkpoint, CheckpointFileError, LoadReport, fit_checkpoint, open_checkpoint

__all__ = ['LoadReport', 'BackboneLayout', 'fetch_checkpoint', 'read_backbone_layout', 'features_load_hint',
           'load_adapter_part']


def fetch_checkpoint(
        checkpoint: Union[str, os.PathLike, Mapping], trust_pickle: bool = False, prefix: Optional[str] = None,
        allow_non_finite: bool = False) -> Checkpoint:
    """Read a checkpoint once and take its tensors out of their container (``prefix``: mmengine's, see
    :func:`modzoo.models.open_checkpoint`).

    ``checkpoint`` may be a loaded dict, a local path (``.pth``/``.bin``/``.safetensors``), an http(s) URL (cached
    under torch hub's folder), ``hf-hub:<repo id>`` (the repo's timm weights), or ``timm:<model>[.<tag>]``: the
    weights a registered model's pretrained tag points to (its ``file``, ``hf_hub_id`` or ``url``, as
    ``timm.create_model(..., pretrained=True)`` would resolve them).
    """
    del allow_non_finite  # checked by the matcher
    location = _locate(checkpoint, trust_pickle)
    try:
        return open_checkpoint(location, trusted=trust_pickle, prefix=prefix)
    except CheckpointFileError as e:
        if trust_pickle or e.pickled_global is None or 'unsafe' in str(e):
            raise
        # mmengine checkpoints load already (import modzoo.mm allow-lists their types): this file holds other objects
        raise CheckpointFileError(
            f'{location} holds pickled objects besides tensors and mmengine checkpoint metadata ({e.pickled_global}). '
            f'If you trust the file, load it with init_cfg=dict(type="Pretrained", checkpoint=..., '
            f'trust_pickle=True)', e.pickled_global) from None


def _locate(checkpoint: Union[str, os.PathLike, Mapping], trust_pickle: bool) -> Union[str, Mapping]:
    """A local path or a loaded dict for any supported location."""
    if isinstance(checkpoint, Mapping):
        return checkpoint
    path = os.fspath(checkpoint)
    if path.startswith('timm:'):
        return _locate_pretrained_tag(path[len('timm:'):])
    if path.startswith('hf-hub:'):
        from timm.models import load_state_dict_from_hf
        return load_state_dict_from_hf(path[len('hf-hub:'):])
    parsed = urlparse(path)
    if parsed.scheme in ('http', 'https'):
        return _download(path)
    if parsed.scheme == 'file':
        return parsed.path
    if len(parsed.scheme) > 1:  # (a Windows drive letter parses as a one-letter scheme)
        raise ValueError(
            f'Unsupported checkpoint location {path!r}: use a local path, an http(s) URL, hf-hub:<repo> or '
            f'timm:<model>.<tag>')
    return os.path.expanduser(path)


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


def _locate_pretrained_tag(name: str) -> Union[str, Mapping]:
    from timm.models import get_pretrained_cfg
    cfg = get_pretrained_cfg(name, allow_unregistered=False)
    if cfg is None:
        raise ValueError(f'timm:{name}: no such model/pretrained tag is registered')
    load_from, location = _pretrained_source(cfg.to_dict())
    if load_from in ('state_dict', 'file', 'local-dir'):
        return location
    if load_from == 'hf-hub':
        from timm.models import load_state_dict_from_hf
        repo, filename = location if isinstance(location, tuple) else (location, None)
        return load_state_dict_from_hf(repo, filename) if filename else load_state_dict_from_hf(repo)
    if load_from == 'url':
        return _download(location)
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


class BackboneLayout(NamedTuple):
    """A checkpoint's tensors split by the parts of :class:`~modzoo.mm.backbone.ModzooBackbone`."""
    network: Dict[str, torch.Tensor]  # the features model (``model.*``)
    out_norms: Dict[str, torch.Tensor]  # the adapter's output norms (``out_norms.*``)
    resamplers: Dict[str, torch.Tensor]  # SFM's resamplers (``resamplers.*``)


def read_backbone_layout(state_dict: Mapping[str, torch.Tensor]) -> BackboneLayout:
    """The one reader of the backbone's own layout: tensors written by ``ModzooBackbone`` (an mm checkpoint with
    ``backbone.`` taken off) split into its parts; any other checkpoint is all network."""
    parts = ('model.', 'out_norms.', 'resamplers.')
    if not (any(k.startswith('model.') for k in state_dict) and all(k.startswith(parts) for k in state_dict)):
        return BackboneLayout(dict(state_dict), {}, {})
    return BackboneLayout(*({k[len(p):]: v for k, v in state_dict.items() if k.startswith(p)} for p in parts))


def features_load_hint(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> str:
    """What to do when a checkpoint does not fit the features-only model."""
    hint = ('Pass init_cfg=dict(type="Pretrained", checkpoint=..., strict=False) to load the fitting tensors '
            'anyway, or check that model_name and the model kwargs match the checkpoint.')
    if any('out_norm' in k for k in state_dict) and not any('out_norm' in k for k in model.state_dict()):
        hint += ' The checkpoint has per-stage output norms: build the backbone with out_norms=True.'
    return hint


def load_adapter_part(module: Optional[nn.Module], tensors: Mapping[str, torch.Tensor], name: str, source: str,
                      strict: bool = True) -> LoadReport:
    """Load one of the adapter's own parts (``out_norms``, ``resamplers``; ``module`` None when the backbone was built
    without it): all its tensors must fit, or none be there (the part keeps its initialisation, the identity warp
    for resamplers); tensors of a part the backbone lacks are unexpected."""
    report = fit_checkpoint(Checkpoint(dict(tensors), {}, source), module if module is not None else nn.Module(),
                            strict=strict, allow_missing=() if tensors else ('',), model_name=name)
    if module is not None:
        module.load_state_dict(report.state_dict, strict=False)
    report.state_dict = {}
    return report
