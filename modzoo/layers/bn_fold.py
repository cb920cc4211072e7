"""Folding an eval-mode BatchNorm into the convolution before it; a Linear layer as the 1x1 convolution it is."""
from typing import Optional

import torch
import torch.nn as nn

__all__ = ['fold_conv_bn', 'linear_as_conv1x1']


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution computing ``bn(conv(x))`` in eval mode (running statistics).

    The BatchNorm acts per output channel, so this holds for grouped convolutions too.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError('cannot fold a BatchNorm without running statistics (track_running_stats=False)')
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, bias=True, padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + shift)
    return fused


@torch.no_grad()
def linear_as_conv1x1(linear: nn.Linear, scale: Optional[torch.Tensor] = None) -> nn.Conv2d:
    """A new 1x1 convolution computing ``linear`` over the channels of an NCHW tensor; ``scale`` (one factor per
    output, e.g. a LayerScale) multiplied into its weight and bias."""
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None,
                     device=linear.weight.device, dtype=linear.weight.dtype)
    weight, bias = linear.weight, linear.bias
    if scale is not None:
        weight = weight * scale[:, None]
        bias = bias * scale if bias is not None else None
    conv.weight.copy_(weight[:, :, None, None])
    if bias is not None:
        conv.bias.copy_(bias)
    return conv
