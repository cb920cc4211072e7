"""Training losses: the classification criterion for a recipe and soft knowledge distillation.

Distillation follows EfficientMod (ma-xu/EfficientMod ``utils.py`` ``DistillationLoss``, DeiT's soft variant):
``loss = (1 - alpha) * base(student, target) + alpha * tau^2 * KL(softmax(teacher / tau) || softmax(student / tau))``
with the KL averaged over the batch (``batchmean``), ``alpha = 0.9`` and ``tau = 1`` in their ImageNet runs. There is
no separate distillation head: the teacher's soft labels supervise the same logits as the ground truth.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['build_criterion', 'DistillationLoss', 'ClassificationLoss']


class ClassificationLoss(nn.Module):
    """``criterion(inputs, outputs, targets)`` wrapper so plain and distillation losses share one call signature."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def forward(self, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.base(outputs, targets)


class DistillationLoss(nn.Module):
    """Soft distillation: ``(1 - alpha) * base + alpha * tau^2 * KL(teacher || student)`` (batchmean)."""

    def __init__(self, base: nn.Module, teacher: nn.Module, alpha: float = 0.9, tau: float = 1.0):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'distillation alpha must be in [0, 1], got {alpha}')
        if tau <= 0:
            raise ValueError(f'distillation temperature must be positive, got {tau}')
        self.base = base
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.alpha = alpha
        self.tau = tau

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher is frozen: BN statistics and dropout stay in inference mode
        return self

    def distillation_term(self, outputs: torch.Tensor, teacher_outputs: torch.Tensor) -> torch.Tensor:
        if teacher_outputs.shape != outputs.shape:
            raise ValueError(
                f'teacher logits {tuple(teacher_outputs.shape)} do not match student logits {tuple(outputs.shape)}: '
                'the teacher must predict the same classes')
        t = self.tau
        kl = F.kl_div(F.log_softmax(outputs.float() / t, dim=-1), F.log_softmax(teacher_outputs.float() / t, dim=-1),
                      reduction='batchmean', log_target=True)
        return kl * (t * t)

    def forward(self, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        base = self.base(outputs, targets)
        if self.alpha == 0.0:
            return base
        with torch.no_grad():
            teacher_outputs = self.teacher(inputs)
        return (1.0 - self.alpha) * base + self.alpha * self.distillation_term(outputs, teacher_outputs)


def build_criterion(
        smoothing: float = 0.0,
        mixup_active: bool = False,
        teacher: Optional[nn.Module] = None,
        kd_alpha: float = 0.9,
        kd_tau: float = 1.0,
) -> nn.Module:
    """timm's choice of base loss (soft-target CE under mixup/cutmix, whose targets already carry the smoothing;
    label-smoothing CE otherwise), wrapped in :class:`DistillationLoss` when a teacher is given."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    if mixup_active:
        base = SoftTargetCrossEntropy()
    elif smoothing > 0:
        base = LabelSmoothingCrossEntropy(smoothing=smoothing)
    else:
        base = nn.CrossEntropyLoss()
    if teacher is not None:
        return DistillationLoss(base, teacher, alpha=kd_alpha, tau=kd_tau)
    return ClassificationLoss(base)
