"""The one ``build_model_with_cfg`` call every family's ``_create_*`` makes."""
from typing import Callable, Sequence, Type, Union

import torch.nn as nn
from timm.models import build_model_with_cfg

__all__ = ['build_zoo_model']


def build_zoo_model(
        model_cls: Type[nn.Module],
        variant: str,
        pretrained: bool,
        checkpoint_filter_fn: Callable,
        default_out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
        **kwargs,
) -> nn.Module:
    """Build ``variant`` with timm's builder and the zoo's conventions.

    Pretrained weights go through the family's ``checkpoint_filter_fn`` (official layouts, containers, verification);
    ``features_only`` goes through the model's own ``forward_intermediates`` (timm's 'getter' feature class), taking
    ``out_indices`` from the kwargs or ``default_out_indices`` (the four stages of a hierarchical model).
    """
    out_indices = kwargs.pop('out_indices', default_out_indices)
    return build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=out_indices),
        **kwargs,
    )
