"""Top-1/top-5 accuracy and throughput of a model + checkpoint on an ImageFolder (``tools/validate.py``).

The evaluation transform is the model's own (``pretrained_cfg``: input size, interpolation, crop_pct, mean/std).
For a checkpoint written by ``tools/train.py`` the run's data config and class list are used instead (a model
trained at 32x32 with its own normalisation is evaluated the way it was validated during training); explicit options
override both.
"""
import argparse
import json
import logging
import os
import sys
import time
from typing import Any, Dict, Optional, Sequence

import torch

from modzoo.utils.cli import (
    OneLineArgumentParser, UsageError, check_distinct_paths, check_input_file, check_output_file,
)
from modzoo.utils.files import atomic_write

from .config import ConfigError
from .data import DatasetNotFoundError, ResumableShardSampler, build_dataset, build_loader, build_transforms, \
    resolve_model_data_config
from .distributed import DistContext, resolve_device
from .engine import evaluate

_logger = logging.getLogger('modzoo.validate')

__all__ = ['build_validate_parser', 'load_model_for_inference', 'run_validation', 'main', 'read_weights']


def build_validate_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(description='Validate a classification model on an ImageFolder split.',
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--model', required=True)
    p.add_argument('--checkpoint', default=None, help='weights (training checkpoint, official or timm file)')
    p.add_argument('--pretrained', action='store_true', help='the model\'s registered weights')
    p.add_argument('--no-ema', action='store_true', help='use the raw weights even if the file has EMA weights')
    p.add_argument('--model-kwargs', nargs='*', default=None, metavar='KEY=VALUE')
    p.add_argument('--allow-non-finite', action='store_true',
                   help='evaluate a checkpoint holding NaN/Inf values instead of refusing it')
    p.add_argument('--data-dir', required=True, help='dataset root (with a val/ folder) or the split folder itself')
    p.add_argument('--dataset', default='', help="'' = ImageFolder; else a timm dataset name")
    p.add_argument('--split', default='val')
    p.add_argument('--num-classes', type=int, default=None, help='default: from the checkpoint\'s classifier')
    p.add_argument('-b', '--batch-size', type=int, default=64)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--img-size', type=int, default=None)
    p.add_argument('--input-size', type=int, nargs=3, default=None, metavar=('C', 'H', 'W'))
    p.add_argument('--crop-pct', type=float, default=None)
    p.add_argument('--interpolation', default=None)
    p.add_argument('--mean', type=float, nargs='+', default=None)
    p.add_argument('--std', type=float, nargs='+', default=None)
    p.add_argument('--amp', action='store_true')
    p.add_argument('--amp-dtype', default='bfloat16', choices=('bfloat16', 'float16'))
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--device', default='auto')
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--results-file', default=None, help='also write the results as JSON')
    return p


def read_weights(path: str, prefer_ema: bool = True):
    """(:class:`~modzoo.models.Checkpoint`: tensors and model record, training metadata or {}) from any supported
    checkpoint file."""
    from modzoo.models import open_checkpoint
    from modzoo.models import CheckpointFileError, load_torch_file
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path!r}')
    meta: Dict[str, Any] = {}
    if path.endswith('.safetensors'):
        return open_checkpoint(path), meta
    obj = load_torch_file(path)  # damaged or pickle-holding files raise CheckpointFileError saying which
    if isinstance(obj, dict) and str(obj.get('format', '')).startswith('modzoo.train/'):
        meta = {k: obj.get(k) for k in ('model_name', 'num_classes', 'model_kwargs', 'class_to_idx', 'data_config',
                                         'epoch', 'best')}
        meta['weights'] = 'ema' if prefer_ema and 'state_dict_ema' in obj else 'model'
    try:
        return open_checkpoint(obj, prefer_ema=prefer_ema)._replace(source=path), meta
    except CheckpointFileError:
        raise CheckpointFileError(f'{path} holds no state dict (names -> tensors) but a {type(obj).__name__}: pass '
                                  f'the model\'s weights file') from None


def _classifier_classes(model_name: str, state_dict: Dict[str, torch.Tensor], kwargs) -> Optional[int]:
    """The checkpoint's class count, read after the family's key conversion (official layouts name the head
    differently); None when it has no classifier or the count cannot be told."""
    import modzoo
    from modzoo.models import checkpoint_num_classes
    with torch.device('meta'):
        probe = modzoo.create_model(model_name, **kwargs)
    return checkpoint_num_classes(probe, state_dict) or None


def load_model_for_inference(
        model_name: str,
        checkpoint: Optional[str] = None,
        pretrained: bool = False,
        model_kwargs: Optional[Dict[str, Any]] = None,
        num_classes: Optional[int] = None,
        prefer_ema: bool = True,
        overrides: Optional[Dict[str, Any]] = None,
        allow_non_finite: bool = False,
        non_finite_option: Optional[str] = None,
):
    """(model in eval mode, timm data config, checkpoint metadata) for evaluation, export or visualisation.

    ``overrides`` (input_size, img_size, crop_pct, interpolation, mean, std; None = not given) win over a training
    checkpoint's data config, which wins over the model's ``pretrained_cfg``. NaN/Inf weights are refused unless
    ``allow_non_finite``; the refusal names ``non_finite_option`` (the caller's flag) when it has one.
    """
    import modzoo
    from .config import parse_model_kwargs
    from .trainer import check_model_name, create_run_model
    check_model_name(model_name)
    kwargs = parse_model_kwargs(model_kwargs)
    if not checkpoint and not pretrained:
        raise ConfigError('no weights: pass --checkpoint FILE or --pretrained')
    ckpt, meta = (None, {})
    if checkpoint:
        from modzoo.models import recorded_kwargs
        ckpt, meta = read_weights(checkpoint, prefer_ema=prefer_ema)
        if meta.get('model_name') and meta['model_name'] != model_name:
            raise ConfigError(f'{checkpoint} was trained as {meta["model_name"]!r}, not {model_name!r}')
        kwargs = recorded_kwargs(ckpt, model_name, kwargs)  # the load refuses kwargs the record contradicts
    num_classes = num_classes or meta.get('num_classes') or (
        _classifier_classes(model_name, ckpt.state_dict, kwargs) if ckpt is not None else None)
    kwargs.pop('num_classes', None)
    model = create_run_model(model_name, num_classes, pretrained=pretrained and ckpt is None, **kwargs)
    if ckpt is not None:
        modzoo.load_checkpoint(model, ckpt, allow_non_finite=allow_non_finite, non_finite_option=non_finite_option)

    o = {k: v for k, v in (overrides or {}).items() if v is not None}
    trained = meta.get('data_config') or {}
    config = {}
    for key in ('crop_pct', 'interpolation', 'mean', 'std', 'crop_mode'):
        if key in o:
            config[key] = tuple(o[key]) if isinstance(o[key], list) else o[key]
        elif trained.get(key) is not None:
            config[key] = tuple(trained[key]) if isinstance(trained[key], list) else trained[key]
    if 'input_size' in o:
        config['input_size'] = tuple(o['input_size'])
    elif 'img_size' in o:
        config['img_size'] = o['img_size']
    elif trained.get('input_size'):
        config['input_size'] = tuple(trained['input_size'])
    data_config = resolve_model_data_config(model, config)
    return model.eval(), data_config, meta


def check_validate_args(args) -> None:
    """Raise :class:`ConfigError` for option values that cannot work, before anything is loaded."""
    for name in ('batch_size', 'img_size', 'num_classes', 'threads'):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f'--{name.replace("_", "-")} {v}: must be a whole number of at least 1')
    if args.workers < 0:
        raise ConfigError(f'--workers {args.workers}: must be a whole number of at least 0')
    if args.input_size is not None and min(args.input_size) < 1:
        raise ConfigError(f'--input-size {" ".join(map(str, args.input_size))}: needs three whole numbers >= 1: C H W')
    if args.crop_pct is not None and not 0 < args.crop_pct <= 1:
        raise ConfigError(f'--crop-pct {args.crop_pct}: must be above 0 and at most 1')
    if args.std is not None and min(args.std) <= 0:
        raise ConfigError('--std values must be above 0')
    interpolations = ('nearest', 'bilinear', 'bicubic', 'box', 'hamming', 'lanczos')
    if args.interpolation is not None and args.interpolation not in interpolations:
        raise ConfigError(f'--interpolation {args.interpolation!r} is not known: choose one of '
                          f'{", ".join(interpolations)}')
    check_input_file(args.checkpoint, '--checkpoint')
    if args.results_file:
        check_output_file(args.results_file, '--results-file')
        check_distinct_paths({'--results-file': args.results_file}, {'--checkpoint': args.checkpoint})


def run_validation(args) -> Dict[str, Any]:
    check_validate_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.amp and args.amp_dtype == 'float16' and device.type != 'cuda':
        raise ConfigError('--amp-dtype float16 needs a CUDA device; use bfloat16 on CPU')
    model, data_config, meta = load_model_for_inference(
        args.model, args.checkpoint, args.pretrained, args.model_kwargs, args.num_classes, not args.no_ema,
        dict(input_size=args.input_size, img_size=args.img_size, crop_pct=args.crop_pct,
             interpolation=args.interpolation, mean=args.mean, std=args.std),
        allow_non_finite=args.allow_non_finite, non_finite_option='--allow-non-finite')
    num_classes = model.num_classes if hasattr(model, 'num_classes') else None
    _, eval_tf = build_transforms(data_config)
    dataset, class_to_idx = build_dataset(args.dataset, args.data_dir, args.split,
                                          class_to_idx=meta.get('class_to_idx'), evaluation=True)
    dataset.transform = eval_tf
    if num_classes and len(class_to_idx) > num_classes:
        raise ConfigError(f'the dataset has {len(class_to_idx)} classes but the model predicts {num_classes}')

    model.to(device).eval()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    sampler = ResumableShardSampler(len(dataset), shuffle=False, pad=False)
    loader = build_loader(dataset, sampler, args.batch_size, args.workers, drop_last=False)
    start = time.perf_counter()
    m = evaluate(DistContext(device=device), model, loader, device, args.amp,
                 torch.bfloat16 if args.amp_dtype == 'bfloat16' else torch.float16, args.channels_last,
                 progress=sys.stderr.isatty(), time_forward=True)
    wall = time.perf_counter() - start
    results = {
        'model': args.model, 'checkpoint': args.checkpoint, 'weights': meta.get('weights', 'checkpoint'),
        'top1': round(m['top1'], 4), 'top5': round(m['top5'], 4), 'loss': round(m['loss'], 6),
        'images': m['samples'], 'unreadable_skipped': m['skipped'], 'classes': len(class_to_idx),
        'model_img_per_s': round(m['samples'] / max(m['forward_s'], 1e-9), 1),
        'end_to_end_img_per_s': round(m['samples'] / max(wall, 1e-9), 1),
        'batch_size': args.batch_size, 'device': str(device), 'threads': torch.get_num_threads(),
        'input_size': list(data_config['input_size']), 'crop_pct': data_config['crop_pct'],
        'interpolation': data_config['interpolation'],
    }
    return results


def format_results(r: Dict[str, Any]) -> str:
    return (f'{r["model"]}: top1 {r["top1"]:.2f}  top5 {r["top5"]:.2f}  loss {r["loss"]:.4f}  on {r["images"]} images'
            + (f' ({r["unreadable_skipped"]} unreadable skipped)' if r.get('unreadable_skipped') else '')
            + f' ({r["classes"]} classes, input {r["input_size"][1]}x{r["input_size"][2]}, crop_pct {r["crop_pct"]}, '
            f'{r["interpolation"]})\nthroughput: {r["model_img_per_s"]:.0f} img/s model forward, '
            f'{r["end_to_end_img_per_s"]:.0f} img/s with data loading (batch {r["batch_size"]}, {r["device"]}, '
            f'{r["threads"]} thread(s))')


def main(argv: Optional[Sequence[str]] = None) -> int:
    from modzoo.models import CheckpointMismatchError, UnknownModelError
    from modzoo.models import CheckpointFileError
    args = build_validate_parser().parse_args(argv)
    try:
        results = run_validation(args)
    except (UsageError, DatasetNotFoundError, UnknownModelError, CheckpointMismatchError, CheckpointFileError,
            FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted; nothing was written (validation keeps no partial state: run it again)',
              file=sys.stderr)
        return 130
    print(format_results(results))
    if args.results_file:
        with atomic_write(args.results_file, 'w') as f:
            json.dump(results, f, indent=1)
    return 0
