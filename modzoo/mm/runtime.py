"""What ``tools/{train,test}_{seg,det}.py`` share: the mmseg/mmdet command lines, checkpoint loading under torch's
``weights_only`` default, and the ``--tiny`` overrides that run any config on the tiny synthetic datasets.

Checkpoints: ``import modzoo.mm`` allow-lists the few non-tensor types of mmengine checkpoints for
``torch.load(weights_only=True)`` (:mod:`modzoo.mm.checkpoint_compat`), so ``--resume`` and the test tools read them
as the stock OpenMMLab tools do; :func:`mmengine_checkpoint_globals` remains for code that runs before that import.
"""
import argparse
import os
import os.path as osp
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

from .checkpoint_compat import mmengine_checkpoint_globals

__all__ = [
    'mmengine_checkpoint_globals', 'use_batchnorm', 'fewer_boxes', 'apply_tiny', 'TINY_DATASETS', 'train_main',
    'test_main',
    'DEFAULT_TINY_ROOT',
]

DEFAULT_TINY_ROOT = osp.join('data', 'tiny')
_SCOPES = ('mmseg', 'mmdet')


# ----------------------------------------------------------------------------------------------------------------------
# config rewrites
# ----------------------------------------------------------------------------------------------------------------------

def _walk(node: Any, fn: Callable[[Any], None]) -> None:
    """Call ``fn`` on every dict (mmengine ConfigDict included) nested anywhere in ``node``."""
    if isinstance(node, Mapping):
        fn(node)
        for value in list(node.values()):
            _walk(value, fn)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _walk(value, fn)


def use_batchnorm(cfg) -> None:
    """Replace SyncBN by BN everywhere in ``cfg`` (single-process runs and model builds outside the Runner).

    The configs keep the papers' SyncBN for multi-GPU training; mmengine's Runner reverts it on its own when not
    distributed, but a model built directly with ``MODELS.build`` cannot run SyncBN without a process group.
    """

    def fix(d):
        if d.get('type') in ('SyncBN', 'MMSyncBN'):
            d['type'] = 'BN'

    _walk(cfg._cfg_dict if hasattr(cfg, '_cfg_dict') else cfg, fix)


def fewer_boxes(train_or_test_cfg) -> None:
    """Cap a detector's proposals/detections (20 per image) and sampled RoIs (64), in place.

    RoI heads on the default 1000 proposals dominate the CPU time of tiny runs; the caps keep every head in use.
    """

    def cap(d):
        for key, limit in (('nms_pre', 100), ('max_per_img', 20), ('num', 64)):
            if isinstance(d.get(key), int) and (key != 'num' or 'Sampler' in str(d.get('type', ''))):
                d[key] = min(d[key], limit)

    _walk(train_or_test_cfg, cap)


# tiny dataset per dataset type: (WRITERS key, data_root below the tiny root)
TINY_DATASETS: Dict[str, tuple] = {
    'ADE20KDataset': ('ade20k', osp.join('ade', 'ADEChallengeData2016')),
    'CocoDataset': ('coco', 'coco' + os.sep),
    'SynapseDataset': ('synapse', 'synapse' + os.sep),
}
_SCALE_KEYS = ('scale', 'scales', 'crop_size', 'img_scale')


def _scaled(value: Any, factor: int) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(16, int(round(value / factor)))
    if isinstance(value, (list, tuple)):
        return type(value)(_scaled(v, factor) for v in value)
    return value


def _base_dataset(dataset_cfg: Mapping) -> Mapping:
    while 'dataset' in dataset_cfg and 'data_root' not in dataset_cfg:  # RepeatDataset / ClassBalancedDataset
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def apply_tiny(
        cfg,
        root: str = DEFAULT_TINY_ROOT,
        writers: Optional[Mapping[str, Callable[..., str]]] = None,
        iters: int = 4,
        scale_factor: int = 8,
) -> None:
    """Rewrite ``cfg`` in place to train/evaluate for a few iterations on the tiny synthetic datasets.

    * data roots (and evaluator annotation files) point at ``root``'s copy of the config's dataset, written with
      ``writers`` (``tools/make_tiny_datasets.WRITERS``) when it is missing;
    * every resize scale / crop size in the pipelines and the data preprocessor shrinks by ``scale_factor`` (512 crops
      become 64), keeping the pipelines' structure (multi-scale choices, crops) intact;
    * ``iters`` training iterations (iteration loops) or ``iters // 2`` epochs of 2 batches (epoch loops), evaluation
      and a checkpoint every half of that, batch 2, no worker processes, BN instead of SyncBN;
    * no pretrained download (``init_cfg`` dropped), and detectors keep boxes of any score (``score_thr=0``) so an
      untrained model still gives the COCO evaluator something to score, but at most 20 per image (proposals and
      detections) and 64 sampled RoIs, since RoI heads dominate the CPU time.
    """
    train_ds = _base_dataset(cfg.train_dataloader.dataset)
    dataset_type = train_ds.get('type')
    if dataset_type not in TINY_DATASETS:
        raise ValueError(f'No tiny dataset for {dataset_type}; known: {sorted(TINY_DATASETS)}')
    writer_key, sub_root = TINY_DATASETS[dataset_type]
    new_root = osp.join(root, sub_root)
    if not osp.isdir(new_root.rstrip(os.sep)):
        if writers is None:
            raise FileNotFoundError(f'{new_root} does not exist; run tools/make_tiny_datasets.py --root {root}')
        writers[writer_key](root)
    old_root = train_ds['data_root']

    def reroot(d):
        for key, value in d.items():
            if isinstance(value, str) and value.startswith(old_root):
                d[key] = new_root + value[len(old_root):]

    def shrink(d):
        if 'type' in d:  # a transform
            for key in _SCALE_KEYS:
                if key in d:
                    d[key] = _scaled(d[key], scale_factor)

    def use_tiny_loader(loader, batch_size):
        loader['batch_size'] = batch_size
        loader['num_workers'] = 0
        loader['persistent_workers'] = False

    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(name) is not None:
            _walk(cfg[name], reroot)
            _walk(cfg[name].dataset, shrink)
            use_tiny_loader(cfg[name], 2 if name == 'train_dataloader' else 1)
    for name in ('val_evaluator', 'test_evaluator', 'train_pipeline', 'test_pipeline', 'tta_pipeline'):
        if cfg.get(name) is not None:
            _walk(cfg[name], reroot)
            if name.endswith('pipeline'):
                _walk(cfg[name], shrink)
    preprocessor = cfg.model.get('data_preprocessor') or {}
    if preprocessor.get('size') is not None:
        preprocessor['size'] = _scaled(preprocessor['size'], scale_factor)
    test_cfg = cfg.model.get('test_cfg') or {}
    for key in ('crop_size', 'stride'):
        if test_cfg.get(key) is not None:
            test_cfg[key] = _scaled(test_cfg[key], scale_factor)

    use_batchnorm(cfg)
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    _walk(cfg.model, lambda d: d.pop('init_cfg', None) if d.get('type') == 'ModzooBackbone' else None)
    _walk(cfg.model.get('test_cfg') or {}, lambda d: d.__setitem__('score_thr', 0.0) if 'score_thr' in d else None)
    for name in ('train_cfg', 'test_cfg'):
        fewer_boxes(cfg.model.get(name) or {})

    loop = cfg.train_cfg.get('type', '')
    half = max(1, iters // 2)
    if 'Epoch' in loop or 'max_epochs' in cfg.train_cfg:
        cfg.train_cfg.max_epochs = half  # 4 train images at batch 2: 2 iterations per epoch
        cfg.train_cfg.val_interval = 1
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, by_epoch=True)
    else:
        cfg.train_cfg.max_iters = iters
        cfg.train_cfg.val_interval = half
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=half, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1, log_metric_by_epoch='Epoch' in loop)
    cfg.env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                       dist_cfg=dict(backend='gloo'))


# ----------------------------------------------------------------------------------------------------------------------
# command lines
# ----------------------------------------------------------------------------------------------------------------------

def _common_args(parser: argparse.ArgumentParser) -> None:
    from mmengine.config import DictAction
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. model.backbone.drop_path_rate=0.2); applied last')
    parser.add_argument(
        '--tiny', nargs='?', const=DEFAULT_TINY_ROOT, default=None, metavar='ROOT',
        help=f'run on the tiny synthetic datasets under ROOT (default {DEFAULT_TINY_ROOT}; written if missing): '
             'small images, a few iterations, no pretrained download. See modzoo.mm.runtime.apply_tiny')
    parser.add_argument('--tiny-scale', type=int, default=8, metavar='N',
                        help='with --tiny: divide the pipelines\' image scales and crop sizes by N (default 8)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def _load_config(args, scope: str, tiny_writers):
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if cfg.get('default_scope', scope) != scope:
        raise ValueError(f'{args.config} is a {cfg.default_scope} config; use the {cfg.default_scope} tool')
    cfg.default_scope = scope
    cfg.launcher = args.launcher
    if args.tiny is not None:
        apply_tiny(cfg, args.tiny, tiny_writers, scale_factor=args.tiny_scale)
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


def train_main(scope: str, argv: Optional[Sequence[str]] = None, tiny_writers=None):
    """``tools/train_{seg,det}.py``: the command line of mmseg/mmdet's ``tools/train.py``."""
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

    cfg = _load_config(args, scope, tiny_writers)
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


def test_main(scope: str, argv: Optional[Sequence[str]] = None, tiny_writers=None):
    """``tools/test_{seg,det}.py``: the command line of mmseg/mmdet's ``tools/test.py``."""
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

    cfg = _load_config(args, scope, tiny_writers)
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
