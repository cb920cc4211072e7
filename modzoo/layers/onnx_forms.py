"""ONNX export forms of module types modzoo uses but does not define (timm's), registered in
:data:`modzoo.export.deploy.FOREIGN_EXPORT_FORMS`. Forms of modzoo's own modules live beside them."""
from typing import List, Optional

import torch
import torch.nn as nn
from timm.models.pvt_v2 import MlpWithDepthwiseConv

from .bn_fold import linear_as_conv1x1

__all__ = ['ONNX_TARGETS', 'MlpWithDepthwiseConvNCHW', 'mlp_with_depthwise_conv_form']

# The export targets written as an ONNX graph: 'onnx' for ONNX Runtime (the default), 'openvino' for OpenVINO. They
# share the forms that remove layout changes around wide maps (the FFNs'); the stage forms of EfficientMod and
# FocalNet, which pick the layout of ORT's NCHWc kernels, are ORT-only: OpenVINO ran them 1-9% slower than the eager
# layout (measured interleaved, 1 thread batch 1 and 2 threads batch 8).
ONNX_TARGETS = ('onnx', 'openvino')


class MlpWithDepthwiseConvNCHW(nn.Module):
    """Export form of timm's PVT v2 ``MlpWithDepthwiseConv``: tokens in and out, channels-first inside with the
    Linear layers as 1x1 convolutions, so the layout changes sit on the C-wide tokens instead of the 4-8x wider
    hidden map around the depthwise conv, and ONNX Runtime runs fc1, dwconv and fc2 as one NCHWc chain."""

    def __init__(self, mlp: MlpWithDepthwiseConv):
        super().__init__()
        self.fc1 = linear_as_conv1x1(mlp.fc1)
        self.relu, self.dwconv, self.act = mlp.relu, mlp.dwconv, mlp.act
        self.fc2 = linear_as_conv1x1(mlp.fc2)

    def forward(self, x: torch.Tensor, feat_size: List[int]) -> torch.Tensor:
        x = x.transpose(1, 2).unflatten(2, (feat_size[0], feat_size[1]))
        x = self.fc2(self.act(self.dwconv(self.relu(self.fc1(x)))))
        return x.flatten(2).transpose(1, 2)


def mlp_with_depthwise_conv_form(mlp: MlpWithDepthwiseConv) -> Optional[nn.Module]:
    """The ONNX form of an eval-mode ``MlpWithDepthwiseConv`` (None while training: it has no dropout)."""
    return None if mlp.training else MlpWithDepthwiseConvNCHW(mlp)
