"""The one ``build_model_with_cfg`` call every family's ``_create_*`` makes."""
from typing import Callable, Sequence, Type, Union

import torch.nn as nn
from timm.models import build_model_with_cfg

from ._checkpoint import fit_classifier

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

    Pretrained weights go through the family's ``checkpoint_filter_fn`` (official layouts, containers, verification)
    and :func:`~modzoo.models._checkpoint.fit_classifier` (a fitting classifier is kept, a misfit one named);
    ``features_only`` goes through the model's own ``forward_intermediates`` (timm's 'getter' feature class), taking
    ``out_indices`` from the kwargs or ``default_out_indices`` (the four stages of a hierarchical model).
    """
    out_indices = kwargs.pop('out_indices', default_out_indices)

    features_only = kwargs.get('features_only', False)  # timm then drops the classifier itself

    def filter_fn(state_dict, model):
        state_dict = checkpoint_filter_fn(state_dict, model)
        return state_dict if features_only else fit_classifier(state_dict, model)

    return build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        pretrained_filter_fn=filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=out_indices),
        **kwargs,
    )
