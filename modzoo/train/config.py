"""Recipe files (YAML) and command-line options of ``tools/train.py``.

A recipe is a YAML mapping whose keys are the trainer's option names (``--warmup-epochs`` -> ``warmup_epochs``);
it sets defaults that the command line overrides, as in timm's ``train.py --config``. Three keys are metadata and
never options: ``source`` (where the numbers come from), ``notes``, and ``must_set``: options the sources do not give
(or that are per-run, such as the starting checkpoint of a fine-tune), which the trainer refuses to run without, so no
invented value stands in for a missing one. Unknown keys are an error (a typo must not silently fall back to a
default).
"""
import argparse
import difflib
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from modzoo.utils.cli import OneLineArgumentParser, UsageError
from modzoo.utils.cli import parse_model_kwargs as _parse_kwargs

__all__ = ['ConfigError', 'METADATA_KEYS', 'build_train_parser', 'parse_train_args', 'load_recipe',
           'parse_model_kwargs', 'resolve_lr', 'plain_args']

METADATA_KEYS = ('source', 'notes', 'must_set')


class ConfigError(UsageError):
    """An invalid recipe file or option combination."""


_UNSET = object()  # default of a recipe's must_set options: detects that the command line did not give them


def _float_or_none(v: str) -> Optional[float]:
    return None if str(v).lower() in ('none', 'null', '') else float(v)


def _str_or_none(v: str) -> Optional[str]:
    return None if str(v).lower() in ('none', 'null', '') else v


def build_train_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        description='Train a modzoo (or any timm) classification model; single process or torchrun DDP.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('-c', '--config', default=None, help='recipe YAML (configs/imagenet/...); the command line wins')
    _add_data_options(p)
    _add_augmentation_options(p)
    _add_model_options(p)
    _add_optimiser_options(p)
    _add_ema_and_distillation_options(p)
    _add_runtime_options(p)
    return p


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('data')
    g.add_argument('--data-dir', default=None, help='dataset root: ImageFolder layout <root>/{train,val}/<class>/*')
    g.add_argument('--dataset', default='', help="'' = ImageFolder; else a timm dataset name, e.g. torch/cifar10")
    g.add_argument('--train-split', default='train')
    g.add_argument('--val-split', default='val', help="validation split; 'none' trains without evaluation")
    g.add_argument('--dataset-download', action='store_true', help='let the timm dataset factory download')
    g.add_argument('--class-map', default=None,
                   help='class order: a .txt with one folder name per line (default: sorted folder names)')
    g.add_argument('--workers', type=int, default=4, help='data-loader processes per training process')
    g.add_argument('--pin-mem', action='store_true')
    g.add_argument('--img-size', type=int, default=None, help='square input size (default: the model\'s)')
    g.add_argument('--input-size', type=int, nargs=3, default=None, metavar=('C', 'H', 'W'))
    g.add_argument('--crop-pct', type=float, default=None, help='eval centre-crop fraction (default: the model\'s)')
    g.add_argument('--interpolation', default=None, help='eval interpolation (default: the model\'s)')
    g.add_argument('--mean', type=float, nargs='+', default=None)
    g.add_argument('--std', type=float, nargs='+', default=None)


def _add_augmentation_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('augmentation and regularisation')
    g.add_argument('--scale', type=float, nargs=2, default=(0.08, 1.0), help='RandomResizedCrop area range')
    g.add_argument('--ratio', type=float, nargs=2, default=(3. / 4., 4. / 3.), help='RandomResizedCrop aspect range')
    g.add_argument('--hflip', type=float, default=0.5)
    g.add_argument('--vflip', type=float, default=0.0)
    g.add_argument('--color-jitter', type=_float_or_none, default=0.4)
    g.add_argument('--aa', type=_str_or_none, default=None, help='RandAugment/AutoAugment, e.g. rand-m9-mstd0.5-inc1')
    g.add_argument('--train-interpolation', default='random')
    g.add_argument('--reprob', type=float, default=0.0, help='random erasing probability')
    g.add_argument('--remode', default='pixel')
    g.add_argument('--recount', type=int, default=1)
    g.add_argument('--mixup', type=float, default=0.0, help='mixup alpha (0 = off)')
    g.add_argument('--cutmix', type=float, default=0.0, help='cutmix alpha (0 = off)')
    g.add_argument('--mixup-prob', type=float, default=1.0)
    g.add_argument('--mixup-switch-prob', type=float, default=0.5)
    g.add_argument('--mixup-mode', default='batch', choices=('batch', 'pair', 'elem'))
    g.add_argument('--smoothing', type=float, default=0.1, help='label smoothing')
    g.add_argument('--drop', type=float, default=None, help='dropout before the classifier')
    g.add_argument('--drop-path', type=float, default=None, help='stochastic depth rate (default: the model\'s)')


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('model')
    g.add_argument('--model', default=None, help='registered name, e.g. zoo_focalnet_tiny_srf')
    g.add_argument('--model-kwargs', nargs='*', default=None, metavar='KEY=VALUE',
                   help='extra constructor arguments, values as Python literals: depths=(1,1,2,1) embed_dim=32')
    g.add_argument('--num-classes', type=int, default=None, help='default: the number of dataset classes')
    g.add_argument('--pretrained', action='store_true', help='start from the model\'s registered weights')
    g.add_argument('--initial-checkpoint', default=None, help='start from these weights (any supported layout)')
    g.add_argument('--grad-checkpointing', action='store_true')
    g.add_argument('--channels-last', action='store_true')


def _add_optimiser_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('optimiser and schedule')
    g.add_argument('--opt', default='adamw')
    g.add_argument('--opt-eps', type=float, default=None)
    g.add_argument('--opt-betas', type=float, nargs=2, default=None)
    g.add_argument('--momentum', type=float, default=0.9, help='for SGD-type optimisers')
    g.add_argument('--weight-decay', type=float, default=0.05)
    g.add_argument('--lr', type=float, default=None, help='absolute learning rate (overrides --lr-base)')
    g.add_argument('--lr-base', type=float, default=5e-4, help='learning rate at --lr-base-size global batch')
    g.add_argument('--lr-base-size', type=int, default=512)
    g.add_argument('--lr-base-scale', default='linear', choices=('linear', 'sqrt'))
    g.add_argument('--sched', default='cosine')
    g.add_argument('--epochs', type=int, default=300)
    g.add_argument('--warmup-epochs', type=float, default=5)
    g.add_argument('--warmup-lr', type=float, default=1e-6)
    g.add_argument('--min-lr', type=float, default=1e-5)
    g.add_argument('--cooldown-epochs', type=int, default=0)
    g.add_argument('--clip-grad', type=_float_or_none, default=None, help='gradient clipping value (None = off)')
    g.add_argument('--clip-mode', default='norm', choices=('norm', 'value', 'agc'))


def _add_ema_and_distillation_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('EMA and distillation')
    g.add_argument('--model-ema', action='store_true', help='keep an exponential moving average of the weights')
    g.add_argument('--model-ema-decay', type=float, default=0.9998)
    g.add_argument('--model-ema-warmup', action='store_true', help='ramp the EMA decay up from 0 (short runs)')
    g.add_argument('--teacher', default=None, help='teacher model for soft distillation, e.g. regnety_160')
    g.add_argument('--teacher-checkpoint', default=None, help='teacher weights file')
    g.add_argument('--teacher-pretrained', action='store_true', help='teacher from its registered (hub) weights')
    g.add_argument('--teacher-kwargs', nargs='*', default=None, metavar='KEY=VALUE')
    g.add_argument('--kd-alpha', type=float, default=0.9, help='weight of the distillation term')
    g.add_argument('--kd-tau', type=float, default=1.0, help='distillation temperature')


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('runtime')
    g.add_argument('-b', '--batch-size', type=int, default=128, help='per process')
    g.add_argument('--validation-batch-size', type=int, default=None)
    g.add_argument('--amp', action='store_true', help='automatic mixed precision')
    g.add_argument('--amp-dtype', default='bfloat16', choices=('bfloat16', 'float16'))
    g.add_argument('--device', default='auto', help="'auto' (CUDA if available), 'cpu', 'cuda'")
    g.add_argument('--threads', type=int, default=None, help='torch intra-op threads per process')
    g.add_argument('--seed', type=int, default=42)
    g.add_argument('--deterministic', action='store_true', help='deterministic kernels (slower on GPU)')
    g.add_argument('--output', default=None,
                   help='run folder; must not hold another run\'s results (default: a new folder '
                        'output/train/<date-time>-<model>-<img size>, or the --resume file\'s folder)')
    g.add_argument('--resume', default=None,
                   help="training checkpoint to continue, or 'auto' for <output>/last.pth (needs --output)")
    g.add_argument('--checkpoint-interval', type=int, default=0,
                   help='also save <output>/last.pth every N optimiser steps (0: at epoch ends only)')
    g.add_argument('--log-interval', type=int, default=50)
    g.add_argument('--progress', default='auto', choices=('auto', 'on', 'off'), help='tqdm bar on rank 0')
    g.add_argument('--tensorboard', default='auto', choices=('auto', 'on', 'off'))


def _dest_names(parser: argparse.ArgumentParser) -> List[str]:
    return [a.dest for a in parser._actions if a.dest not in ('help', 'config')]


def load_recipe(path: str, parser: Optional[argparse.ArgumentParser] = None) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(option defaults, metadata) from a recipe YAML; raises :class:`ConfigError` for unknown keys."""
    import yaml
    if not os.path.isfile(path):
        raise ConfigError(f'recipe file not found: {path!r}')
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        where = f' at line {mark.line + 1}, column {mark.column + 1}' if mark is not None else ''
        problem = getattr(e, 'problem', None) or type(e).__name__
        raise ConfigError(f'{path} is not valid YAML{where} ({problem}): fix the file (a recipe is a mapping of '
                          f'option: value lines)') from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f'cannot read the recipe file {path}: {e}') from None
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: a recipe must be a YAML mapping of option names to values')
    parser = parser or build_train_parser()
    valid = set(_dest_names(parser))
    options, meta = {}, {}
    for key, value in data.items():
        name = str(key).replace('-', '_')
        if name in METADATA_KEYS:
            meta[name] = value
        elif name in valid:
            options[name] = value
        else:
            close = difflib.get_close_matches(name, sorted(valid), n=3)
            raise ConfigError(f'{path}: unknown option {key!r}' + (f' (did you mean {", ".join(close)}?)' if close
                                                                    else ''))
    return options, meta


def parse_train_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('-c', '--config', default=None)
    known, _ = pre.parse_known_args(argv)
    parser = build_train_parser()
    meta: Dict[str, Any] = {}
    must_set: List[str] = []
    if known.config:
        options, meta = load_recipe(known.config, parser)
        must_set = [str(k).replace('-', '_') for k in meta.get('must_set') or []]
        unknown = sorted(set(must_set) - set(_dest_names(parser)))
        if unknown:
            raise ConfigError(f'{known.config}: must_set names unknown options: {", ".join(unknown)}')
        parser.set_defaults(**options)
        parser.set_defaults(**{k: _UNSET for k in must_set})
    args = parser.parse_args(argv)
    missing = [k for k in must_set if getattr(args, k) is _UNSET]
    if missing:
        flags = ', '.join('--' + k.replace('_', '-') for k in missing)
        raise ConfigError(f'{known.config} leaves {flags} to you (not in the sources it cites, or specific to your '
                          f'run); pass {"it" if len(missing) == 1 else "them"} on the command line.'
                          + (f' Notes: {meta["notes"]}' if meta.get('notes') else ''))
    args.recipe_meta = meta
    if not args.model:
        raise ConfigError('no model: pass --model NAME or a --config recipe that names one')
    if not args.data_dir and args.dataset.lower() in ('', 'folder', 'imagefolder'):
        raise ConfigError('no dataset: pass --data-dir ROOT (ImageFolder layout ROOT/train/<class>/*, ROOT/val/...)')
    args.model_kwargs = parse_model_kwargs(args.model_kwargs)
    args.teacher_kwargs = parse_model_kwargs(args.teacher_kwargs, '--teacher-kwargs')
    check_train_args(args)
    if args.val_split and args.val_split.lower() == 'none':
        args.val_split = None
    return args


def _flag(name: str) -> str:
    return '--' + name.replace('_', '-')


SCHEDULERS = ('cosine', 'tanh', 'step', 'constant', 'multistep', 'plateau', 'poly', 'wsd', 'rsqrt')


def _optimizer_names() -> List[str]:
    from timm.optim import list_optimizers
    return list(list_optimizers())


def _check_choice(name: str, value: str, choices: Sequence[str], args: Optional[argparse.Namespace] = None) -> None:
    if value in choices:
        return
    close = difflib.get_close_matches(str(value), list(choices), n=3)
    hint = f'did you mean {", ".join(close)}?' if close else f'choose one of {", ".join(choices)}'
    raise ConfigError(f'{_flag(name)} {value!r} is not known: {hint}')


def check_train_args(args: argparse.Namespace) -> None:
    """Raise :class:`ConfigError` naming the first option whose value cannot work (a zero batch, a negative lr...)."""
    def bad(name: str, need: str):
        raise ConfigError(f'{_flag(name)} {getattr(args, name)}: {need}')

    def is_number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for name in ('batch_size', 'epochs', 'img_size', 'validation_batch_size', 'threads', 'lr_base_size',
                 'log_interval', 'recount', 'num_classes'):
        v = getattr(args, name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            bad(name, 'must be a whole number of at least 1')
    for name in ('workers', 'checkpoint_interval', 'cooldown_epochs'):
        v = getattr(args, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            bad(name, 'must be a whole number of at least 0')
    if args.input_size is not None and (len(args.input_size) != 3 or min(args.input_size) < 1):
        bad('input_size', 'needs three whole numbers of at least 1: C H W')
    positive = ('lr_base', 'warmup_lr', 'min_lr', 'kd_tau', 'crop_pct', 'opt_eps')
    for name in ('lr', 'weight_decay', 'warmup_epochs', 'momentum', 'mixup', 'cutmix', 'clip_grad') + positive:
        v = getattr(args, name)
        if v is None:
            continue
        if not is_number(v) or v < 0:
            bad(name, 'must be a number of at least 0')
        if name == 'lr' and v == 0:
            bad(name, 'must be above 0 (a zero learning rate trains nothing)')
        if name in ('lr_base', 'kd_tau', 'crop_pct', 'opt_eps') and v == 0:
            bad(name, 'must be above 0')
    for name in ('hflip', 'vflip', 'reprob', 'mixup_prob', 'mixup_switch_prob', 'model_ema_decay', 'kd_alpha',
                 'crop_pct'):
        v = getattr(args, name)
        if v is not None and (not is_number(v) or not 0 <= v <= 1):
            bad(name, 'must be between 0 and 1')
    for name in ('smoothing', 'drop', 'drop_path'):
        v = getattr(args, name)
        if v is not None and (not is_number(v) or not 0 <= v < 1):
            bad(name, 'must be at least 0 and below 1')
    for name in ('scale', 'ratio'):
        lo, hi = getattr(args, name)
        if not (is_number(lo) and is_number(hi)) or lo <= 0 or lo > hi or (name == 'scale' and hi > 1):
            bad(name, 'needs two numbers LOW HIGH with 0 < LOW <= HIGH' + (' <= 1' if name == 'scale' else ''))
    channels = args.input_size[0] if args.input_size else int(args.model_kwargs.get('in_chans', 3))
    for name in ('mean', 'std'):
        v = getattr(args, name)
        if v is None:
            continue
        if len(v) not in (1, channels):
            bad(name, f'needs one value or one per input channel ({channels})')
        if name == 'std' and min(v) <= 0:
            bad(name, 'values must be above 0')
    _check_choice('opt', args.opt.lower().split('_')[-1], _optimizer_names())
    _check_choice('sched', args.sched, SCHEDULERS)
    interpolations = ('nearest', 'bilinear', 'bicubic', 'box', 'hamming', 'lanczos')
    _check_choice('train_interpolation', args.train_interpolation, interpolations + ('random',), args)
    if args.interpolation is not None:
        _check_choice('interpolation', args.interpolation, interpolations, args)
    if args.min_lr is not None and args.lr is not None and args.min_lr > args.lr:
        raise ConfigError(f'--min-lr {args.min_lr} is above --lr {args.lr}: the schedule would raise the lr; lower '
                          f'--min-lr')


def parse_model_kwargs(items: Union[None, Dict[str, Any], Sequence[str]], flag: str = '--model-kwargs') \
        -> Dict[str, Any]:
    """``['depths=(1,1,2,1)', 'embed_dim=32']`` (or a dict from a recipe) -> ``{'depths': (1, 1, 2, 1), ...}``."""
    try:
        return _parse_kwargs(items, flag)
    except UsageError as e:
        raise ConfigError(str(e)) from None


def resolve_lr(args: argparse.Namespace, global_batch: int) -> float:
    if args.lr is not None:
        return float(args.lr)
    ratio = global_batch / float(args.lr_base_size)
    if args.lr_base_scale == 'sqrt':
        ratio = ratio ** 0.5
    return float(args.lr_base) * ratio


def plain_args(args: argparse.Namespace) -> Dict[str, Any]:
    """The options as plain Python values (for ``args.yaml`` and for checkpoints loadable with weights_only)."""
    def conv(v):
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return str(v)
    return {k: conv(v) for k, v in vars(args).items()}
