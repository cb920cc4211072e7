"""The checkpoint contract. Every load in modzoo (``create_model(pretrained=...)``, :func:`load_checkpoint`,
``tools/get_checkpoint.py``, the OpenMMLab backbone, segmentation export, training's initial weights) comes in
through one entry point, :func:`fit_checkpoint` (:func:`load_checkpoint` loads what it fits), which takes these steps
in this order:

1. :func:`open_checkpoint` reads a file or dict once and takes the tensors out of whatever container holds them
   (official ``{'model': sd}``, timm's ``state_dict``/``state_dict_ema``, DDP ``module.``, OpenMMLab ``state_dict`` +
   ``backbone.``, Hugging Face, plain). An explicit ``prefix`` is applied the way mmengine's ``Pretrained`` init does:
   to the container's ``state_dict`` as written, keeping only the keys under the prefix.
2. Files modzoo writes carry a *model record* (the registered model, the constructor kwargs that differ from its
   defaults, the pretrained tag, the source file's sha256): loading one into a model built differently fails with
   one line naming the difference (:func:`check_model_record`).
3. The family's ``checkpoint_filter_fn`` renames/reshapes keys into the model's layout (nothing else).
4. :func:`match_state_dict` compares the result with the model, once, and returns a :class:`LoadReport`; with
   ``strict`` it raises :class:`CheckpointMismatchError` naming every missing, unexpected and wrongly shaped key. A
   classifier of another size follows the caller's policy (:data:`CLASSIFIER_POLICIES`, :func:`_fit_classifier`).
"""
import inspect
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ._pickles import code_running_globals, refused_global

_logger = logging.getLogger(__name__)

__all__ = [
    'CheckpointMismatchError', 'CheckpointFileError', 'CheckpointValueError', 'LoadReport', 'Checkpoint',
    'load_torch_file', 'open_checkpoint', 'read_checkpoint', 'register_checkpoint_family', 'convert_state_dict',
    'match_state_dict', 'fit_checkpoint', 'load_checkpoint', 'classifier_names', 'checkpoint_num_classes',
    'model_record', 'check_model_record', 'recorded_kwargs', 'file_record', 'RECORD_KEY', 'CLASSIFIER_POLICIES',
]

# Container keys in the order they are preferred: EMA weights are what the official repos evaluate.
_CONTAINER_KEYS = ('state_dict_ema', 'model_ema', 'state_dict', 'model', 'module', 'net', 'params')
RECORD_KEY = 'modzoo_model'  # the model record in a torch file; safetensors metadata holds it as JSON under this key


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
        if not (self.missing or self.unexpected or self.mismatched):
            super().__init__(f'Checkpoint does not fit {model_name}: {hint}')
            return
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


class CheckpointFileError(RuntimeError):
    """A checkpoint file that cannot be read: empty, truncated, not a checkpoint, or pickling objects besides
    tensors (the message says which, and what to do). ``pickled_global`` names the refused global in the last case,
    so callers with another way to load such files can say so."""

    def __init__(self, message: str, pickled_global: Optional[str] = None):
        super().__init__(message)
        self.pickled_global = pickled_global


class CheckpointValueError(CheckpointFileError):
    """A readable checkpoint whose tensors cannot be right: integers where the model has floats, NaN or Inf."""


def _clip(items: Sequence, limit: int = 40) -> list:
    items = list(items)
    if len(items) <= limit:
        return items
    return items[:limit] + [f'    ... and {len(items) - limit} more']


def _unreadable(path: str, reason: str, fix: str, pickled_global: Optional[str] = None) -> CheckpointFileError:
    return CheckpointFileError(f'{path} {reason}: {fix}', pickled_global)


def load_torch_file(path: Union[str, os.PathLike], trusted: bool = False) -> Any:
    """``torch.load`` of a ``.pth``/``.bin`` file on the CPU, with a :class:`CheckpointFileError` that tells a damaged
    file (empty, truncated, not written by ``torch.save``) from one that pickles objects besides tensors (code that
    would run on load, like ``os.system``, included: the file is called unsafe, never damaged)."""
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
        refused = refused_global(text) if not trusted else None
        if refused:
            raise _pickle_error(path, refused) from None
        with open(path, 'rb') as f:
            head = f.read(4)
        if head.startswith(b'PK') or isinstance(e, EOFError) or 'central directory' in text:
            raise _unreadable(path, f'is damaged or truncated ({size} bytes; the PyTorch archive ends early or is '
                                    f'corrupt)', 'download or copy the file again') from None
        raise _unreadable(path, f'is not a PyTorch checkpoint ({size} bytes that torch.load cannot read)',
                          'pass a .pth/.bin file written by torch.save, or a .safetensors file') from None


def _pickle_error(path: str, refused: str) -> CheckpointFileError:
    """Unsafe when any pickled global may run code (no offer to trust it); otherwise the --trust-pickle advice."""
    code, mmengine = code_running_globals(path, refused)
    if mmengine:  # safe only under modzoo.mm's allow-list, which binds getattr to the message hub's statistics
        return _unreadable(path, 'is an mmengine Runner checkpoint, unsafe to unpickle in full: its message hub '
                                 'pickles builtins.getattr, which can run code', 'load it through modzoo.mm '
                                 '(`import modzoo.mm` first: its allow-list reads these files safely)', code[0])
    if code:
        return _unreadable(path, f'pickles a call to {", ".join(code[:3])}, which can run code when loaded: the file '
                                 f'is unsafe', 'do not load it; fetch the weights from a source you trust', code[0])
    return _unreadable(
        path, f'holds pickled objects besides tensors ({refused}), which torch.load(weights_only=True) refuses',
        f'if you trust the file, convert it once with `python tools/get_checkpoint.py MODEL --file {path} '
        f'--trust-pickle`, or call read_checkpoint(path, trusted=True)', refused)


class Checkpoint(NamedTuple):
    """Tensors taken out of their container, the file's model record (``{}`` when it has none), and where from."""
    state_dict: Dict[str, torch.Tensor]
    record: Dict[str, Any]
    source: str


def _read_file(path: str, trusted: bool) -> Tuple[Any, Dict[str, Any]]:
    """The file's object and the model record stored in safetensors metadata (torch files keep it inside)."""
    if not path.endswith('.safetensors'):
        return load_torch_file(path, trusted=trusted), {}
    from safetensors import SafetensorError, safe_open
    if os.path.getsize(path) == 0:
        raise _unreadable(path, 'is empty (0 bytes), not a checkpoint',
                          'the download or copy did not finish; fetch the file again')
    try:
        with safe_open(path, framework='pt', device='cpu') as f:
            metadata = f.metadata() or {}
            obj = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise _unreadable(path, f'is not a valid safetensors file, damaged or truncated ({e})',
                          'download or copy the file again') from None
    return obj, _parse_record(metadata.get(RECORD_KEY), path)


def file_record(path: Optional[str]) -> Dict[str, Any]:
    """The model record of a ``.safetensors`` file, read from its header only (``{}`` for other files)."""
    if path and os.path.isdir(path):  # a Hub folder
        path = os.path.join(path, 'model.safetensors')
    if not path or not str(path).endswith('.safetensors') or not os.path.isfile(path):
        return {}
    from safetensors import safe_open
    try:
        with safe_open(path, framework='pt', device='cpu') as f:
            raw = (f.metadata() or {}).get(RECORD_KEY)
    except Exception:  # reading the weights reports a damaged file
        return {}
    return _parse_record(raw, path)


def _bad_record(source: str, what: str) -> CheckpointFileError:
    return _unreadable(source, f'has a malformed model record ({what})',
                       'write the file again with modzoo (tools/get_checkpoint.py --file converts it)')


def _parse_record(raw: Any, source: str) -> Dict[str, Any]:
    """The one reader of a model record (JSON text or a mapping): an object whose ``architecture`` is a name and
    whose ``kwargs`` is an object of constructor arguments, or :func:`_bad_record` saying what is wrong. The
    classifier size is never the record's: a ``num_classes`` among its kwargs is dropped (the user's
    ``num_classes``, else the weights' classifier, decides it)."""
    if raw is None or raw == '':
        return {}
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError as e:
            raise _bad_record(source, f'not JSON: {e}') from None
    if not isinstance(raw, Mapping):
        raise _bad_record(source, f'a JSON {type(raw).__name__}, not an object')
    record = dict(raw)
    architecture = record.get('architecture')
    if architecture is not None and not (isinstance(architecture, str) and architecture):
        raise _bad_record(source, f'architecture {_show(architecture)} is not a model name')
    kwargs = record.get('kwargs')
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise _bad_record(source, f'kwargs {_show(kwargs)[:60]} is a {type(kwargs).__name__}, not an object of '
                                  f'constructor arguments')
    record['kwargs'] = {str(k): v for k, v in (kwargs or {}).items() if k != 'num_classes'}
    return record


def _container(obj: Any, prefer_ema: bool = True) -> Mapping:
    """The mapping that holds the tensors, through nested containers."""
    sd = obj
    for _ in range(3):  # containers nest at most a couple of levels in practice
        if not isinstance(sd, Mapping) or any(isinstance(v, torch.Tensor) for v in sd.values()):
            break
        keys = [k for k in _CONTAINER_KEYS if k in sd and isinstance(sd[k], Mapping)]
        if not prefer_ema:
            keys = [k for k in keys if 'ema' not in k] or keys
        if not keys:
            break
        sd = sd[keys[0]]
    if not isinstance(sd, Mapping):
        raise TypeError(f'Expected a state dict or a checkpoint container holding one, got {type(obj).__name__}')
    return sd


def _record_of(obj: Any, source: str) -> Dict[str, Any]:
    """The model record inside a torch checkpoint: modzoo's own, or a training checkpoint's fields."""
    if not isinstance(obj, Mapping):
        return {}
    if obj.get(RECORD_KEY) is not None:
        return _parse_record(obj[RECORD_KEY], source)
    if obj.get('model_name'):  # training checkpoints (modzoo.train) name the model beside the weights
        return _parse_record(dict(architecture=obj['model_name'], kwargs=obj.get('model_kwargs')), source)
    return {}


def open_checkpoint(
        checkpoint: Union[str, os.PathLike, Mapping[str, Any]],
        trusted: bool = False,
        prefix: Optional[str] = None,
        prefer_ema: bool = True,
) -> Checkpoint:
    """Read ``checkpoint`` (a ``.safetensors``/``.pth``/``.bin`` path or a loaded dict) once and unwrap it.

    Without ``prefix``: the tensors of the preferred container, with a DDP ``module.`` prefix removed and, for an
    OpenMMLab detector/segmentor, only the ``backbone.`` tensors (prefix removed). With ``prefix`` (mmengine's
    ``Pretrained`` ``prefix``): the container's tensors as written whose keys start with it, the prefix removed;
    ``prefix=''``: all of the container's tensors as written (a whole detector or segmentor).

    ``torch.load`` runs with ``weights_only=True`` unless ``trusted``. A file that cannot be read raises
    :class:`CheckpointFileError` saying whether it is damaged, unsafe, not a checkpoint, or needs trust.
    """
    if not isinstance(checkpoint, (str, os.PathLike)):  # a loaded checkpoint
        obj, record, source = checkpoint, {}, 'the checkpoint dict'
    else:
        source = os.path.expanduser(os.fspath(checkpoint))
        if not os.path.isfile(source):
            raise FileNotFoundError(f'No checkpoint file at {source}')
        obj, record = _read_file(source, trusted)
    record = record or _record_of(obj, source)
    try:
        container = _container(obj, prefer_ema)
    except TypeError:
        raise _unreadable(source, f'holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)',
                          'pass the model\'s weights file') from None
    sd = {k: v for k, v in container.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise _unreadable(source, 'holds no tensors', 'pass the model\'s weights file')
    if prefix == '':  # the tensors as written (a whole detector/segmentor), less a DDP `module.`
        if all(k.startswith('module.') for k in sd):
            sd = {k[len('module.'):]: v for k, v in sd.items()}
        return Checkpoint(sd, record, source)
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        under = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not under:
            heads = sorted({k.split('.', 1)[0] + '.' for k in sd})
            raise CheckpointMismatchError(
                source, hint=f'no tensors under prefix {prefix!r} (its keys start with {", ".join(heads[:8])})')
        return Checkpoint(under, record, source)
    if all(k.startswith('module.') for k in sd):
        sd = {k[len('module.'):]: v for k, v in sd.items()}
    if any(k.startswith('backbone.') for k in sd):  # an OpenMMLab model: its backbone's tensors
        sd = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    return Checkpoint(sd, record, source)


def read_checkpoint(
        checkpoint: Union[str, os.PathLike, Mapping[str, Any]], trusted: bool = False, prefix: Optional[str] = None,
) -> Dict[str, torch.Tensor]:
    """The flat tensors of a checkpoint file or dict (see :func:`open_checkpoint`)."""
    return open_checkpoint(checkpoint, trusted=trusted, prefix=prefix).state_dict


# --- families -----------------------------------------------------------------------------------------------------

@dataclass
class _Family:
    filter_fn: Callable  # (state_dict, model) -> state_dict in the model's key layout
    new_layers: Optional[Callable] = None  # (state_dict, model) -> model keys a checkpoint cannot have (keep init)
    hint: Optional[Callable] = None  # (state_dict, model) -> advice for a mismatch
    adaptable: Tuple[str, ...] = ()  # constructor kwargs whose change the filter adapts (not a record difference)


_FAMILIES: Dict[type, _Family] = {}


def register_checkpoint_family(model_cls: type, filter_fn: Callable, new_layers: Optional[Callable] = None,
                               hint: Optional[Callable] = None, adaptable: Sequence[str] = ()) -> None:
    """Declare how checkpoints convert into ``model_cls``: its key filter, the layers a checkpoint may lack (they
    keep their initialisation), a mismatch hint, and the kwargs its filter adapts."""
    _FAMILIES[model_cls] = _Family(filter_fn, new_layers, hint, tuple(adaptable))


def _family(model: nn.Module) -> Optional[_Family]:
    for cls in type(model).__mro__:
        if cls in _FAMILIES:
            return _FAMILIES[cls]
    return None


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module,
                       filter_fn: Optional[Callable] = None) -> Dict[str, torch.Tensor]:
    """Rename/reshape ``state_dict`` into ``model``'s layout with ``filter_fn`` (default: the family's)."""
    family = _family(model)
    filter_fn = filter_fn or (family.filter_fn if family else None)
    return dict(filter_fn(dict(state_dict), model)) if filter_fn else dict(state_dict)


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


def checkpoint_num_classes(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> Optional[int]:
    """Classes of the checkpoint's classifier after the family's key conversion (0: no classifier; None: unknown).

    ``model`` only supplies the family's filter and classifier name: a build on the meta device will do."""
    keys = [name + '.weight' for name in classifier_names(model)]
    if not keys:
        return None
    try:
        converted = convert_state_dict(state_dict, model)
    except Exception:  # the strict load that follows reports what does not fit
        return None
    for key in keys:
        if key in converted:
            return int(converted[key].shape[0])
    return 0


# --- the matcher --------------------------------------------------------------------------------------------------

@dataclass
class LoadReport:
    """What happened to every tensor of a checkpoint matched against a model."""
    model_name: str = ''
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # in the model, not in the checkpoint: kept at init
    unused: List[str] = field(default_factory=list)  # checkpoint layers the model pruned (features_only norm, head)
    unexpected: List[str] = field(default_factory=list)  # fit no layer of the model
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    classifier: str = ''  # 'kept', 'dropped (why)', 'none in the checkpoint', '' (the model has none)
    dropped: List[str] = field(default_factory=list)  # checkpoint classifier keys not loaded (another size)
    state_dict: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # the fitting tensors

    def add(self, prefix: str, part: 'LoadReport') -> None:
        """Fold in the report of a part of the model matched on its own, whose keys are under ``prefix.``."""
        for name in ('loaded', 'missing', 'unused', 'unexpected', 'dropped'):
            getattr(self, name).extend(f'{prefix}.{k}' for k in getattr(part, name))
        self.mismatched += [(f'{prefix}.{k}', a, b) for k, a, b in part.mismatched]

    def summary(self) -> str:
        lines = [f'loaded {len(self.loaded)} tensors']
        for title, keys in (('missing (kept at initialisation)', self.missing),
                            ('unused by the features model (pruned classifier/final norm)', self.unused),
                            ('unexpected (skipped)', self.unexpected)):
            if keys:
                lines.append(f'{len(keys)} {title}: {_join(keys)}')
        if self.mismatched:
            lines.append(f'{len(self.mismatched)} shape mismatch(es) (skipped): '
                         + _join([f'{k} {a} vs {b}' for k, a, b in self.mismatched]))
        if self.classifier:
            lines.append(f'classifier {self.classifier}')
        return '; '.join(lines)


def _join(keys: Sequence[str], limit: int = 12) -> str:
    keys = list(keys)
    return ', '.join(keys[:limit]) + (f', ... (+{len(keys) - limit})' if len(keys) > limit else '')


def _check_values(state_dict: Mapping[str, torch.Tensor], model_sd: Mapping[str, torch.Tensor], source: str,
                  allow_non_finite: bool, non_finite_option: Optional[str]) -> None:
    """Integers where the model has floats are refused; NaN/Inf are refused unless ``allow_non_finite``, with advice
    naming ``non_finite_option`` (what the caller's user passes to allow them; None: nothing to offer)."""
    not_float = [f'{k} ({v.dtype})' for k, v in state_dict.items()
                 if k in model_sd and model_sd[k].is_floating_point() and not v.is_floating_point()]
    if not_float:
        raise CheckpointValueError(
            f'{source} holds non-float tensors where the model has floats: {_join(not_float, 5)}; this is not a '
            f'weights file for this model (or it was saved quantised): pass the float checkpoint')
    if allow_non_finite:
        return
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and v.device.type != 'meta'
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointValueError(
            f'{source} holds NaN/Inf values in {len(bad)} tensor(s): {_join(bad, 5)}; the training run that wrote '
            f'it diverged or the file is corrupt: use an earlier checkpoint'
            + (f', or pass {non_finite_option} to load it anyway' if non_finite_option else ''))


def match_state_dict(
        state_dict: Mapping[str, torch.Tensor],
        model: nn.Module,
        strict: bool = True,
        allow_missing: Iterable[str] = (),
        pruned: Iterable[str] = (),
        classifier: str = 'strict',
        model_name: Optional[str] = None,
        source: str = 'the checkpoint',
        allow_non_finite: bool = False,
        hint: Union[str, Callable] = '',
        non_finite_option: Optional[str] = 'allow_non_finite=True',
) -> LoadReport:
    """Compare a converted ``state_dict`` with ``model``: the one place modzoo decides what loads.

    ``allow_missing``: key prefixes the checkpoint may lack (kept at init), beside the family's new layers.
    ``pruned``: keys of layers the model dropped (features_only): reported unused, not unexpected, like the tensors
    of layers the model holds as ``nn.Identity``.
    ``classifier``: what a classifier of another size (or none) does, one of :data:`CLASSIFIER_POLICIES` (see
    :func:`_fit_classifier`).
    Raises :class:`CheckpointMismatchError` under ``strict`` for unexpected or misfit tensors and missing ones
    outside the allowed layers, and :class:`CheckpointValueError` for non-float or non-finite tensors. ``hint``
    ends the error message (what the caller's user can do); a callable gets ``(state_dict, model)``.
    ``non_finite_option``: what the NaN/Inf refusal tells the user to pass to allow them (a command line's own flag,
    e.g. ``'--allow-non-finite'``; None where the caller offers none).
    """
    if classifier not in CLASSIFIER_POLICIES:
        raise ValueError(f'classifier={classifier!r}: pass one of {", ".join(CLASSIFIER_POLICIES)}')
    name = model_name or _model_name(model)
    model_sd = model.state_dict()
    _check_values(state_dict, model_sd, source, allow_non_finite, non_finite_option)
    family = _family(model)
    optional = set(family.new_layers(state_dict, model) if family and family.new_layers else ())
    heads = tuple(c + '.' for c in classifier_names(model))
    report = LoadReport(model_name=name)
    fit = _fit_classifier(state_dict, model, model_sd, heads, classifier, name) if heads else _ClassifierFit()
    if not strict and classifier == 'strict':  # a misfit classifier is skipped and reported like any misfit
        fit = _ClassifierFit(fit.note)
    report.classifier, report.dropped = fit.note, list(fit.dropped)
    exempt = tuple(c + '.' for c in _cfg_module_names(model, 'first_conv')) if classifier == 'timm' else ()
    exempt += heads if fit.error is not None or classifier == 'timm' else ()
    pruned = set(pruned)
    for key, value in state_dict.items():
        target = model_sd.get(key)
        if key in fit.dropped:
            continue
        if key in fit.unused or (target is None and (key in pruned or _replaced_by_identity(model, key))):
            report.unused.append(key)
        elif target is None:
            report.unexpected.append(key)
        elif tuple(target.shape) != tuple(value.shape) and not (exempt and key.startswith(exempt)):
            report.mismatched.append((key, tuple(value.shape), tuple(target.shape)))
        else:
            report.state_dict[key] = value
    report.loaded = sorted(report.state_dict)
    report.missing = [k for k in model_sd if k not in report.state_dict]
    # new layers cannot be in any checkpoint; BatchNorm's num_batches_tracked is bookkeeping some releases drop
    # (named with the rest when something else is missing)
    allowed = tuple(allow_missing) + (heads if fit.may_lack else ())
    required = [k for k in report.missing if not (k in optional or k.startswith(allowed))]
    if not any(not k.endswith('num_batches_tracked') for k in required):
        required = []
    if required or report.unexpected or report.mismatched:
        advice = family.hint(state_dict, model) if family and family.hint else ''
        hint = hint(state_dict, model) if callable(hint) else hint
        hint = ' '.join(filter(None, [advice or _missing_layer_hint(required, state_dict), hint]))
        if strict:
            raise CheckpointMismatchError(name, required, report.unexpected, report.mismatched, hint)
        _logger.warning('Non-strict load into %s: %s', name, report.summary())
    if fit.error is not None:
        raise fit.error
    return report


def _replaced_by_identity(model: nn.Module, key: str) -> bool:
    """The key's layer is an ``nn.Identity`` in the model: timm's features_only pruning of the final norm (a child
    of the model) or the classifier. (Deeper layers a deploy fusion replaced are no pruning.)"""
    path = key.rpartition('.')[0]
    if '.' in path and path not in classifier_names(model):
        return False
    try:
        return isinstance(model.get_submodule(path), nn.Identity)
    except AttributeError:
        return False


def _missing_layer_hint(required: Sequence[str], state_dict: Mapping[str, torch.Tensor]) -> str:
    """Advice when whole top-level layers are absent (a dense-task backbone has no final norm)."""
    tops = sorted({k.split('.', 1)[0] + '.' for k in required})
    absent = [t for t in tops if not any(k.startswith(t) for k in state_dict)]
    if absent and len(absent) == len(tops):
        return (f'The checkpoint has no {", ".join(absent)} layers (a dense-task backbone has no final norm or '
                f'classifier): pass allow_missing={tuple(absent)!r} to keep their initialisation.')
    return ''


CLASSIFIER_POLICIES = ('strict', 'timm', 'reinit', 'ignore')


@dataclass
class _ClassifierFit:
    note: str = ''  # LoadReport.classifier
    dropped: Tuple[str, ...] = ()  # checkpoint classifier keys not loaded: the model's keep their init
    unused: Tuple[str, ...] = ()  # checkpoint classifier keys the model does not use (features_only)
    may_lack: bool = False  # the model's classifier may stay at its initialisation
    error: Optional[CheckpointMismatchError] = None  # raised after the rest of the model is checked


def _fit_classifier(state_dict: Mapping[str, torch.Tensor], model: nn.Module, model_sd: Mapping[str, torch.Tensor],
                    heads: Tuple[str, ...], policy: str, name: str) -> _ClassifierFit:
    """The one classifier rule. ``policy``:

    * ``'strict'``: the checkpoint's classifier must have the model's size (a misfit names both sizes);
    * ``'timm'``: timm's pretrained loader, which keeps the checkpoint's head only when the model's ``num_classes``
      equals ``pretrained_cfg['num_classes']`` (for a ``pretrained_cfg_overlay`` file, the registered cfg's): a head
      that fits is kept (and the cfg updated); a misfit one timm would load raises; a misfit one timm drops is
      dropped with a warning; a missing one raises unless the cfg says the model starts a new head;
    * ``'reinit'`` (fine-tuning): a misfit or missing classifier keeps its initialisation;
    * ``'ignore'`` (features_only): the checkpoint's classifier is not used, whatever its size.
    """
    keys = [k for k in model_sd if k.startswith(heads)]
    present = [k for k in keys if k in state_dict]
    if policy == 'ignore':
        return _ClassifierFit(unused=tuple(k for k in state_dict if k.startswith(heads)), may_lack=True)
    num_classes = getattr(model, 'num_classes', None)
    cfg = getattr(model, 'pretrained_cfg', None)
    if policy == 'timm' and (not isinstance(cfg, dict) or not num_classes or 'num_classes' not in cfg):
        return _ClassifierFit(may_lack=True)
    timm_keeps = policy == 'timm' and cfg['num_classes'] == num_classes  # timm loads this head as it is
    if not present:
        if timm_keeps:
            return _ClassifierFit(error=CheckpointMismatchError(
                name, missing=keys,
                hint=f'The checkpoint has no classifier: build the model with num_classes=0 for the backbone, or '
                     f'pass pretrained_cfg_overlay=dict(..., num_classes=0) to start a new {num_classes}-class head.'))
        return _ClassifierFit('none in the checkpoint', may_lack=policy != 'strict')
    misfit = tuple(k for k in present if tuple(state_dict[k].shape) != tuple(model_sd[k].shape))
    if not misfit:
        if policy == 'timm' and cfg['num_classes'] != num_classes:
            _logger.info('Keeping the checkpoint classifier: it fits num_classes=%d', num_classes)
            cfg['num_classes'] = num_classes  # the loaded head is what the cfg now describes
        return _ClassifierFit('kept')
    ckpt_classes, model_classes = state_dict[misfit[0]].shape[0], model_sd[misfit[0]].shape[0]
    if policy == 'strict' or timm_keeps:
        return _ClassifierFit(error=_classifier_misfit_error(state_dict, model_sd, misfit, policy, name))
    _logger.warning(
        'The checkpoint classifier (%s) does not fit num_classes=%d: it is not loaded, the classifier keeps its '
        'random init.', ', '.join(f'{k} {tuple(state_dict[k].shape)}' for k in misfit), model_classes)
    return _ClassifierFit(f'dropped ({ckpt_classes} classes in the checkpoint, {model_classes} in the model)',
                          dropped=tuple(k for k in state_dict if k.startswith(heads)), may_lack=True)


def _classifier_misfit_error(state_dict: Mapping[str, torch.Tensor], model_sd: Mapping[str, torch.Tensor],
                             misfit: Sequence[str], policy: str, name: str) -> CheckpointMismatchError:
    """One line naming both classifier sizes, each misfit tensor and the two ways out."""
    shapes = [(k, tuple(state_dict[k].shape), tuple(model_sd[k].shape)) for k in misfit]
    ckpt_classes, model_classes = shapes[0][1][0], shapes[0][2][0]
    new_head = (f'pretrained_cfg_overlay=dict(..., num_classes={ckpt_classes})' if policy == 'timm'
                else "classifier='reinit'")
    error = CheckpointMismatchError(name, hint=(
        f'the checkpoint has a {ckpt_classes}-class classifier ({"; ".join(f"{k}: {a} vs {b}" for k, a, b in shapes)})'
        f' but the model has {model_classes} classes: build with num_classes={ckpt_classes} to use it, or pass '
        f'{new_head} to start a new {model_classes}-class head'))
    error.mismatched = shapes
    return error


# --- model records ------------------------------------------------------------------------------------------------

# constructor kwargs that never change which weights fit (rates, build switches)
_NEUTRAL_KWARGS = frozenset({
    'num_classes', 'drop_rate', 'drop_path_rate', 'proj_drop_rate', 'attn_drop_rate', 'pos_drop_rate',
    'pretrained_cfg', 'pretrained_cfg_overlay', 'features_only', 'out_indices', 'feature_cfg', 'exportable',
    'scriptable', 'no_jit', 'pretrained_strict', 'cache_dir', 'global_pool', 'pretrained_model_args',
    'in_chans'})


def _plain(value: Any) -> Any:
    """JSON-able form of a kwarg value (tuples as lists), for records and comparisons."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


def build_kwargs(model: nn.Module) -> Dict[str, Any]:
    """The constructor kwargs a modzoo model was built with (variant defaults and overrides), ``{}`` if unknown."""
    return dict(getattr(model, 'zoo_build_kwargs', None) or {})


def _default_kwargs(architecture: str) -> Dict[str, Any]:
    from ._registry import create_model
    with torch.device('meta'):
        return build_kwargs(create_model(architecture, pretrained=False))


def model_record(model: nn.Module, tag: Optional[str] = None, source_sha256: Optional[str] = None,
                 architecture: Optional[str] = None) -> Dict[str, Any]:
    """What a written checkpoint says about its model: the registered name, the constructor kwargs that differ from
    the name's defaults, the pretrained tag and the source file's sha256."""
    architecture = architecture or _model_name(model)
    defaults = _default_kwargs(architecture)
    kwargs = {k: _plain(v) for k, v in build_kwargs(model).items()
              if k not in _NEUTRAL_KWARGS and _plain(v) != _plain(defaults.get(k))}
    record = dict(architecture=architecture, kwargs=kwargs)
    if tag:
        record['tag'] = tag
    if source_sha256:
        record['source_sha256'] = source_sha256
    return record


def check_model_record(record: Mapping[str, Any], model: nn.Module, source: str = 'the checkpoint') -> None:
    """Refuse, in one line, a checkpoint whose record names another model or other constructor kwargs."""
    if not record or not record.get('architecture'):
        return
    architecture = _model_name(model)
    if record['architecture'] != architecture:
        raise CheckpointMismatchError(
            architecture, hint=f'{source} was written for {record["architecture"]}: build that model to load it')
    built = build_kwargs(model)
    if not built:
        return
    family = _family(model)
    skip = _NEUTRAL_KWARGS | set(family.adaptable if family else ())
    # a kwarg neither side names is at the constructor's default: a record naming that value is no difference
    constructor = _constructor_defaults(type(model))
    in_file = {**constructor, **_default_kwargs(architecture), **dict(record.get('kwargs') or {})}
    built = {**constructor, **built}
    diffs = [f'{k} {_show(in_file.get(k))} in the file, {_show(built.get(k))} in the model'
             for k in sorted(set(in_file) | set(built)) if k not in skip
             and _plain(in_file.get(k)) != _plain(built.get(k))]
    if diffs:
        raise CheckpointMismatchError(architecture, hint=f'{source} was built differently: ' + '; '.join(diffs))


def _constructor_defaults(model_cls: type) -> Dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(model_cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _same_kind(value: Any, default: Any) -> bool:
    """``value`` could stand where the constructor's ``default`` does (a list of numbers for a list of numbers)."""
    if default is None or isinstance(default, bool):
        return default is None or isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(default, float) or isinstance(value, int))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and all(_same_kind(v, default[0]) for v in value) if default \
            else isinstance(value, (list, tuple))
    return isinstance(value, type(default)) if isinstance(default, (str, Mapping)) else True


def recorded_kwargs(ckpt: Checkpoint, architecture: str, kwargs: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The constructor kwargs a load path builds ``architecture`` with: the user's when they gave any (the load then
    checks them against the record), else the ones the checkpoint's record names, each of the kind the constructor
    takes (a malformed record is refused in one line, never built)."""
    if kwargs or ckpt.record.get('architecture') != architecture:
        return dict(kwargs or {})
    from ._registry import create_model
    with torch.device('meta'):
        model = create_model(architecture, pretrained=False)
    defaults = {**_constructor_defaults(type(model)), **build_kwargs(model)}
    for name, value in (ckpt.record.get('kwargs') or {}).items():
        if name not in defaults:
            raise _bad_record(ckpt.source, f'kwargs names {name}, which {architecture} does not take')
        if not _same_kind(value, defaults[name]):
            raise _bad_record(ckpt.source, f'kwargs {name} is {_show(value)}, where {architecture} takes a value '
                                           f'like {_show(defaults[name])}')
    return dict(ckpt.record.get('kwargs') or {})


def _show(value: Any) -> str:
    return json.dumps(_plain(value)).replace(', ', ',')


# --- entry points -------------------------------------------------------------------------------------------------

def fit_checkpoint(
        checkpoint: Union[str, os.PathLike, Mapping[str, Any], Checkpoint],
        model: nn.Module,
        strict: bool = True,
        filter_fn: Optional[Callable] = None,
        prefix: Optional[str] = None,
        trusted: bool = False,
        allow_missing: Iterable[str] = (),
        pruned: Iterable[str] = (),
        allow_non_finite: bool = False,
        classifier: str = 'strict',
        record: Optional[Mapping[str, Any]] = None,
        model_name: Optional[str] = None,
        hint: Union[str, Callable] = '',
        non_finite_option: Optional[str] = 'allow_non_finite=True',
) -> LoadReport:
    """Read, check, convert and match ``checkpoint`` for ``model`` without loading it: the one way in, every load
    in modzoo goes through it. ``report.state_dict`` holds the tensors that fit.

    ``checkpoint``: a path or dict (read by :func:`open_checkpoint` with ``prefix`` and ``trusted``), or a
    :class:`Checkpoint` read already. Under ``strict`` its model record (or ``record``, for a dict whose file
    recorded one) must match ``model`` (:func:`check_model_record`). ``filter_fn`` defaults to the family's.
    ``classifier``: the policy for a classifier of another size, one of :data:`CLASSIFIER_POLICIES`; the other
    options (``non_finite_option`` included) are :func:`match_state_dict`'s.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else open_checkpoint(
        checkpoint, trusted=trusted, prefix=prefix)
    name = model_name or _model_name(model)
    if strict:
        check_model_record(ckpt.record or record or {}, model, ckpt.source)
    try:
        converted = convert_state_dict(ckpt.state_dict, model, filter_fn)
    except ValueError:  # a filter's own refusal (e.g. more focal levels than the model): its message says why
        raise
    except Exception as e:  # a filter meeting keys of another layout fails in its own way
        raise CheckpointMismatchError(
            name, hint=f'{ckpt.source} is not a checkpoint of this model: converting it failed ({type(e).__name__}: '
                       f'{e}); pass a checkpoint of {name}') from None
    return match_state_dict(converted, model, strict=strict, allow_missing=allow_missing, pruned=pruned,
                            classifier=classifier, model_name=name, source=ckpt.source,
                            allow_non_finite=allow_non_finite, hint=hint, non_finite_option=non_finite_option)


def load_checkpoint(
        model: nn.Module,
        checkpoint: Union[str, os.PathLike, Mapping[str, Any], Checkpoint],
        filter_fn: Optional[Callable] = None,
        strict: bool = True,
        trusted: bool = False,
        prefix: Optional[str] = None,
        allow_missing: Iterable[str] = (),
        allow_non_finite: bool = False,
        **options,
) -> nn.Module:
    """Load a checkpoint (path, dict or :class:`Checkpoint`; any container, official or modzoo layout) into
    ``model`` through :func:`fit_checkpoint`, which takes the other ``options`` (``pruned``, ``classifier``,
    ``record``, ``model_name``, ``hint``, ``non_finite_option``).

    ``filter_fn`` defaults to the family's ``checkpoint_filter_fn``. Every key must fit under ``strict``, the
    classifier and first conv included; with ``strict=False`` a mismatch is logged and the fitting tensors load.
    The load report is left on ``model.load_report``.
    """
    report = fit_checkpoint(checkpoint, model, strict=strict, filter_fn=filter_fn, prefix=prefix, trusted=trusted,
                            allow_missing=allow_missing, allow_non_finite=allow_non_finite, **options)
    model.load_state_dict(report.state_dict, strict=False)
    report.state_dict = {}
    model.load_report = report
    return model
