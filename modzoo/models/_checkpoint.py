"""Checkpoint plumbing shared by every family's ``checkpoint_filter_fn``.

Official releases come in several containers (``{'model': sd}`` from Swin-style trainers, ``state_dict`` /
``state_dict_ema`` from timm's train script, OpenMMLab files with ``backbone.`` prefixes, DDP ``module.`` prefixes).
:func:`unwrap_state_dict` reduces all of them to a flat ``{name: tensor}`` dict. After a family has remapped the keys,
:func:`verify_state_dict` compares the result with the model and raises :class:`CheckpointMismatchError` naming every
missing, unexpected and wrongly shaped key, so a checkpoint that does not fit never loads silently.
"""
import inspect
import logging
import os
import sys
import warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

_logger = logging.getLogger(__name__)

__all__ = [
    'CheckpointMismatchError', 'CheckpointFileError', 'load_torch_file', 'unwrap_state_dict', 'strip_prefix',
    'verify_state_dict', 'read_checkpoint', 'load_checkpoint', 'convert_state_dict', 'classifier_names',
    'checkpoint_num_classes', 'fit_classifier',
]

# Container keys in the order they are preferred: EMA weights are what the official repos evaluate.
_CONTAINER_KEYS = ('state_dict_ema', 'model_ema', 'state_dict', 'model', 'module', 'net', 'params')


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's tensors do not fit the model: lists missing/unexpected keys and shape mismatches."""

    def __init__(
            self,
            model_name: str,
            missing: Sequence[str] = (),
            unexpected: Sequence[str] = (),
            mismatched: Sequence[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = (),
            hint: str = '',
    ):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        lines = [f'Checkpoint does not fit {model_name}:']
        if self.missing:
            lines.append(f'  {len(self.missing)} missing key(s) (in the model, not in the checkpoint):')
            lines += _clip([f'    {k}' for k in self.missing])
        if self.unexpected:
            lines.append(f'  {len(self.unexpected)} unexpected key(s) (in the checkpoint, not in the model):')
            lines += _clip([f'    {k}' for k in self.unexpected])
        if self.mismatched:
            lines.append(f'  {len(self.mismatched)} shape mismatch(es) (key: checkpoint shape vs model shape):')
            lines += _clip([f'    {k}: {tuple(a)} vs {tuple(b)}' for k, a, b in self.mismatched])
        if hint:
            lines.append(hint)
        super().__init__('\n'.join(lines))


def _clip(items: Sequence, limit: int = 40) -> list:
    items = list(items)
    if len(items) <= limit:
        return items
    return items[:limit] + [f'    ... and {len(items) - limit} more']


def strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    """Remove ``prefix`` from every key that has it, keeping keys that do not (e.g. ``module.``)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def unwrap_state_dict(checkpoint: Any, prefer_ema: bool = True) -> Dict[str, torch.Tensor]:
    """Return the flat tensor dict inside any of the common checkpoint containers.

    Handles nested containers (``{'model': {'state_dict': ...}}``), DDP ``module.`` prefixes and OpenMMLab
    ``backbone.`` prefixes (only when every tensor key has it, so a classifier's own ``backbone`` never gets cut).
    """
    sd = checkpoint
    for _ in range(3):  # containers nest at most a couple of levels in practice
        if not isinstance(sd, Mapping):
            break
        if any(isinstance(v, torch.Tensor) for v in sd.values()):
            # a flat state_dict possibly stored beside metadata; take it unless it is a container that also
            # carries a nested state dict (timm train checkpoints hold no loose tensors, so this is safe)
            break
        keys = [k for k in _CONTAINER_KEYS if k in sd and isinstance(sd[k], Mapping)]
        if not prefer_ema:
            keys = [k for k in keys if 'ema' not in k] or keys
        if not keys:
            break
        sd = sd[keys[0]]
    if not isinstance(sd, Mapping):
        raise TypeError(f'Expected a state dict or a checkpoint container holding one, got {type(checkpoint)}')
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith('module.') for k in sd):
        sd = strip_prefix(sd, 'module.')
    if sd and all(k.startswith('backbone.') for k in sd):
        sd = strip_prefix(sd, 'backbone.')
    elif any(k.startswith('backbone.') for k in sd):
        # an OpenMMLab detector/segmentor: keep only the backbone's tensors
        sd = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    return sd


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    return cfg.get('architecture') or type(model).__name__


def _cfg_module_names(model: nn.Module, key: str) -> List[str]:
    """Module names under ``pretrained_cfg[key]`` (``'classifier'``, ``'first_conv'``): one string or a list."""
    names = (getattr(model, 'pretrained_cfg', None) or {}).get(key)
    return [names] if isinstance(names, str) else list(names or [])


def classifier_names(model: nn.Module) -> List[str]:
    """The model's classifier module names, from its ``pretrained_cfg`` (e.g. ``['head.fc']``)."""
    return _cfg_module_names(model, 'classifier')


def convert_state_dict(
        state_dict: Mapping[str, torch.Tensor],
        model: nn.Module,
        filter_fn: Optional[Callable] = None,
        verify: bool = True,
) -> Dict[str, torch.Tensor]:
    """Convert ``state_dict`` with ``filter_fn``, by default the family's ``checkpoint_filter_fn`` (looked up from the
    model's module); ``verify`` is passed on to filters that take it. Without a filter the dict is returned as is."""
    if filter_fn is None:
        filter_fn = getattr(sys.modules[type(model).__module__], 'checkpoint_filter_fn', None)
    if filter_fn is None:
        return dict(state_dict)
    if 'verify' in inspect.signature(filter_fn).parameters:
        return filter_fn(state_dict, model, verify=verify)
    return filter_fn(state_dict, model)


def checkpoint_num_classes(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> Optional[int]:
    """Classes of the checkpoint's classifier after the family's key conversion (0: no classifier; None: unknown).

    ``model`` only supplies the family's filter and classifier name: a build on the meta device will do."""
    keys = [name + '.weight' for name in classifier_names(model)]
    if not keys:
        return None
    try:
        converted = convert_state_dict(dict(state_dict), model, verify=False)
    except Exception:  # the strict load that follows reports what does not fit
        return None
    for key in keys:
        if key in converted:
            return int(converted[key].shape[0])
    return 0


def verify_state_dict(
        state_dict: Mapping[str, torch.Tensor],
        model: nn.Module,
        allow_missing: Iterable[str] = (),
        hint: str = '',
        exempt_adapted: bool = True,
) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state_dict`` fits ``model``.

    With ``exempt_adapted`` (the family filters, run inside timm's loader) the keys timm adapts itself after the
    filter (the classifier when ``num_classes`` differs, the first conv when ``in_chans`` differs) are exempt from
    the shape check, and the classifier may be absent; :func:`load_checkpoint` checks every key. ``allow_missing``
    lists key prefixes of layers that are new relative to the checkpoint (e.g. dense-task output norms).
    """
    classifiers = tuple(c + '.' for c in classifier_names(model))
    adapted = classifiers + tuple(c + '.' for c in _cfg_module_names(model, 'first_conv'))
    if not exempt_adapted:
        classifiers = adapted = ()
    optional = classifiers + tuple(allow_missing)

    model_sd = model.state_dict()
    missing = [k for k in model_sd if k not in state_dict and not k.startswith(optional)]
    unexpected = [k for k in state_dict if k not in model_sd]
    mismatched = [
        (k, tuple(v.shape), tuple(model_sd[k].shape)) for k, v in state_dict.items()
        if k in model_sd and tuple(v.shape) != tuple(model_sd[k].shape) and not k.startswith(tuple(adapted))
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(_model_name(model), missing, unexpected, mismatched, hint)


class CheckpointFileError(RuntimeError):
    """A checkpoint file that cannot be read: empty, truncated, not a checkpoint, or pickling objects besides
    tensors (the message says which, and what to do). ``pickled_global`` names the refused global in the last case,
    so callers with another way to load such files can say so."""

    def __init__(self, message: str, pickled_global: Optional[str] = None):
        super().__init__(message)
        self.pickled_global = pickled_global


def _unreadable(path: str, reason: str, fix: str, pickled_global: Optional[str] = None) -> CheckpointFileError:
    return CheckpointFileError(f'{path} {reason}: {fix}', pickled_global)


def load_torch_file(path: Union[str, os.PathLike], trusted: bool = False) -> Any:
    """``torch.load`` of a ``.pth``/``.bin`` file on the CPU, with a :class:`CheckpointFileError` that tells a damaged
    file (empty, truncated, not written by ``torch.save``) from one that pickles objects besides tensors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'No checkpoint file at {path}')
    size = os.path.getsize(path)
    if size == 0:
        raise _unreadable(path, 'is empty (0 bytes), not a checkpoint',
                          'the download or copy did not finish; fetch the file again')
    try:
        with warnings.catch_warnings():
            # torch warns about any protocol but 2 before it reads the file; ours is the one message the user gets
            warnings.filterwarnings('ignore', message='Detected pickle protocol', category=UserWarning)
            return torch.load(path, map_location='cpu', weights_only=not trusted)
    except Exception as e:
        text = str(e)
        if not trusted and 'Unsupported global' in text:  # the weights-only unpickler names the offending global
            offending = text.split('Unsupported global:', 1)[1].split(' was not', 1)[0].strip()
            raise _unreadable(
                path, f'holds pickled objects besides tensors ({offending}), which torch.load(weights_only=True) '
                      f'refuses', f'if you trust the file, convert it once with `python tools/get_checkpoint.py '
                                  f'MODEL --file {path} --trust-pickle`, or call read_checkpoint(path, '
                                  f'trusted=True)', offending) from None
        with open(path, 'rb') as f:
            head = f.read(4)
        if head.startswith(b'PK') or isinstance(e, EOFError) or 'central directory' in text:
            raise _unreadable(path, f'is damaged or truncated ({size} bytes; the PyTorch archive ends early or is '
                                    f'corrupt)', 'download or copy the file again') from None
        raise _unreadable(path, f'is not a PyTorch checkpoint ({size} bytes that torch.load cannot read)',
                          'pass a .pth/.bin file written by torch.save, or a .safetensors file') from None


def fit_classifier(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Settle the classifier before timm's loader sees ``state_dict`` (``create_model(pretrained=True)``).

    timm keeps the checkpoint's classifier only when the model's ``num_classes`` equals ``pretrained_cfg
    ['num_classes']``, which for a ``pretrained_cfg_overlay`` file is the registered cfg's, not the file's. Here:

    * a classifier whose shapes fit the model is kept, whatever the cfg says (the cfg is updated to the loaded head);
    * one that does not fit, where timm would load it, raises :class:`CheckpointMismatchError` with both shapes;
    * one that does not fit, where timm discards it, is discarded with a warning (the classifier starts from its
      random init).
    """
    cfg = getattr(model, 'pretrained_cfg', None)
    names = classifier_names(model)
    num_classes = getattr(model, 'num_classes', None)
    if not isinstance(cfg, dict) or not names or not num_classes or 'num_classes' not in cfg:
        return state_dict  # no classifier to fit (features_only, num_classes=0)
    model_sd = model.state_dict()
    keys = [n + suffix for n in names for suffix in ('.weight', '.bias') if n + suffix in model_sd]
    present = [k for k in keys if k in state_dict]
    if not present:
        if cfg['num_classes'] == num_classes:
            raise CheckpointMismatchError(
                _model_name(model), missing=keys,
                hint=f'The checkpoint has no classifier: build the model with num_classes=0 for the backbone, or '
                     f'pass pretrained_cfg_overlay=dict(..., num_classes=0) to start a new {num_classes}-class head.')
        return state_dict
    mismatched = [(k, tuple(state_dict[k].shape), tuple(model_sd[k].shape)) for k in present
                  if tuple(state_dict[k].shape) != tuple(model_sd[k].shape)]
    if not mismatched:
        if cfg['num_classes'] != num_classes:
            _logger.info('Keeping the checkpoint classifier: it fits num_classes=%d', num_classes)
            cfg['num_classes'] = num_classes  # the loaded head is what the cfg now describes
        return state_dict
    if cfg['num_classes'] == num_classes:
        ckpt_classes = state_dict[present[0]].shape[0]
        raise CheckpointMismatchError(
            _model_name(model), mismatched=mismatched,
            hint=f'The checkpoint classifier has {ckpt_classes} classes, the model {num_classes}: build with '
                 f'num_classes={ckpt_classes} to use it, or pass pretrained_cfg_overlay=dict(..., num_classes='
                 f'{ckpt_classes}) to start a new {num_classes}-class head.')
    _logger.warning(
        'The checkpoint classifier (%s) does not fit num_classes=%d: it is not loaded, the classifier keeps its '
        'random init.', ', '.join(f'{k} {a}' for k, a, _ in mismatched), num_classes)
    return state_dict


def read_checkpoint(path: Union[str, os.PathLike], trusted: bool = False) -> Dict[str, torch.Tensor]:
    """Read a ``.safetensors``/``.pth``/``.bin`` file and unwrap it (see :func:`unwrap_state_dict`).

    ``torch.load`` runs with ``weights_only=True`` unless ``trusted``: some official releases pickle config objects
    beside the weights (FocalNet's yacs config), which only a trusted full unpickle can read. A file that cannot be
    read raises :class:`CheckpointFileError` saying whether it is damaged, not a checkpoint, or needs trust.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'No checkpoint file at {path}')
    if path.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        if os.path.getsize(path) == 0:
            raise _unreadable(path, 'is empty (0 bytes), not a checkpoint',
                              'the download or copy did not finish; fetch the file again')
        try:
            obj = load_file(path, device='cpu')
        except SafetensorError as e:
            raise _unreadable(path, f'is not a valid safetensors file, damaged or truncated ({e})',
                              'download or copy the file again') from None
    else:
        obj = load_torch_file(path, trusted=trusted)
    try:
        state_dict = unwrap_state_dict(obj)
    except TypeError:
        raise _unreadable(path, f'holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)',
                          'pass the model\'s weights file') from None
    if not state_dict:
        raise _unreadable(path, 'holds no tensors', 'pass the model\'s weights file')
    return state_dict


def load_checkpoint(
        model: nn.Module,
        checkpoint: Union[str, os.PathLike, Mapping[str, Any]],
        filter_fn: Optional[Callable] = None,
        strict: bool = True,
        trusted: bool = False,
) -> nn.Module:
    """Load a checkpoint (path or dict, any container, official or modzoo layout) into ``model``.

    ``filter_fn`` defaults to the family's ``checkpoint_filter_fn`` looked up from the model's module. With
    ``strict=False`` a mismatch is logged instead of raised, and the fitting tensors are still loaded.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        state_dict = read_checkpoint(checkpoint, trusted=trusted)
    else:
        state_dict = unwrap_state_dict(checkpoint)
    state_dict = convert_state_dict(state_dict, model, filter_fn, verify=strict)
    if strict:  # every key, the classifier and first conv included (nothing adapts them here)
        verify_state_dict(state_dict, model, exempt_adapted=False)
        model.load_state_dict(state_dict, strict=True)
    else:
        model_sd = model.state_dict()
        fitting = {k: v for k, v in state_dict.items() if k in model_sd and v.shape == model_sd[k].shape}
        result = model.load_state_dict(fitting, strict=False)
        skipped = sorted(set(state_dict) - set(fitting))
        if result.missing_keys or skipped:
            _logger.warning(
                'Non-strict load: %d model key(s) not in checkpoint (%s), %d checkpoint key(s) skipped (%s)',
                len(result.missing_keys), ', '.join(result.missing_keys[:10]), len(skipped), ', '.join(skipped[:10]))
    return model
