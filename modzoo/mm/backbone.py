"""One OpenMMLab backbone for every modzoo family, built on the timm ``features_only`` path.

``ModzooBackbone(model_name='zoo_<family>_<variant>', ...)`` creates the registered timm model with
``features_only=True`` (timm's ``FeatureGetterNet`` around the family's ``forward_intermediates``), so every family
that follows the zoo's model contract works here without adapter code of its own. What differs between families
comes from the family itself:

* model kwargs (focal windows, stage widths, ...) pass straight through to the model;
* checkpoint conversion uses the family's ``checkpoint_filter_fn`` (official, timm and OpenMMLab layouts);
* the stage layout for ``frozen_stages`` comes from the family's ``group_matcher(coarse=True)`` (stem, then one
  group per stage), which every timm model declares for layer-wise learning rates.

With ``sfm=dict(...)`` the backbone carries SFM's adaptive resampling (ARS, :mod:`modzoo.layers.sfm`) in front of the
model's three stride-2 stage transitions and returns :class:`SFMFeatures`: every map demodulated back onto the
uniform grid (so any neck or head works unchanged), plus the modulated maps and the warps for SFM-aware heads
(``modzoo.mm.seg.SFMUPerHead``).

Config example (MMSegmentation or MMDetection)::

    custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)
    model = dict(backbone=dict(
        type='ModzooBackbone', model_name='zoo_focalnet_tiny_srf', focal_windows=(9, 9, 9, 9), out_norms=True,
        drop_path_rate=0.3, init_cfg=dict(type='Pretrained', checkpoint='focalnet_tiny_srf.pth')))
"""
import functools
import inspect
import logging
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import timm
import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d
from timm.models import build_model_with_cfg, group_parameters
from torch.nn.modules.batchnorm import _BatchNorm

import modzoo
from modzoo.layers.arg_check import check_out_indices
from .pretrained import LoadReport, features_load_hint, fetch_checkpoint, load_adapter_part, read_backbone_layout
from .registry import register_module

__all__ = ['ModzooBackbone', 'SFMFeatures']


class SFMFeatures(tuple):
    """The maps of an SFM backbone on the uniform grid (the tuple itself, for any neck or head), plus:

    * ``modulated``: the maps as the network computed them; map ``i`` lives in the coordinates of the first
      ``levels[i]`` warps (the stride-2 transitions it went through);
    * ``warps``: this call's :class:`~modzoo.layers.sfm.SeparableWarp` per transition, shallowest first;
    * ``levels``: the number of warps behind each map.

    It passes through mmseg's segmentors unchanged (they hand the backbone output to the heads as is), so an SFM-aware
    head can demodulate the ``modulated`` maps itself (MSAU) while plain heads read the uniform ones.
    """

    def __new__(cls, maps=(), modulated=None, warps=None, levels=None):
        obj = super().__new__(cls, maps)
        obj.modulated = tuple(modulated) if modulated is not None else tuple(maps)
        obj.warps = list(warps or [])
        obj.levels = tuple(levels) if levels is not None else (0,) * len(obj)
        return obj


@register_module(scopes=('mmseg', 'mmdet'))
class ModzooBackbone(BaseModule):
    """Any ``zoo_*`` model as a multi-scale OpenMMLab backbone returning a tuple of NCHW maps.

    Args:
        model_name: a registered modzoo model (``modzoo.list_models()``), e.g. ``'zoo_focalnet_tiny_srf'``.
        out_indices: feature taps to return (indices into the model's ``feature_info``; 0..3 are strides 4..32).
        frozen_stages: -1 trains everything; 0 freezes the stem; k >= 1 also freezes stages 0..k-1 (eval mode, no
            gradients), as in MMDetection's Swin/ResNet.
        norm_eval: keep every BatchNorm of the backbone in eval mode during training (LayerNorms have no running
            statistics, so for LN-only families this changes nothing).
        drop_path_rate: stochastic depth of the backbone (None: the model's default).
        out_norms: add a LayerNorm to every output. ``True`` uses the family's own per-stage output norms when the
            model has an ``out_norms`` option (FocalNet: the ``norm{i}`` of the official dense backbones, so their
            checkpoints load), otherwise LayerNorms held by this adapter (``out_norms.{i}``). None/False: none.
        with_cp: gradient checkpointing inside the model (less memory, more compute).
        pretrained: checkpoint path/URL; what EncoderDecoder passes down from a segmentor-level ``pretrained``.
            Same as ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL, prefix=None, strict=True, trust_pickle=False)``
            loads official / timm / HF transformers classification checkpoints, full mmengine training checkpoints
            and other implementations' detector/segmentor checkpoints (``backbone.`` prefix, e.g. mmdet's PVT)
            through the family's checkpoint filter, logging every tensor loaded, left at init or unused.
            ``open-mmlab://``-style locations of the replaced backbone are refused with the config key to reset.
        sfm: SFM adaptive resampling in front of the model's stride-2 stage transitions (its
            ``stage_transitions()``): a dict of :class:`~modzoo.layers.sfm.SFM` options (``min_density``, or
            ``transitions``/``in_chs`` to override what the model declares), ``dict()`` for the defaults. The
            resamplers start as the identity warp (the outputs equal the plain backbone's until trained), their keys
            are ``resamplers.*`` beside the unchanged ``model.*``, and ``forward`` returns :class:`SFMFeatures`.
            None (default): no resampling.
        **model_kwargs: passed to the model constructor (``in_chans``, family options such as ``focal_windows``).
    """

    def __init__(
            self,
            model_name: str,
            out_indices: Sequence[int] = (0, 1, 2, 3),
            frozen_stages: int = -1,
            norm_eval: bool = False,
            drop_path_rate: Optional[float] = None,
            out_norms: Optional[bool] = None,
            with_cp: bool = False,
            pretrained: Optional[str] = None,
            init_cfg: Optional[Union[dict, List[dict]]] = None,
            sfm: Optional[dict] = None,
            **model_kwargs: Any,
    ):
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f'pretrained must be a checkpoint path/URL or None, got {type(pretrained).__name__}')
            if init_cfg is not None:
                _refuse_replaced_backbone_weights(pretrained, 'model.pretrained (or model.backbone.pretrained)')
                raise ValueError('Set either pretrained or init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
            # EncoderDecoder hands a segmentor-level `pretrained` down as the backbone's
            self._checkpoint_key = 'model.pretrained (or model.backbone.pretrained)'
        else:
            self._checkpoint_key = 'model.backbone.init_cfg.checkpoint'
        super().__init__(init_cfg=init_cfg)
        if not model_name:
            raise ValueError('ModzooBackbone needs model_name (one of modzoo.list_models())')
        modzoo.model_family(model_name)  # clear error (with suggestions) for a name modzoo does not register
        check_out_indices(f'ModzooBackbone({model_name})', out_indices, _num_feature_taps(model_name, model_kwargs))
        self.model_name = model_name
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        kwargs = dict(model_kwargs)
        if drop_path_rate is not None:
            kwargs['drop_path_rate'] = drop_path_rate
        accepted = _accepted_model_kwargs(model_name)
        # a family with output norms of its own builds them; for the others this adapter adds LayerNorms
        family_out_norms = bool(out_norms) and (accepted is None or 'out_norms' in accepted)
        if family_out_norms:
            kwargs['out_norms'] = True
        unknown = sorted(k for k in kwargs if accepted is not None and k not in accepted)
        if unknown:
            raise TypeError(
                f'{model_name} does not accept these model kwargs {sorted(kwargs)}: no parameter named '
                f'{", ".join(unknown)}. If they come from the base config\'s backbone (a stock config with only the '
                f'backbone swapped), add _delete_=True to model.backbone so that only the ModzooBackbone keys you set '
                f'remain')
        features = modzoo.create_model(
            model_name, pretrained=False, features_only=True, out_indices=tuple(out_indices), **kwargs)
        if not hasattr(getattr(features, 'model', None), 'forward_intermediates'):
            raise TypeError(
                f'{model_name} built a {type(features).__name__} for features_only; modzoo families must use '
                f"feature_cfg=dict(feature_cls='getter') so their forward_intermediates provides the taps")
        self._model_kwargs = kwargs
        # keep the network itself (keys `model.<family layout>`) and the taps timm resolved
        self.model = features.model
        self.out_indices = tuple(features.out_indices)
        self.feature_info = features.feature_info
        self.out_channels = list(self.feature_info.channels())
        self.strides = list(self.feature_info.reduction())
        if out_norms and not family_out_norms:
            self.out_norms = nn.ModuleList([LayerNorm2d(c) for c in self.out_channels])
        else:
            self.out_norms = None
        if with_cp:
            self.model.set_grad_checkpointing(True)
        self.resamplers = self._attach_resamplers(sfm) if sfm is not None else None
        self._stage_groups = self._stage_param_groups() if frozen_stages >= 0 else []
        self._frozen = self._find_frozen_modules()
        self._freeze_stages()
        self._last_load_report: Optional[LoadReport] = None
        # one line for whoever writes the neck: its in_channels must be these
        print_log(f'{type(self).__name__}({model_name}): out_channels={self.out_channels}, strides={self.strides} '
                  f'(out_indices={list(self.out_indices)})', logger='current', level=logging.INFO)

    # ---------------------------------------------------------------------------------------------------------------
    # forward

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.resamplers is not None:
            return self._forward_sfm(x)
        return tuple(self._features(x))

    def _features(self, x: torch.Tensor) -> List[torch.Tensor]:
        features = self.model.forward_intermediates(
            x, indices=self.out_indices, norm=False, output_fmt='NCHW', intermediates_only=True)
        if self.out_norms is not None:
            features = [norm(f) for norm, f in zip(self.out_norms, features, strict=True)]
        return features

    # ---------------------------------------------------------------------------------------------------------------
    # SFM

    def _attach_resamplers(self, sfm: dict) -> nn.ModuleList:
        from modzoo.layers.sfm import SFM
        if not isinstance(sfm, dict):
            raise TypeError(f'sfm must be a dict of SFM options (dict() for the defaults), got {type(sfm).__name__}')
        # SFM hooks an ARS onto each transition module of the model; only the resamplers are kept (the hooks stay),
        # so the network's keys remain `model.*` and plain checkpoints load as before
        wrapper = SFM(self.model, **sfm)
        if max(self.out_indices) > len(wrapper.transitions):
            raise ValueError(f'{self.model_name}: out_indices {self.out_indices} reach past the '
                             f'{len(wrapper.transitions)} resampled transitions')
        self.sfm_transitions = list(wrapper.transitions)
        return wrapper.resamplers

    def _forward_sfm(self, x: torch.Tensor) -> 'SFMFeatures':
        from modzoo.layers.sfm import demodulate, record_warps
        modulated, warps = record_warps(self.resamplers, self._features, x)
        levels = self.out_indices  # feature tap i comes after the transitions 0..i-1
        needed = max(levels)
        if any(w is None for w in warps[:needed]):
            raise RuntimeError(f'{self.model_name}: SFM transitions {self.sfm_transitions} did not all run')
        # exact inverse of the recorded warps, at each map's own size: aligned maps for any neck or head
        uniform = [f if k == 0 else demodulate(f, warps[:k]) for f, k in zip(modulated, levels, strict=True)]
        return SFMFeatures(uniform, modulated=modulated, warps=warps[:needed], levels=levels)

    # ---------------------------------------------------------------------------------------------------------------
    # freezing

    def _stage_param_groups(self) -> List[List[str]]:
        """Parameter names per group: [stem, stage 0, stage 1, ...] from the family's coarse group matcher."""
        if not hasattr(self.model, 'group_matcher'):
            raise TypeError(f'{self.model_name} has no group_matcher; frozen_stages needs it to find the stages')
        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        ordered = [groups[k] for k in sorted(groups)]
        num_stages = max(self.out_indices) + 1
        if len(ordered) < num_stages + 1:
            raise ValueError(
                f'{self.model_name}: group_matcher(coarse=True) gives {len(ordered)} parameter groups, expected the '
                f'stem plus one group per stage ({num_stages + 1}); frozen_stages cannot be applied')
        return ordered

    def _frozen_param_names(self) -> set:
        if self.frozen_stages < 0:
            return set()
        if self.frozen_stages >= len(self._stage_groups):
            raise ValueError(f'frozen_stages={self.frozen_stages} but {self.model_name} has only '
                             f'{len(self._stage_groups) - 1} stages')
        names = set()
        for group in self._stage_groups[:self.frozen_stages + 1]:
            names.update(group)
        return names

    def _find_frozen_modules(self) -> List[nn.Module]:
        """The outermost modules whose parameters are all frozen (they and their children go to eval mode)."""
        frozen = self._frozen_param_names()
        if not frozen:
            return []
        modules, covered = [], []
        for name, module in self.model.named_modules():
            if any(name.startswith(c + '.') for c in covered):
                continue
            params = [n for n, _ in module.named_parameters(prefix=name, recurse=True)]
            if params and all(p in frozen for p in params):
                modules.append(module)
                covered.append(name)
        return modules

    def _freeze_stages(self) -> None:
        frozen = self._frozen_param_names()
        for name, param in self.model.named_parameters():
            if name in frozen:
                param.requires_grad = False
        for module in self._frozen:
            module.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            for module in self._frozen:
                module.eval()  # frozen stages: no dropout / drop path / BN statistics updates
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, _BatchNorm):
                        module.eval()
        return self

    # ---------------------------------------------------------------------------------------------------------------
    # weights

    def init_weights(self) -> None:
        """Load ``init_cfg`` Pretrained checkpoints through the family filter; other init_cfgs go to mmengine.

        Without an init_cfg the model keeps the initialisation its family gave it at construction (timm models
        initialise themselves; re-running a generic init would change the paper's scheme).
        """
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        others = [c for c in cfgs if c.get('type') != 'Pretrained']
        if len(pretrained) > 1:
            raise ValueError('At most one Pretrained init_cfg is supported')
        if others:
            saved, self.init_cfg = self.init_cfg, others
            super().init_weights()
            self.init_cfg = saved
        if pretrained:
            cfg = dict(pretrained[0])
            cfg.pop('type')
            checkpoint = cfg.pop('checkpoint', None)
            if checkpoint is None:
                raise ValueError("init_cfg type='Pretrained' needs a checkpoint")
            cfg.pop('map_location', None)  # always read to CPU
            _refuse_replaced_backbone_weights(checkpoint, self._checkpoint_key)
            self.load_pretrained(checkpoint, **cfg)
        self._is_init = True

    def load_pretrained(
            self,
            checkpoint: Union[str, Dict[str, Any]],
            prefix: Optional[str] = None,
            strict: bool = True,
            trust_pickle: bool = False,
            allow_non_finite: bool = False,
    ) -> LoadReport:
        """Load a classification or dense-task checkpoint (path, URL or dict) into the backbone.

        Args:
            checkpoint: official/timm classification file, OpenMMLab checkpoint (``backbone.``/``state_dict``),
                or a checkpoint written by this adapter.
            prefix: take only the tensors under this key prefix (mmengine's Pretrained ``prefix``).
            strict: raise :class:`~modzoo.CheckpointMismatchError` on anything that does not fit.
            trust_pickle: allow a full unpickle for files that store Python objects besides tensors.
            allow_non_finite: load NaN/Inf values instead of refusing the checkpoint.
        """
        ckpt = fetch_checkpoint(checkpoint, trust_pickle=trust_pickle, prefix=prefix)
        layout = read_backbone_layout(ckpt.state_dict)
        if layout.resamplers and self.resamplers is None and strict:  # before anything is loaded
            raise ValueError(f'{_describe(checkpoint)} holds SFM resamplers but this backbone has sfm=None; '
                             f'build it with sfm=dict() or load with strict=False')
        report = modzoo.models.load_checkpoint(
            self.model, ckpt._replace(state_dict=layout.network), strict=strict, pruned=self._pruned_keys(),
            model_name=f'{self.model_name} (features-only backbone)', allow_non_finite=allow_non_finite,
            hint=features_load_hint).load_report
        for part in ('out_norms', 'resamplers'):
            report.add(part, load_adapter_part(getattr(self, part), getattr(layout, part), f'{self.model_name} {part}',
                                               ckpt.source, strict))
        self._last_load_report = report
        print_log(f'{type(self).__name__}({self.model_name}) weights from {_describe(checkpoint)}: '
                  f'{report.summary()}', logger='current', level=logging.INFO)
        self._freeze_stages()
        return report

    def _pruned_keys(self) -> List[str]:
        """State-dict keys of the layers timm's features wrapper pruned (final norm, classifier), read from the
        unpruned model built on the meta device (no memory, no init cost)."""
        with torch.device('meta'):
            full = modzoo.create_model(self.model_name, pretrained=False, **self._model_kwargs)
        kept = set(self.model.state_dict())
        return [k for k in full.state_dict() if k not in kept]


def _num_feature_taps(model_name: str, model_kwargs: Dict[str, Any]) -> Optional[int]:
    """How many feature taps the model has (built on the meta device: no memory, no weights); None when the kwargs
    do not build (the constructor then reports them itself)."""
    try:
        with torch.device('meta'):
            probe = modzoo.create_model(model_name, pretrained=False, **model_kwargs)
    except Exception:  # noqa: BLE001 - the real build below raises the right error
        return None
    info = getattr(probe, 'feature_info', None)
    return len(info) if info is not None else None


@functools.lru_cache(maxsize=None)
def _accepted_model_kwargs(model_name: str) -> Optional[FrozenSet[str]]:
    """The keyword arguments ``create_model(model_name, **kwargs)`` accepts (None: any, the class takes ``**kwargs``).

    Those of the model class (read from a model built on the meta device: no memory, no init cost) plus those that
    timm's ``create_model`` and ``build_model_with_cfg`` take themselves.
    """
    with torch.device('meta'):
        model_cls = type(modzoo.create_model(model_name, pretrained=False))
    if _takes_var_keyword(model_cls):
        return None
    return _named_params(model_cls) | _named_params(timm.create_model) | _named_params(build_model_with_cfg)


def _takes_var_keyword(fn) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def _named_params(fn) -> FrozenSet[str]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds)


# checkpoint locations that mmengine resolves to the weights of its own backbones (ResNet, Swin, ...)
_REPLACED_BACKBONE_SCHEMES = ('open-mmlab://', 'openmmlab://', 'torchvision://', 'mmcls://', 'mmpretrain://',
                              'modelzoo://')


def _refuse_replaced_backbone_weights(checkpoint: Any, config_key: str) -> None:
    """One clear line for a stock config's pretrained location, which belongs to the backbone it replaced."""
    if isinstance(checkpoint, str) and checkpoint.startswith(_REPLACED_BACKBONE_SCHEMES):
        raise ValueError(
            f'{config_key}={checkpoint!r} names weights of the backbone this config replaced, not of '
            f'ModzooBackbone: set it to None (modzoo weights go in model.backbone.init_cfg=dict(type="Pretrained", '
            f'checkpoint=...))')


def _describe(checkpoint: Any) -> str:
    return checkpoint if isinstance(checkpoint, str) else f'<{type(checkpoint).__name__}>'
