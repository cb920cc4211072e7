"""The one ``build_model_with_cfg`` call every family's ``_create_*`` makes."""
from typing import Callable, Sequence, Type, Union

import torch.nn as nn
from timm.models import build_model_with_cfg

from ._checkpoint import file_record, fit_checkpoint

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

    Pretrained weights go through the checkpoint contract (:mod:`modzoo.models._checkpoint`): the family's
    ``checkpoint_filter_fn`` converts the keys and ``fit_checkpoint`` decides what loads (a fitting classifier is
    kept, a misfit one named); layers no checkpoint can have keep their initialisation. ``features_only`` goes
    through the model's own ``forward_intermediates`` (timm's 'getter' feature class), taking ``out_indices`` from
    the kwargs or ``default_out_indices`` (the four stages of a hierarchical model). The constructor kwargs are kept
    on the model (``zoo_build_kwargs``) so written checkpoints can record them.
    """
    out_indices = kwargs.pop('out_indices', default_out_indices)

    features_only = kwargs.get('features_only', False)  # timm then drops the classifier itself

    built_with = {k: v for k, v in kwargs.items() if k not in ('pretrained_cfg', 'pretrained_cfg_overlay')}

    def filter_fn(state_dict, model):
        model.zoo_build_kwargs = built_with  # timm loads before it returns the model: the record check needs them
        # timm read the file (a safetensors file's record is in its header); features_only: timm prunes the
        # classifier after loading, so the checkpoint's (any size, or none) is not used
        report = fit_checkpoint(state_dict, model, filter_fn=checkpoint_filter_fn,
                                classifier='ignore' if features_only else 'timm',
                                record=file_record((model.pretrained_cfg or {}).get('file')),
                                non_finite_option='modzoo.load_checkpoint(model, FILE, allow_non_finite=True)')
        model_sd = model.state_dict()
        # timm loads strictly: layers the checkpoint may lack are handed back at their initialisation
        return dict({k: model_sd[k] for k in report.missing}, **report.state_dict)

    model = build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        pretrained_filter_fn=filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=out_indices),
        **kwargs,
    )
    # timm's feature wrappers hold the model as `.model` ('getter'); others (fx) are recorded on the wrapper
    inner = model.model if features_only and isinstance(getattr(model, 'model', None), nn.Module) else model
    inner.zoo_build_kwargs = built_with
    return model

