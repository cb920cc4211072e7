"""Process-group plumbing for single-process and ``torchrun`` (DistributedDataParallel) training.

``torchrun`` exports ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init_distributed` reads them, picks NCCL for CUDA
and gloo for CPU, and returns a :class:`DistContext` that the rest of the training code asks for its rank, for
reductions and for "is this the process that writes files".
"""
import datetime
import os
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
import torch.distributed as dist

__all__ = ['DistContext', 'init_distributed', 'resolve_device']


def resolve_device(name: Optional[str] = None) -> torch.device:
    """``'auto'``/None: CUDA when available, else CPU. Asking for CUDA without a GPU is an error, not a fallback."""
    if name in (None, '', 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    from .config import ConfigError
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f'--device {name}: not a device name; use auto, cpu, cuda or cuda:N') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ConfigError(f'--device {name} was requested but no CUDA device is available: use --device cpu')
    if device.type not in ('cpu', 'cuda'):
        raise ConfigError(f'--device {name}: only cpu and cuda devices are supported')
    return device


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')
    backend: Optional[str] = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_primary(self) -> bool:
        """Only the primary process (rank 0) writes checkpoints, logs and progress bars."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (in place, and returned). Counts and sums are reduced, never per-rank averages, so a
        rank that saw fewer samples weighs exactly as much as its samples."""
        if not self.distributed:
            return tensor
        if self.backend == 'nccl' and tensor.device.type != 'cuda':
            # NCCL reduces CUDA tensors only
            reduced = tensor.to(self.device)
            dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
            tensor.copy_(reduced.cpu())
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather_object(self, obj: Any) -> List[Any]:
        if not self.distributed:
            return [obj]
        out: List[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def any_true(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (used to stop all ranks on a per-rank error)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device if self.backend == 'nccl' else 'cpu')
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def shutdown(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: Optional[str] = None, timeout_s: int = 1800) -> DistContext:
    """Set up the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), else a single process."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    dev = resolve_device(device)
    if dev.type == 'cuda':
        if world_size > 1:
            dev = torch.device('cuda', local_rank)  # one GPU per process, as torchrun's LOCAL_RANK says
        elif dev.index is None:
            dev = torch.device('cuda', torch.cuda.current_device())
        torch.cuda.set_device(dev)
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)
    if world_size > 1:
        ctx.backend = 'nccl' if dev.type == 'cuda' else 'gloo'
        dist.init_process_group(
            backend=ctx.backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s))
    return ctx
