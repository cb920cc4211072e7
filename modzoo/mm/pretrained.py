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
from typing import Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch.nn as nn

from modzoo.models import Checkpoint, CheckpointFileError, LoadReport, open_checkpoint
from modzoo.models import check_model_record, convert_state_dict, match_state_dict

__all__ = ['LoadReport', 'fetch_checkpoint', 'load_into_features_model']


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


def load_into_features_model(
        model: nn.Module,
        checkpoint: Checkpoint,
        pruned: Sequence[str],
        model_name: str,
        strict: bool = True,
        allow_non_finite: bool = False,
) -> LoadReport:
    """Convert ``checkpoint`` with the family's filter, match it against the pruned features ``model`` and load it.

    Args:
        model: the network inside the features-only backbone (pruned by timm).
        checkpoint: from :func:`fetch_checkpoint`.
        pruned: keys of the layers the features model dropped (final norm, classifier): reported unused.
        model_name: for messages.
        strict: raise on any misfit or on missing tensors outside the family's new layers.
        allow_non_finite: load NaN/Inf values instead of refusing them.
    """
    if strict:
        check_model_record(checkpoint.record, model, checkpoint.source)
    converted = convert_state_dict(checkpoint.state_dict, model)
    hint = ('Pass init_cfg=dict(type="Pretrained", checkpoint=..., strict=False) to load the fitting tensors '
            'anyway, or check that model_name and the model kwargs match the checkpoint.')
    if any('out_norm' in k for k in converted) and not any('out_norm' in k for k in model.state_dict()):
        hint += ' The checkpoint has per-stage output norms: build the backbone with out_norms=True.'
    report = match_state_dict(converted, model, strict=strict, pruned=pruned, source=checkpoint.source,
                              model_name=f'{model_name} (features-only backbone)', allow_non_finite=allow_non_finite,
                              hint=hint)
    model.load_state_dict(report.state_dict, strict=False)
    report.state_dict = {}
    return report
