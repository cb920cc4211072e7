"""The training driver behind ``tools/train.py``.

    python tools/train.py --config configs/imagenet/focalnet/tiny_srf.yaml --data-dir /data/imagenet
    torchrun --nproc_per_node 8 tools/train.py --config ... --data-dir ... --resume auto

Run folder (rank 0 writes, other ranks never do): ``args.yaml``, ``log.csv`` (one row per epoch), ``last.pth``
(every epoch end and every ``--checkpoint-interval`` steps), ``best.pth`` (best validation top-1; EMA top-1 when
``--model-ema``) and TensorBoard events when tensorboard is installed.

No run destroys another: without ``--output`` each new run gets its own folder,
``output/train/<YYYYmmdd-HHMMSS>-<model>-<img size>`` (timm's naming); ``--resume FILE`` continues in the file's
folder. A new run into a folder that holds an earlier run's results (``last.pth``, ``best.pth``, ``log.csv``) is
refused, naming ``--resume`` and a new ``--output`` as the ways on; so is resuming a checkpoint older than the
folder's newest results (a copied snapshot, ``best.pth``), naming ``last.pth`` and a new ``--output``. While a run
trains it holds a lock on its folder, so a second run cannot write there at the same time.

Resuming with another schedule (``--epochs``, ``--lr``, batch size, warmup, ...) continues on the new schedule: the
learning rate at the resumed step is what a run started with the new options would have there, and the log says
which options changed. ``--epochs`` below the epochs already trained is refused.
"""
import errno
import functools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from modzoo.models import RECORD_KEY, model_record
from modzoo.utils.cli import UsageError, check_distinct_paths, check_input_file, model_kwargs_error
from modzoo.utils.files import atomic_write

from .checkpoint import (
    CHECKPOINT_FORMAT, ResumeError, atomic_save, check_resume_compatible, read_training_checkpoint,
    remove_stale_temporaries,
)
from .config import ConfigError, parse_train_args, plain_args, resolve_lr
from .data import (
    DatasetNotFoundError, ResumableShardSampler, SeededDataset, build_dataset, build_loader, build_transforms,
    resolve_model_data_config,
)
from .distributed import DistContext, init_distributed
from .engine import EpochMeters, NonFiniteLossError, StepContext, evaluate, train_one_epoch
from .logs import CsvLog, open_tensorboard
from .loss import build_criterion
from .run_folder import RESULT_FILES, lock_run_folder, refuse_older_resume, resolve_run_folder
from .seeding import capture_rng_state, restore_rng_state, seed_all

_logger = logging.getLogger('modzoo.train')

__all__ = ['main', 'train', 'USER_ERRORS', 'check_model_name', 'load_initial_weights', 'create_run_model',
           'check_pretrained_available', 'RunWriteError', 'TrainingInterrupted', 'EXIT_INTERRUPTED']

CSV_FIELDS = ['epoch', 'step', 'lr', 'train_loss', 'eval_loss', 'eval_top1', 'eval_top5', 'ema_eval_loss',
              'ema_top1', 'ema_top5', 'epoch_seconds', 'train_samples_per_s']


SCHEDULE_OPTIONS = ('epochs', 'sched', 'lr', 'lr_base', 'lr_base_size', 'lr_base_scale', 'warmup_epochs',
                    'warmup_lr', 'min_lr', 'cooldown_epochs', 'batch_size')


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``str()`` says how the run continues."""

    def __init__(self, output: Optional[str]):
        last = os.path.join(output, 'last.pth') if output else None
        if last and os.path.isfile(last):
            text = (f'interrupted; the run continues from {last} with the same command plus --resume auto --output '
                    f'{output}')
        else:
            text = 'interrupted before the first checkpoint; nothing to resume, start the run again'
        super().__init__(text)


class RunWriteError(OSError):
    """A checkpoint or log of the run could not be written (a full disk, a vanished folder); says how to go on."""


def _write_error(path: str, error: BaseException, output: str) -> RunWriteError:
    reason = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else str(error).splitlines()[0]
    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC))
    hint = 'free space on that disk' if full else 'check the disk (full?) and the folder'
    return RunWriteError(f'cannot write {path} ({reason}): {hint}, then {_how_to_go_on(output)}')


def _how_to_go_on(output: str) -> str:
    """The way on after a failed write, naming only checkpoints that exist in the run folder."""
    last, best = os.path.join(output, 'last.pth'), os.path.join(output, 'best.pth')
    if os.path.isfile(last):
        return 'continue with --resume auto; last.pth keeps the last complete checkpoint'
    if os.path.isfile(best):  # the first epoch's best.pth was written, its last.pth was not
        return f'continue from the only checkpoint written with --resume {best}'
    if any(os.path.exists(os.path.join(output, f)) for f in RESULT_FILES):
        return ('start the run again with another --output (or none, for a new dated folder): no checkpoint was '
                'written yet, so there is nothing to resume')
    return 'start the run again: no checkpoint was written yet, so there is nothing to resume'


def _user_errors():
    from modzoo.models import CheckpointMismatchError, UnknownModelError
    from modzoo.models import CheckpointFileError
    return (UsageError, DatasetNotFoundError, UnknownModelError, ResumeError, CheckpointMismatchError,
            CheckpointFileError, NonFiniteLossError, RunWriteError)


USER_ERRORS = _user_errors()


def setup_logging(ctx: DistContext) -> None:
    level = logging.INFO if ctx.is_primary else logging.WARNING
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        prefix = f'[rank {ctx.rank}] ' if ctx.distributed else ''
        handler.setFormatter(logging.Formatter(prefix + '%(asctime)s %(message)s', '%H:%M:%S'))
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger('modzoo').setLevel(level)


def check_model_name(name: str) -> None:
    """Fail fast (before scanning a dataset) on an unknown model name, with modzoo's name suggestions."""
    from timm.models import is_model
    if not is_model(name.split('.')[0]):
        import modzoo
        modzoo.create_model(name)  # raises UnknownModelError listing the closest registered names


def create_run_model(name: str, num_classes: int, pretrained: bool = False, flag: str = '--model-kwargs',
                     **kwargs) -> nn.Module:
    import modzoo
    if pretrained:
        check_pretrained_available(name)
    try:
        return modzoo.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except TypeError as e:
        error = model_kwargs_error(name, e, flag)
        if error is None:
            raise
        raise error from None
    except (OSError, RuntimeError) as e:  # the hub or URL cannot be reached (offline), or refused the file
        if not pretrained:
            raise
        raise UsageError(f'--pretrained: cannot download the weights of {name} ({type(e).__name__}: '
                         f'{str(e).splitlines()[0] if str(e) else "no detail"}); get the file where there is a '
                         f'network, then ' + _GET_WEIGHTS.format(name=name)) from None


_GET_WEIGHTS = ('run python tools/get_checkpoint.py {name} --file FILE and pass the file it writes (checkpoints/...) '
                'with --initial-checkpoint (train) or --checkpoint (validate)')


def check_pretrained_available(name: str) -> None:
    """UsageError when ``name`` (``arch`` or ``arch.tag``) has no downloadable weights registered (timm would only
    warn and go on with random weights)."""
    from timm.models import get_pretrained_cfg
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:
        cfg = None
    if cfg is None or not (cfg.url or cfg.hf_hub_id or cfg.file or cfg.state_dict):
        tag = name if '.' in name else f'{name} (tag {getattr(cfg, "tag", None) or "default"})'
        raise UsageError(f'--pretrained: {tag} has no downloadable weights registered; if you have the official '
                         f'file, ' + _GET_WEIGHTS.format(name=name))


def _weights_origin(args, model: nn.Module, ckpt: Optional[Dict[str, Any]]) -> Dict[str, Optional[str]]:
    """The pretrained tag and source sha256 a run's checkpoints record: where its starting weights came from
    (a resumed run keeps its checkpoint's)."""
    if ckpt is not None:
        record = ckpt.get(RECORD_KEY) or {}
        return dict(tag=record.get('tag'), source_sha256=record.get('source_sha256'))
    if args.initial_checkpoint:
        from modzoo.hub import sha256_of
        return dict(tag=None, source_sha256=sha256_of(args.initial_checkpoint))
    if args.pretrained:
        return dict(tag=(getattr(model, 'pretrained_cfg', None) or {}).get('tag'), source_sha256=None)
    return dict(tag=None, source_sha256=None)


def load_initial_weights(model: nn.Module, path: str) -> List[str]:
    """Load weights for a new run (fine-tuning): strict, except a classifier whose size differs (or that the file
    lacks) is left as initialised. Returns the skipped classifier keys. Any other mismatch raises
    ``CheckpointMismatchError``."""
    from modzoo.models import load_checkpoint
    return load_checkpoint(model, path, classifier='reinit', non_finite_option=None).load_report.dropped


def _build_teacher(args, num_classes: int, device: torch.device) -> Optional[nn.Module]:
    if not args.teacher:
        return None
    if not args.teacher_checkpoint and not args.teacher_pretrained:
        raise ConfigError(
            f'distillation from {args.teacher!r} needs trained teacher weights: pass --teacher-checkpoint FILE '
            '(e.g. DeiT\'s regnety_160-a5fe301d.pth for the EfficientMod recipe) or --teacher-pretrained')
    teacher = create_run_model(args.teacher, num_classes, pretrained=args.teacher_pretrained, flag='--teacher-kwargs',
                               **args.teacher_kwargs)
    if args.teacher_checkpoint:
        import modzoo
        modzoo.load_checkpoint(teacher, args.teacher_checkpoint, non_finite_option=None)
    return teacher.to(device).eval()


def train(args) -> Dict[str, Any]:
    """Run training as configured by ``args`` (see ``config.build_train_parser``); returns a summary dict."""
    ctx = init_distributed(args.device)
    held: List[int] = []
    try:
        return _train(args, ctx, held)
    except KeyboardInterrupt:
        raise TrainingInterrupted(getattr(args, 'run_folder', None)) from None
    finally:
        for fd in held:
            os.close(fd)
        ctx.shutdown()


@dataclass
class _Run:
    """What the steps of one training run share: ``_train`` fills it section by section, in the order the run was
    always built (the order the random generators are drawn in, which exact resume depends on)."""
    args: Any
    ctx: DistContext
    amp_dtype: torch.dtype
    output: str
    resume_path: Optional[str]
    ckpt: Optional[Dict[str, Any]]
    # data
    train_base: Any = None
    val_base: Any = None
    class_to_idx: Dict[str, int] = field(default_factory=dict)
    num_classes: int = 0
    # model
    model: Optional[nn.Module] = None
    ddp_model: Optional[nn.Module] = None
    teacher: Optional[nn.Module] = None
    origin: Dict[str, Optional[str]] = field(default_factory=dict)
    data_config: Dict[str, Any] = field(default_factory=dict)
    # loaders
    train_ds: Any = None
    train_sampler: Any = None
    train_loader: Any = None
    val_loader: Any = None
    steps_per_epoch: int = 0
    # optimisation
    global_batch: int = 0
    lr: float = 0.0
    optimizer: Any = None
    scheduler: Any = None
    num_epochs: int = 0
    scaler: Any = None
    model_ema: Any = None
    mixup_fn: Any = None
    criterion: Any = None
    step_ctx: Optional[StepContext] = None
    # where training starts, and the outputs (rank 0)
    start_epoch: int = 0
    start_batch: int = 0
    best: Dict[str, Any] = field(default_factory=dict)
    resume_meters: EpochMeters = field(default_factory=EpochMeters)
    csv_log: Optional[CsvLog] = None
    tb_writer: Any = None
    progress: bool = False

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def last_path(self) -> str:
        return os.path.join(self.output, 'last.pth')

    @property
    def best_path(self) -> str:
        return os.path.join(self.output, 'best.pth')


def _train(args, ctx: DistContext, held: List[int]) -> Dict[str, Any]:
    setup_logging(ctx)
    run = _open_run(args, ctx, _configure_torch(args, ctx.device))
    _build_data(run)
    _build_model(run)
    _set_transforms(run)
    _place_models(run)
    _build_loaders(run)
    _build_optimisation(run)
    _resume_position(run)
    _open_outputs(run, held)
    _log_start(run)
    last_metrics: Dict[str, Any] = {}
    for epoch in range(run.start_epoch, run.num_epochs):
        row = _train_and_evaluate(run, epoch)
        _record_epoch(run, epoch, row)
        last_metrics = row
    return _finish(run, last_metrics)


def _configure_torch(args, device: torch.device) -> torch.dtype:
    """Threads, determinism and the autocast dtype; refuses float16 autocast off CUDA."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    if args.amp and args.amp_dtype == 'float16' and device.type != 'cuda':
        raise ConfigError('--amp-dtype float16 needs a CUDA device; use --amp-dtype bfloat16 on CPU')
    return torch.bfloat16 if args.amp_dtype == 'bfloat16' else torch.float16


def _open_run(args, ctx: DistContext, amp_dtype: torch.dtype) -> _Run:
    """Checks the names and files given, picks the run folder and reads the checkpoint to resume (if any)."""
    check_model_name(args.model)
    if args.teacher:
        check_model_name(args.teacher)
    for flag, path in (('--initial-checkpoint', args.initial_checkpoint), ('--teacher-checkpoint',
                                                                          args.teacher_checkpoint)):
        check_input_file(path, flag)
    if args.resume and args.resume != 'auto':
        check_input_file(args.resume, '--resume')
    output = resolve_run_folder(args, ctx)
    # the run rewrites these files as it goes: none may be a checkpoint it reads (--resume continues last.pth)
    check_distinct_paths({f'--output (its {name})': os.path.join(output, name) for name in RESULT_FILES},
                         {'--initial-checkpoint': args.initial_checkpoint,
                          '--teacher-checkpoint': args.teacher_checkpoint})
    args.run_folder = output
    resume_path = args.resume
    if resume_path == 'auto':
        candidate = os.path.join(output, 'last.pth')
        resume_path = candidate if os.path.isfile(candidate) else None
        if resume_path is None:
            _logger.info('--resume auto: no %s yet, starting a new run', candidate)
    ckpt = read_training_checkpoint(resume_path) if resume_path else None
    if ckpt is not None:
        refuse_older_resume(ckpt, resume_path, output)
    return _Run(args=args, ctx=ctx, amp_dtype=amp_dtype, output=output, resume_path=resume_path, ckpt=ckpt)


def _build_data(run: _Run) -> None:
    """The datasets (without transforms yet): the class list decides the head size."""
    args = run.args
    class_map = None
    if args.class_map:
        from timm.data.readers.class_map import load_class_map
        if not os.path.isfile(args.class_map):
            raise ConfigError(f'--class-map file not found: {args.class_map!r}')
        class_map = load_class_map(args.class_map)
    run.train_base, run.class_to_idx = build_dataset(args.dataset, args.data_dir, args.train_split,
                                                     class_to_idx=class_map, download=args.dataset_download,
                                                     every_class=True)
    if args.val_split:
        run.val_base, _ = build_dataset(args.dataset, args.data_dir, args.val_split, class_to_idx=run.class_to_idx,
                                        download=args.dataset_download, evaluation=True)
    run.num_classes = args.num_classes or len(run.class_to_idx)
    if not run.num_classes:
        raise ConfigError('cannot tell the number of classes from the dataset: pass --num-classes')
    if run.ckpt is not None:
        check_resume_compatible(run.ckpt, run.resume_path, args.model, run.num_classes, args.model_kwargs)


def _build_model(run: _Run) -> None:
    """The model, with the same init on every rank (DDP also broadcasts rank 0's weights)."""
    args, ckpt = run.args, run.ckpt
    seed_all(args.seed, cuda=run.device.type == 'cuda')
    # a resumed run takes its weights from the checkpoint: no hub download
    model = create_run_model(args.model, run.num_classes, pretrained=args.pretrained and ckpt is None,
                             drop_rate=args.drop, drop_path_rate=args.drop_path, **args.model_kwargs)
    if args.initial_checkpoint and ckpt is None:
        skipped = load_initial_weights(model, args.initial_checkpoint)
        _logger.info('initial weights from %s%s', args.initial_checkpoint,
                     f' (new classifier: {", ".join(skipped)})' if skipped else '')
    run.origin = _weights_origin(args, model, ckpt)
    if args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    run.model = model


def _set_transforms(run: _Run) -> None:
    """The model's data config (input size, crop, normalisation) and the datasets' transforms built from it."""
    args = run.args
    run.data_config = resolve_model_data_config(run.model, dict(
        input_size=tuple(args.input_size) if args.input_size else None, img_size=args.img_size,
        crop_pct=args.crop_pct, interpolation=args.interpolation,
        mean=tuple(args.mean) if args.mean else None, std=tuple(args.std) if args.std else None))
    train_aug = dict(
        scale=tuple(args.scale), ratio=tuple(args.ratio), hflip=args.hflip, vflip=args.vflip,
        color_jitter=args.color_jitter, auto_augment=args.aa, interpolation=args.train_interpolation,
        re_prob=args.reprob, re_mode=args.remode, re_count=args.recount)
    try:
        train_tf, eval_tf = build_transforms(run.data_config, train_aug)
    except (AssertionError, KeyError, ValueError) as e:  # timm's answers to an augmentation string it cannot parse
        raise ConfigError(f'timm cannot build the training augmentation from --aa {args.aa!r} ({type(e).__name__}: '
                          f'{e}): use a timm policy string such as rand-m9-mstd0.5-inc1, or none') from None
    run.train_base.transform = train_tf
    if run.val_base is not None:
        run.val_base.transform = eval_tf


def _place_models(run: _Run) -> None:
    """The model (and the distillation teacher) on the device, in the memory format asked for."""
    run.model.to(run.device)
    if run.args.channels_last:
        run.model.to(memory_format=torch.channels_last)
    run.teacher = _build_teacher(run.args, run.num_classes, run.device)
    if run.teacher is not None and run.args.channels_last:
        run.teacher.to(memory_format=torch.channels_last)


def _build_loaders(run: _Run) -> None:
    args, ctx = run.args, run.ctx
    run.train_ds = SeededDataset(run.train_base, args.seed)
    run.train_sampler = ResumableShardSampler(len(run.train_ds), ctx.world_size, ctx.rank, shuffle=True,
                                              seed=args.seed)
    run.steps_per_epoch = run.train_sampler.shard_size() // args.batch_size
    if run.steps_per_epoch == 0:
        raise ConfigError(f'--batch-size {args.batch_size} is larger than the {run.train_sampler.shard_size()} '
                          f'training images each of the {ctx.world_size} process(es) gets: lower it')
    run.train_loader = build_loader(run.train_ds, run.train_sampler, args.batch_size, args.workers, drop_last=True,
                                    pin_memory=args.pin_mem)
    if run.val_base is not None:
        val_sampler = ResumableShardSampler(len(run.val_base), ctx.world_size, ctx.rank, shuffle=False, pad=False)
        run.val_loader = build_loader(run.val_base, val_sampler, args.validation_batch_size or args.batch_size,
                                      args.workers, drop_last=False, pin_memory=args.pin_mem)


def _build_optimisation(run: _Run) -> None:
    """Optimizer, lr schedule, loss scaler and EMA, then mixup and the loss."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    args = run.args
    run.global_batch = args.batch_size * run.ctx.world_size
    run.lr = resolve_lr(args, run.global_batch)
    opt_kwargs = {}
    if args.opt_eps is not None:
        opt_kwargs['eps'] = args.opt_eps
    if args.opt_betas is not None:
        opt_kwargs['betas'] = tuple(args.opt_betas)
    if args.opt.lower() in ('sgd', 'momentum', 'nesterov'):
        opt_kwargs['momentum'] = args.momentum
    run.optimizer = create_optimizer_v2(run.model, opt=args.opt, lr=run.lr, weight_decay=args.weight_decay,
                                        **opt_kwargs)
    run.scheduler, run.num_epochs = create_scheduler_v2(
        run.optimizer, sched=args.sched, num_epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr, min_lr=args.min_lr, cooldown_epochs=args.cooldown_epochs,
        step_on_epochs=False, updates_per_epoch=run.steps_per_epoch)
    run.scaler = torch.amp.GradScaler(run.device.type) if args.amp and run.amp_dtype == torch.float16 else None
    if args.model_ema:
        run.model_ema = ModelEmaV3(run.model, decay=args.model_ema_decay, use_warmup=args.model_ema_warmup)
    _build_mixup_and_loss(run)


def _build_mixup_and_loss(run: _Run) -> None:
    from timm.data import Mixup

    args = run.args
    if args.mixup > 0 or args.cutmix > 0:
        if args.batch_size % 2:
            raise ConfigError('mixup/cutmix need an even --batch-size')
        run.mixup_fn = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
                             switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                             label_smoothing=args.smoothing, num_classes=run.num_classes)
    run.criterion = build_criterion(args.smoothing, run.mixup_fn is not None, run.teacher, args.kd_alpha,
                                    args.kd_tau)


def _resume_position(run: _Run) -> None:
    """Where training starts (restoring the resumed checkpoint's state), then the DDP wrapper."""
    run.best = {'metric': 'ema_top1' if run.model_ema is not None else 'eval_top1', 'value': None, 'epoch': None}
    if run.ckpt is not None:
        run.start_epoch, run.start_batch, run.best, run.resume_meters = _restore(
            run.ckpt, run.resume_path, run.ctx, run.model, run.optimizer, run.scheduler, run.scaler, run.model_ema,
            run.steps_per_epoch, run.args)
        if run.start_epoch > run.num_epochs:
            raise ConfigError(f'--epochs {run.args.epochs}: {run.resume_path} has already trained {run.start_epoch} '
                              f'epochs; pass a larger --epochs to train on')
    run.ddp_model = run.model
    if run.ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel
        device = run.device
        run.ddp_model = DistributedDataParallel(run.model,
                                                device_ids=[device.index] if device.type == 'cuda' else None)


def _open_outputs(run: _Run, held: List[int]) -> None:
    """Rank 0 locks the run folder and opens its logs; every rank learns whether to show progress bars."""
    args, output = run.args, run.output
    if run.ctx.is_primary:
        os.makedirs(output, exist_ok=True)
        fd = lock_run_folder(output)
        if fd is not None:
            held.append(fd)
        remove_stale_temporaries(run.last_path)
        remove_stale_temporaries(run.best_path)
        run.csv_log = CsvLog(os.path.join(output, 'log.csv'), CSV_FIELDS)
        try:
            _write_args(output, args, run.lr, run.global_batch, run.data_config, run.num_classes)
            run.csv_log.truncate(keep_below_epoch=run.start_epoch)
        except OSError as e:
            raise _write_error(getattr(e, 'filename', None) or output, e, output) from None
        run.tb_writer = open_tensorboard(output, args.tensorboard)
    run.progress = {'on': True, 'off': False}.get(args.progress, sys.stderr.isatty())


def _log_start(run: _Run) -> None:
    """Logs what is trained on what, and builds the per-step context."""
    args = run.args
    _logger.info('model %s: %.2fM params, %d classes, input %s; %d train / %s val images; %d process(es) x batch '
                 '%d, lr %.3g, %d epochs x %d steps', args.model,
                 sum(p.numel() for p in run.model.parameters()) / 1e6, run.num_classes,
                 tuple(run.data_config['input_size']), len(run.train_ds),
                 len(run.val_base) if run.val_base is not None else 'no', run.ctx.world_size, args.batch_size, run.lr,
                 run.num_epochs, run.steps_per_epoch)
    if run.ckpt is not None:
        _logger.info('resumed from %s at epoch %d, batch %d/%d', run.resume_path, run.start_epoch, run.start_batch,
                     run.steps_per_epoch)
    run.step_ctx = StepContext(
        criterion=run.criterion, scheduler=run.scheduler, steps_per_epoch=run.steps_per_epoch, seed=args.seed,
        device=run.device, amp=args.amp, amp_dtype=run.amp_dtype, scaler=run.scaler, clip_grad=args.clip_grad,
        clip_mode=args.clip_mode, mixup_fn=run.mixup_fn, model_ema=run.model_ema, channels_last=args.channels_last,
        log_interval=args.log_interval)


def _save(run: _Run, epoch: int, batch: int, meters: EpochMeters, path: str) -> None:
    """Every rank contributes its RNG state and meters; only rank 0 writes ``path``."""
    per_rank = run.ctx.all_gather_object({'rng': capture_rng_state(), 'meters': meters.state_dict()})
    if not run.ctx.is_primary:
        return
    args, model = run.args, run.model
    state = {
        'format': CHECKPOINT_FORMAT, 'model_name': args.model, 'num_classes': run.num_classes,
        'model_kwargs': dict(args.model_kwargs), 'class_to_idx': dict(run.class_to_idx),
        'epoch': epoch, 'batch_in_epoch': batch, 'steps_per_epoch': run.steps_per_epoch,
        'step': epoch * run.steps_per_epoch + batch, 'world_size': run.ctx.world_size, 'batch_size': args.batch_size,
        'state_dict': model.state_dict(), 'optimizer': run.optimizer.state_dict(),
        'scheduler': run.scheduler.state_dict(), 'scaler': run.scaler.state_dict() if run.scaler is not None else None,
        'rng': [r['rng'] for r in per_rank], 'meters': [r['meters'] for r in per_rank],
        'best': dict(run.best), 'args': plain_args(args), 'data_config': _plain_data_config(run.data_config),
    }
    if run.model_ema is not None:
        state['state_dict_ema'] = run.model_ema.module.state_dict()
    state[RECORD_KEY] = model_record(model, **run.origin)
    try:
        atomic_save(state, path)
    except OSError as e:
        raise _write_error(path, e, run.output) from None
    except RuntimeError as e:  # torch's zip writer words a failed write as '[enforce fail at inline_container.cc'
        if 'inline_container' not in str(e) and 'write' not in str(e):
            raise
        raise _write_error(path, e, run.output) from None


def _save_on_interval(run: _Run, epoch: int, batch: int, meters: EpochMeters) -> None:
    """The step-end hook: ``last.pth`` every ``--checkpoint-interval`` steps (the epoch end saves anyway)."""
    step = epoch * run.steps_per_epoch + batch
    if run.args.checkpoint_interval and step % run.args.checkpoint_interval == 0 and batch < run.steps_per_epoch:
        _save(run, epoch, batch, meters, run.last_path)


def _train_and_evaluate(run: _Run, epoch: int) -> Dict[str, Any]:
    """One epoch of training (from the resumed batch in the first), then validation: the epoch's log row."""
    args, ctx = run.args, run.ctx
    epoch_start = time.perf_counter()
    first = epoch == run.start_epoch
    batch0 = run.start_batch if first else 0
    run.train_ds.set_epoch(epoch)
    run.train_sampler.set_epoch(epoch)
    run.train_sampler.set_start(batch0 * args.batch_size)
    meters = run.resume_meters if first and batch0 else EpochMeters()
    meters = train_one_epoch(ctx, run.ddp_model, run.train_loader, run.optimizer, run.step_ctx, epoch, batch0,
                             meters, functools.partial(_save_on_interval, run), run.progress, run.tb_writer)
    train_seconds = time.perf_counter() - epoch_start

    sums = torch.tensor([meters.loss_sum, meters.samples], dtype=torch.float64)
    ctx.all_reduce_sum(sums)
    row: Dict[str, Any] = {
        'epoch': epoch, 'step': (epoch + 1) * run.steps_per_epoch, 'lr': run.optimizer.param_groups[0]['lr'],
        'train_loss': float(sums[0] / max(float(sums[1]), 1.0)),
        'train_samples_per_s': float(sums[1]) / max(train_seconds, 1e-9),
    }
    if run.val_loader is not None:
        setting = (run.val_loader, run.device, args.amp, run.amp_dtype, args.channels_last, run.progress)
        m = evaluate(ctx, run.model, *setting)
        row.update(eval_loss=m['loss'], eval_top1=m['top1'], eval_top5=m['top5'])
        if run.model_ema is not None:
            e = evaluate(ctx, run.model_ema.module, *setting, desc='eval ema')
            row.update(ema_eval_loss=e['loss'], ema_top1=e['top1'], ema_top5=e['top5'])
    row['epoch_seconds'] = time.perf_counter() - epoch_start
    return row


def _record_epoch(run: _Run, epoch: int, row: Dict[str, Any]) -> None:
    """Tracks the best epoch, writes the log row (rank 0), then saves ``best.pth`` (when it is) and ``last.pth``."""
    best = run.best
    value = row.get(best['metric'])
    is_best = value is not None and (best['value'] is None or value > best['value'])
    if is_best:
        best.update(value=value, epoch=epoch)
    if run.ctx.is_primary:
        try:
            run.csv_log.write(row)
        except OSError as e:
            raise _write_error(run.csv_log.path, e, run.output) from None
        if run.tb_writer is not None:
            for k, v in row.items():
                if k not in ('epoch', 'step') and v is not None:
                    run.tb_writer.add_scalar(f'epoch/{k}', v, epoch)
            run.tb_writer.flush()
        _logger.info(_format_row(row, run.num_epochs))
    # best first, then last: a kill between the two leaves last at the previous epoch, whose rerun rewrites
    # the same best file, so the pair never disagrees
    if is_best:
        _save(run, epoch + 1, 0, EpochMeters(), run.best_path)
    _save(run, epoch + 1, 0, EpochMeters(), run.last_path)


def _finish(run: _Run, last_metrics: Dict[str, Any]) -> Dict[str, Any]:
    """Closes the event log, logs the best epoch and returns the run's summary."""
    best, num_epochs = run.best, run.num_epochs
    if run.tb_writer is not None:
        run.tb_writer.close()
    summary = {'output': run.output, 'epochs': num_epochs, 'best_metric': best['metric'],
               'best_value': best['value'], 'best_epoch': best['epoch'], 'last': last_metrics,
               'last_checkpoint': run.last_path,
               'best_checkpoint': run.best_path if best['epoch'] is not None else None,
               'world_size': run.ctx.world_size, 'lr': run.lr}
    if run.ctx.is_primary:  # epochs counted from 1, as in the per-epoch lines
        best_text = (f'best {best["metric"]} {best["value"]:.2f} (epoch {best["epoch"] + 1}/{num_epochs})'
                     if best['value'] is not None else 'no validation')
        _logger.info('done: %d/%d epochs, %s; checkpoints in %s', num_epochs, num_epochs, best_text, run.output)
    return summary


def _restore(ckpt, path, ctx, model, optimizer, scheduler, scaler, model_ema, steps_per_epoch, args):
    from modzoo.models import Checkpoint, load_checkpoint
    load_checkpoint(model, Checkpoint(ckpt['state_dict'], {}, f'--resume {path}'), non_finite_option=None)
    optimizer.load_state_dict(ckpt['optimizer'])
    changed = _schedule_changes(ckpt, scheduler, steps_per_epoch, args)
    if not changed:
        scheduler.load_state_dict(ckpt['scheduler'])
    if scaler is not None and ckpt.get('scaler'):
        scaler.load_state_dict(ckpt['scaler'])
    if model_ema is not None:
        if 'state_dict_ema' in ckpt:
            model_ema.module.load_state_dict(ckpt['state_dict_ema'])
        else:
            _logger.warning('%s has no EMA weights; the EMA restarts from the current weights', path)
            model_ema.module.load_state_dict(ckpt['state_dict'])
    epoch, batch = int(ckpt['epoch']), int(ckpt['batch_in_epoch'])
    same_layout = ckpt.get('world_size') == ctx.world_size and ckpt.get('batch_size') == args.batch_size
    meters = EpochMeters()
    if same_layout:
        restore_rng_state(ckpt['rng'][ctx.rank])
        meters = EpochMeters.from_state(ckpt['meters'][ctx.rank])
    else:
        _logger.warning('the checkpoint was written with %s process(es) x batch %s, this run uses %d x %d: training '
                        'continues, but not bit-exactly', ckpt.get('world_size'), ckpt.get('batch_size'),
                        ctx.world_size, args.batch_size)
        if batch:
            consumed = batch * ckpt['world_size'] * ckpt['batch_size']
            batch = min(consumed // (ctx.world_size * args.batch_size), steps_per_epoch)
    if batch >= steps_per_epoch:
        epoch, batch = epoch + 1, 0
    if changed:
        # the new schedule from the step reached: base lr from this run's options, not the checkpoint's
        for group, base in zip(optimizer.param_groups, scheduler.base_values, strict=True):
            group['initial_lr'] = base
        step = epoch * steps_per_epoch + batch
        scheduler.step_update(num_updates=step)
        _logger.info('resuming on a changed schedule (%s): the lr follows the new schedule from step %d (lr %.3g)',
                     ', '.join(changed), step, optimizer.param_groups[0]['lr'])
    best = dict(ckpt.get('best') or {})
    best.setdefault('metric', 'ema_top1' if model_ema is not None else 'eval_top1')
    best.setdefault('value', None)
    best.setdefault('epoch', None)
    return epoch, batch, best, meters


def _schedule_changes(ckpt, scheduler, steps_per_epoch: int, args) -> List[str]:
    """'option old -> new' for each schedule option that differs from the checkpoint's run ([] when none does)."""
    saved = ckpt.get('args') or {}
    changes = [f'{"--" + k.replace("_", "-")} {saved.get(k)} -> {getattr(args, k)}' for k in SCHEDULE_OPTIONS
               if k in saved and saved.get(k) != getattr(args, k)]
    if ckpt.get('steps_per_epoch') not in (None, steps_per_epoch):
        changes.append(f'steps per epoch {ckpt["steps_per_epoch"]} -> {steps_per_epoch}')
    if not changes:  # same options; still compare the schedule itself (a world-size change alters the lr scaling)
        new, old = scheduler.state_dict(), dict(ckpt.get('scheduler') or {})
        differing = sorted(k for k in set(new) | set(old) if k != 'metric' and new.get(k) != old.get(k))
        if differing:
            changes.append('schedule state ' + ', '.join(differing))
    return changes


def _plain_data_config(cfg: Dict[str, Any]) -> Dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def _write_args(output: str, args, lr: float, global_batch: int, data_config, num_classes: int) -> None:
    import yaml
    data = plain_args(args)
    data['resolved'] = {'lr': lr, 'global_batch': global_batch, 'num_classes': num_classes,
                        'data_config': _plain_data_config(data_config)}
    with atomic_write(os.path.join(output, 'args.yaml'), 'w') as f:
        yaml.safe_dump(data, f, sort_keys=False)


def _format_row(row: Dict[str, Any], num_epochs: int) -> str:
    parts = [f'epoch {row["epoch"] + 1}/{num_epochs}', f'train_loss {row["train_loss"]:.4f}']
    if row.get('eval_top1') is not None:
        parts.append(f'val_loss {row["eval_loss"]:.4f} top1 {row["eval_top1"]:.2f} top5 {row["eval_top5"]:.2f}')
    if row.get('ema_top1') is not None:
        parts.append(f'ema_top1 {row["ema_top1"]:.2f}')
    parts.append(f'lr {row["lr"]:.2e}')
    parts.append(f'{row["epoch_seconds"]:.1f}s ({row["train_samples_per_s"]:.0f} img/s)')
    return '  '.join(parts)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: returns the exit status (2 with a one-line reason for bad input)."""
    try:
        args = parse_train_args(argv)
        train(args)
    except USER_ERRORS as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f'error: {e if isinstance(e, TrainingInterrupted) else "interrupted; nothing was written"}',
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
