"""One training epoch and one evaluation pass (single process or DDP)."""
import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distributed import DistContext
from .seeding import derive_seed, seed_all

_logger = logging.getLogger(__name__)

__all__ = ['EpochMeters', 'StepContext', 'NonFiniteLossError', 'train_one_epoch', 'evaluate', 'autocast_context',
           'progress_bar']

# tag of the per-step seed stream (kept apart from the per-sample stream of SeededDataset)
_STEP_STREAM = 1


def autocast_context(device: torch.device, enabled: bool, dtype: torch.dtype):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class EpochMeters:
    """This rank's running sums for the current epoch (saved in mid-epoch checkpoints so a resumed epoch reports
    exactly what the uninterrupted one would)."""
    loss_sum: float = 0.0
    samples: int = 0
    steps: int = 0

    def state_dict(self) -> Dict[str, float]:
        return {'loss_sum': self.loss_sum, 'samples': self.samples, 'steps': self.steps}

    @classmethod
    def from_state(cls, state: Optional[Dict]) -> 'EpochMeters':
        return cls(**state) if state else cls()


@dataclass
class StepContext:
    """Everything one optimisation step needs besides model, data and optimizer."""
    criterion: nn.Module
    scheduler: object
    steps_per_epoch: int
    seed: int
    device: torch.device
    amp: bool = False
    amp_dtype: torch.dtype = torch.bfloat16
    scaler: Optional[torch.amp.GradScaler] = None
    clip_grad: Optional[float] = None
    clip_mode: str = 'norm'
    mixup_fn: Optional[Callable] = None
    model_ema: Optional[nn.Module] = None
    channels_last: bool = False
    log_interval: int = 50
    extra: Dict = field(default_factory=dict)


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False, file=sys.stderr)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch, the step and the usual causes."""


def train_one_epoch(
        ctx: DistContext,
        model: nn.Module,
        loader: Iterable,
        optimizer: torch.optim.Optimizer,
        step_ctx: StepContext,
        epoch: int,
        start_batch: int = 0,
        meters: Optional[EpochMeters] = None,
        on_step_end: Optional[Callable[[int, int, EpochMeters], None]] = None,
        progress: bool = False,
        tb_writer=None,
) -> EpochMeters:
    """Train over ``loader`` (which already starts at ``start_batch``); returns this rank's epoch sums.

    ``on_step_end(epoch, batches_done, meters)`` runs after every optimiser step on every rank (checkpointing).
    The global step used by the scheduler and EMA is ``epoch * steps_per_epoch + batch``, a function of the position
    alone, so it is the same whether or not the run was resumed.
    """
    s = step_ctx
    meters = meters or EpochMeters()
    model.train()
    s.criterion.train()
    bar = progress_bar(s.steps_per_epoch, start_batch, f'epoch {epoch}', progress and ctx.is_primary)
    last_log = time.perf_counter()
    batch_idx = start_batch
    for batch_idx, (inputs, targets) in enumerate(loader, start=start_batch):
        if batch_idx >= s.steps_per_epoch:
            break
        # drop path, dropout and mixup draw from generators reseeded by position (exact resume)
        seed_all(derive_seed(s.seed, _STEP_STREAM, ctx.rank, epoch, batch_idx), cuda=s.device.type == 'cuda')
        inputs = inputs.to(s.device, non_blocking=True)
        targets = targets.to(s.device, non_blocking=True)
        if s.mixup_fn is not None:
            inputs, targets = s.mixup_fn(inputs, targets)
        if s.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)

        with autocast_context(s.device, s.amp, s.amp_dtype):
            outputs = model(inputs)
            loss = s.criterion(inputs, outputs, targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f'the loss is {loss.item()} at epoch {epoch + 1}, step {batch_idx + 1}/{s.steps_per_epoch}; training '
                f'stopped. Usual causes: a learning rate too high for the batch (lower --lr, add --warmup-epochs or '
                f'--clip-grad), float16 overflow (--amp-dtype bfloat16), or broken input images. After the fix, '
                f'--resume auto continues from the last checkpoint, if one was written')

        optimizer.zero_grad(set_to_none=True)
        if s.scaler is not None:
            s.scaler.scale(loss).backward()
            if s.clip_grad:
                s.scaler.unscale_(optimizer)
                _clip(model, s.clip_grad, s.clip_mode)
            s.scaler.step(optimizer)
            s.scaler.update()
        else:
            loss.backward()
            if s.clip_grad:
                _clip(model, s.clip_grad, s.clip_mode)
            optimizer.step()

        global_step = epoch * s.steps_per_epoch + batch_idx + 1
        if s.model_ema is not None:
            s.model_ema.update(model, step=global_step)
        s.scheduler.step_update(num_updates=global_step)

        n = inputs.shape[0]
        meters.loss_sum += float(loss.detach()) * n
        meters.samples += n
        meters.steps += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f'{meters.loss_sum / max(meters.samples, 1):.4f}',
                            lr=f'{optimizer.param_groups[0]["lr"]:.2e}')
        if ctx.is_primary and (batch_idx + 1) % s.log_interval == 0:
            if bar is None:
                now = time.perf_counter()
                _logger.info('epoch %d [%d/%d] loss %.4f lr %.3e (%.1f s)', epoch, batch_idx + 1, s.steps_per_epoch,
                             meters.loss_sum / max(meters.samples, 1), optimizer.param_groups[0]['lr'],
                             now - last_log)
                last_log = now
            if tb_writer is not None:
                tb_writer.add_scalar('train/loss_running', meters.loss_sum / max(meters.samples, 1), global_step)
                tb_writer.add_scalar('train/lr', optimizer.param_groups[0]['lr'], global_step)
        if on_step_end is not None:
            on_step_end(epoch, batch_idx + 1, meters)
    if bar is not None:
        bar.close()
    return meters


def _clip(model: nn.Module, value: float, mode: str) -> None:
    from timm.utils import dispatch_clip_grad
    dispatch_clip_grad(model.parameters(), value=value, mode=mode)


@torch.no_grad()
def evaluate(
        ctx: DistContext,
        model: nn.Module,
        loader: Iterable,
        device: torch.device,
        amp: bool = False,
        amp_dtype: torch.dtype = torch.bfloat16,
        channels_last: bool = False,
        progress: bool = False,
        desc: str = 'eval',
        time_forward: bool = False,
) -> Dict[str, float]:
    """Top-1/top-5 accuracy (%) and mean cross-entropy over the whole (sharded) dataset, summed across ranks.

    With ``time_forward`` the model's forward time is accumulated too (device-synchronised), for throughput.
    """
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64)  # loss_sum, top1 hits, top5 hits, samples, unreadable skipped
    forward_s = 0.0
    total = len(loader) if hasattr(loader, '__len__') else None
    bar = progress_bar(total or 0, 0, desc, progress and ctx.is_primary and total is not None)
    for inputs, targets in loader:
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if time_forward and device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast_context(device, amp, amp_dtype):
            outputs = model(inputs)
        if time_forward:
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            forward_s += time.perf_counter() - start
        read = targets >= 0  # -1: an unreadable image the dataset left out
        sums[4] += float((~read).sum())
        outputs, targets = outputs.float()[read], targets[read]
        if targets.numel():
            top = outputs.topk(min(5, outputs.shape[-1]), dim=-1).indices
            hits = top.eq(targets[:, None])
            sums[0] += float(F.cross_entropy(outputs, targets, reduction='sum'))
            sums[1] += float(hits[:, :1].sum())
            sums[2] += float(hits.sum())
            sums[3] += targets.shape[0]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ctx.all_reduce_sum(sums)
    n = max(float(sums[3]), 1.0)
    result = {'loss': float(sums[0]) / n, 'top1': 100.0 * float(sums[1]) / n, 'top5': 100.0 * float(sums[2]) / n,
              'samples': int(sums[3]), 'skipped': int(sums[4])}
    if time_forward:
        result['forward_s'] = forward_s
    return result
