"""Torch-only layout helpers shared by the kernel launchers and the custom ops' fake (meta) implementations.

The fake implementations must report exactly the strides the real kernels produce (torch.compile plans the code
after an op from them), so both allocate through these functions.
"""
from typing import Optional, Sequence, Tuple

import torch


def is_channels_last(x: torch.Tensor) -> bool:
    """True when the channel dim of a logical NCHW tensor is the innermost one in memory (a channels-last tensor,
    a permuted (B, H, W, C) view, or a channel slice of either)."""
    return x.dim() == 4 and x.stride(1) == 1 and x.shape[1] > 1


def empty_nchw(like: torch.Tensor, shape: Optional[Sequence[int]] = None, dtype: Optional[torch.dtype] = None
               ) -> torch.Tensor:
    """A dense (B, C, H, W) tensor in ``like``'s memory order: channels-last if ``like`` is, else contiguous."""
    shape = tuple(like.shape) if shape is None else tuple(shape)
    fmt = torch.channels_last if is_channels_last(like) else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=fmt)


def strides(t: torch.Tensor) -> Tuple[int, int, int, int]:
    """The four strides of a logical NCHW tensor, as the conv-like kernels take them."""
    return t.stride(0), t.stride(1), t.stride(2), t.stride(3)


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()
