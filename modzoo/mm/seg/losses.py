"""Segmentation losses for MMSegmentation that mmseg 1.2 does not provide in the form a recipe needs."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register_module

__all__ = ['ClasswiseDiceLoss']


@register_module(scopes=('mmseg',))
class ClasswiseDiceLoss(nn.Module):
    """Soft Dice averaged over the classes, each class's Dice taken over the whole batch (TransUNet style).

    ``loss = mean_c (1 - (2 sum(p_c t_c) + s) / (sum(p_c^2) + sum(t_c^2) + s))`` with ``p = softmax(logits)``,
    ``t`` the one-hot labels, sums over the batch and all pixels, every class included (background too) and
    ``s = smooth``. This is the Dice part of the ``CeDiceLoss`` that MACMD (and TransUNet, CASCADE) train Synapse
    with. mmseg 1.2's ``DiceLoss`` differs: one Dice per image over all classes flattened together, and pixels
    labelled ``ignore_index`` still count in its denominator; here they are left out of every sum.

    Args:
        loss_weight: factor on the loss (MACMD's Synapse recipe: 0.6, with 0.4 on cross-entropy).
        smooth: the additive smoothing ``s`` (1e-5 in the released code).
        ignore_index: label of pixels to leave out.
        loss_name: key in the loss dict (must start with ``loss_`` to be back-propagated).
    """

    def __init__(
            self,
            loss_weight: float = 1.0,
            smooth: float = 1e-5,
            ignore_index: int = 255,
            loss_name: str = 'loss_dice',
    ):
        super().__init__()
        self.loss_weight = loss_weight
        self.smooth = smooth
        self.ignore_index = ignore_index
        self._loss_name = loss_name

    def forward(
            self,
            pred: torch.Tensor,
            target: torch.Tensor,
            weight: Optional[torch.Tensor] = None,
            ignore_index: Optional[int] = None,
            **kwargs,
    ) -> torch.Tensor:
        if weight is not None:
            raise ValueError('ClasswiseDiceLoss takes no per-pixel weights (a pixel sampler); remove the sampler')
        if pred.dim() != 4 or target.shape != (pred.shape[0],) + pred.shape[2:]:
            raise ValueError(f'expected logits (N, C, H, W) and labels (N, H, W), got {list(pred.shape)} and '
                             f'{list(target.shape)}')
        num_classes = pred.shape[1]
        ignore = self.ignore_index if ignore_index is None else ignore_index
        valid = (target != ignore).unsqueeze(1).to(pred.dtype)
        prob = pred.float().softmax(dim=1) * valid
        labels = torch.where(target == ignore, torch.zeros_like(target), target)
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f'labels must be in [0, {num_classes}) or {ignore}, got {labels.min()}..{labels.max()}')
        onehot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).to(prob.dtype) * valid
        dims = (0, 2, 3)
        intersection = (prob * onehot).sum(dims)
        denominator = prob.square().sum(dims) + onehot.sum(dims)  # one-hot squared is itself
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        return self.loss_weight * (1 - dice).mean()

    @property
    def loss_name(self) -> str:
        return self._loss_name
