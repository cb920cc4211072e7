"""The mmseg/mmdet train and test command lines (``modzoo-train-seg`` ... ``modzoo-test-det``, and the
``tools/{train,test}_{seg,det}.py`` shims): stock mmseg/mmdet ``tools/train.py`` and ``tools/test.py`` options, plus
``--tiny`` (:func:`modzoo.mm.tiny.apply_tiny`) and ``--launcher pytorch`` on machines without CUDA.

Checkpoints are read under torch's ``weights_only`` default: ``import modzoo.mm`` allow-lists the few non-tensor types
of mmengine checkpoints (:mod:`modzoo.mm.checkpoint_compat`), so ``--resume`` and the test command lines read them as
the stock OpenMMLab tools do.
"""
import argparse
import os
import os.path as osp
import time
from typing import Optional, Sequence

import torch

from .tiny import DEFAULT_TINY_ROOT, apply_tiny, use_batchnorm

__all__ = ['train_main', 'test_main', 'train_seg', 'test_seg', 'train_det', 'test_det']

_SCOPES = ('mmseg', 'mmdet')


def _common_args(parser: argparse.ArgumentParser) -> None:
    from mmengine.config import DictAction
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. model.backbone.drop_path_rate=0.2); applied last')
    parser.add_argument(
        '--tiny', nargs='?', const=DEFAULT_TINY_ROOT, default=None, metavar='ROOT',
        help=f'run on the tiny synthetic datasets under ROOT (default {DEFAULT_TINY_ROOT}; written if missing): '
             'small images, a few iterations, no pretrained download. See modzoo.mm.tiny.apply_tiny')
    parser.add_argument('--tiny-scale', type=int, default=8, metavar='N',
                        help='with --tiny: divide the pipelines\' image scales and crop sizes by N (default 8)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def _load_config(args, scope: str):
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if cfg.get('default_scope', scope) != scope:
        raise ValueError(f'{args.config} is a {cfg.default_scope} config; use the {cfg.default_scope} tool')
    cfg.default_scope = scope
    cfg.launcher = args.launcher
    if args.tiny is not None:
        apply_tiny(cfg, args.tiny, scale_factor=args.tiny_scale)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def _set_local_rank(args) -> None:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)


def _cpu_distributed(cfg) -> None:
    """Make ``--launcher pytorch`` work on machines without CUDA (CI, CPU clusters).

    mmengine 0.10's pytorch launcher always calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[local_rank]``; both fail on the CPU. A gloo process group created here makes the Runner skip its own
    initialisation, and a DDP wrapper with ``device_ids=None`` is the CPU form. SyncBN has no CPU kernel: BN instead.
    """
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    from mmengine.logging import print_log
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.model_wrapper_cfg = dict(
        type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    use_batchnorm(cfg)
    print_log('No CUDA: distributed on the CPU with gloo, DDP without device_ids, BN instead of SyncBN',
              logger='current')


def _build_runner(cfg):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    _cpu_distributed(cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def train_main(scope: str, argv: Optional[Sequence[str]] = None):
    """The command line of mmseg/mmdet's ``tools/train.py`` for ``scope``; returns the Runner after training."""
    assert scope in _SCOPES
    what = 'segmentor' if scope == 'mmseg' else 'detector'
    parser = argparse.ArgumentParser(description=f'Train a {what} ({scope} config)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or (no value) from the latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (AmpOptimWrapper, CUDA)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch size / auto_scale_lr.base_batch_size')
    _common_args(parser)
    args = parser.parse_args(argv)
    _set_local_rank(args)

    cfg = _load_config(args, scope)
    if args.amp and cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    runner = _build_runner(cfg)
    runner.train()
    return runner


def test_main(scope: str, argv: Optional[Sequence[str]] = None):
    """The command line of mmseg/mmdet's ``tools/test.py`` for ``scope``; returns the test metrics."""
    assert scope in _SCOPES
    parser = argparse.ArgumentParser(description=f'Test (and evaluate) a checkpoint ({scope} config)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', help='seg: directory for the predicted label maps; det: .pkl file for the raw predictions')
    parser.add_argument('--show-dir', help='directory where painted predictions are saved')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (the config\'s tta_pipeline)')
    _common_args(parser)
    args = parser.parse_args(argv)
    _set_local_rank(args)

    cfg = _load_config(args, scope)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise RuntimeError('--show-dir needs a visualization hook in default_hooks')
        hook['draw'] = True
        hook['interval'] = 1
        # the visualizer is a named process-wide singleton (mmseg/mmdet name it 'visualizer'): a fresh name makes
        # this run's save_dir count even when runners were built before in the same process
        cfg.visualizer['name'] = f'visualizer_{time.time_ns()}'
        if scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        else:  # mmseg's hook paints through the visualizer's save_dir
            cfg.visualizer['save_dir'] = args.show_dir
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise RuntimeError('--tta needs tta_model and tta_pipeline in the config')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out and scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True

    runner = _build_runner(cfg)
    if args.out and scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('--out must be a .pkl file for detection results')
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    return runner.test()


def train_seg(argv: Optional[Sequence[str]] = None) -> None:
    """``modzoo-train-seg``: train a segmentor from an MMSegmentation 1.x config."""
    train_main('mmseg', argv)


def test_seg(argv: Optional[Sequence[str]] = None) -> None:
    """``modzoo-test-seg``: test and evaluate a segmentor checkpoint (MMSegmentation 1.x config)."""
    test_main('mmseg', argv)


def train_det(argv: Optional[Sequence[str]] = None) -> None:
    """``modzoo-train-det``: train a detector from an MMDetection 3.x config."""
    train_main('mmdet', argv)


def test_det(argv: Optional[Sequence[str]] = None) -> None:
    """``modzoo-test-det``: test and evaluate a detector checkpoint (MMDetection 3.x config)."""
    test_main('mmdet', argv)
