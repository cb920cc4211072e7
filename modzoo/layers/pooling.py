"""Adaptive average pooling that follows the input size through tracing and ONNX export."""
from typing import Sequence, Union

import torch
import torch.nn as nn


def adaptive_pool_matrix(in_size, out_size: int, like: torch.Tensor) -> torch.Tensor:
    """``(out_size, in_size)`` averaging weights of adaptive average pooling (bins as in ``F.adaptive_avg_pool1d``:
    bin ``i`` covers ``[floor(i * in / out), ceil((i + 1) * in / out))``). ``in_size`` may be a symbolic size."""
    idx = torch.arange(out_size, device=like.device)
    start = torch.div(idx * in_size, out_size, rounding_mode='floor')
    end = torch.div((idx + 1) * in_size + out_size - 1, out_size, rounding_mode='floor')
    cells = torch.arange(in_size, device=like.device)
    inside = (cells[None, :] >= start[:, None]) & (cells[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def adaptive_avg_pool2d_traceable(x: torch.Tensor, output_size: Union[int, Sequence[int]]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` as ``P_h @ x @ P_w^T`` with P built from x's (possibly symbolic) size.

    Exact, and exportable for any input size: ONNX has no adaptive pooling, so exporters either refuse
    ``adaptive_avg_pool2d(k)`` (TorchScript: "input size not accessible") or bake the kernel of the trace size into
    the graph (dynamo), which is silently wrong at other sizes.
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    pool_h = adaptive_pool_matrix(x.shape[-2], out_h, x)
    pool_w = adaptive_pool_matrix(x.shape[-1], out_w, x)
    return pool_h @ x @ pool_w.t()


class MatmulAdaptiveAvgPool2d(nn.Module):
    """Drop-in for ``nn.AdaptiveAvgPool2d(k)`` computed by :func:`adaptive_avg_pool2d_traceable`."""

    def __init__(self, output_size: Union[int, Sequence[int]]):
        super().__init__()
        size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        if any(s is None for s in size):
            raise ValueError('MatmulAdaptiveAvgPool2d needs explicit output sizes (no None)')
        self.output_size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d_traceable(x, self.output_size)
