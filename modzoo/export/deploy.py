"""Deployment-time rewrites of an eval-mode model: fold BatchNorm into convolutions, run re-parameterisation hooks.

Inference graphs are smaller and faster when every ``Conv -> BatchNorm`` pair is one convolution. Models that know
their own structure expose a hook (SMT's ``fuse_bn()``, timm-style ``reparameterize()`` / ``fuse()``); everything else
gets a generic fold of BatchNorm layers that directly follow a convolution inside an ``nn.Sequential`` or an OpenMMLab
``ConvModule`` (the places where "directly follows" can be read off the module tree without tracing). Dropout and
DropPath are already identities in eval mode, so no training-only branch survives :func:`prepare_for_deploy` in the
forward pass.

:func:`prepare_for_export` is the one way in for an export: :func:`prepare_for_deploy`, then the *export forms* of
the target format (see its docstring for how a module provides one).
"""
import inspect
import logging
from typing import Callable, Dict, List, Optional

import torch.nn as nn
from timm.models.pvt_v2 import MlpWithDepthwiseConv

from modzoo.layers import MatmulAdaptiveAvgPool2d, fold_conv_bn
from modzoo.layers.onnx_forms import ONNX_TARGETS, mlp_with_depthwise_conv_form
from modzoo.layers.mobile_forms import mobile_foreign_forms

_logger = logging.getLogger(__name__)

__all__ = [
    'EXPORT_TARGETS', 'ONNX_TARGETS', 'FOREIGN_EXPORT_FORMS', 'prepare_for_export', 'apply_export_forms',
    'prepare_for_deploy', 'fold_conv_bn', 'fuse_sequential_conv_bn', 'fuse_convmodule_bn', 'MatmulAdaptiveAvgPool2d',
    'replace_adaptive_avg_pools',
]

# Model-level hooks, tried in this order on the model itself; the first one present is called.
MODEL_HOOKS = ('fuse_bn', 'switch_to_deploy', 'reparameterize')
# Sub-module hooks (timm's reparameterize_model convention and MobileOne/RepVGG-style blocks).
MODULE_HOOKS = ('reparameterize', 'fuse', 'switch_to_deploy')

# The formats prepare_for_export knows; a module's export_form() gets one of these. ONNX_TARGETS ('onnx' for ONNX
# Runtime, 'openvino') are the two written as an ONNX graph.
EXPORT_TARGETS = (*ONNX_TARGETS, 'executorch', 'coreml')
# Export forms of module types modzoo does not define (timm's, torch's), per target: ``{target: {type: make}}``,
# ``make(module) -> replacement or None``. Exact types only (a subclass may compute something else).
FOREIGN_EXPORT_FORMS: Dict[str, Dict[type, Callable[[nn.Module], Optional[nn.Module]]]] = {
    target: {} for target in EXPORT_TARGETS}
for _target in ONNX_TARGETS:
    FOREIGN_EXPORT_FORMS[_target][MlpWithDepthwiseConv] = mlp_with_depthwise_conv_form  # GridPE-PVT's FFN
# phones: XNNPACK has no LayerNorm and takes a global mean only as mean((2, 3), keepdim=True); Core ML cannot
# translate the as_strided view adaptive_avg_pool2d(1) exports as (modzoo.layers.mobile_forms)
for _target in ('executorch', 'coreml'):
    FOREIGN_EXPORT_FORMS[_target].update(mobile_foreign_forms(_target))


def fuse_sequential_conv_bn(model: nn.Module) -> int:
    """Fold every ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential``; returns the count.

    The BatchNorm is replaced by ``nn.Identity`` so the Sequential keeps its length and child names.
    """
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names: List[str] = list(module._modules.keys())
        for first, second in zip(names, names[1:], strict=False):
            conv, bn = module._modules[first], module._modules[second]
            if type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels:
                module._modules[first] = fold_conv_bn(conv, bn)
                module._modules[second] = nn.Identity()
                folded += 1
    return folded


def fuse_convmodule_bn(model: nn.Module) -> int:
    """Fold the BatchNorm of every OpenMMLab ``ConvModule`` (``order`` with ``'norm'`` right after ``'conv'``) into
    its conv; returns the count. Duck-typed on the module's ``conv``/``norm_name``/``order`` attributes, so mmcv
    is not imported."""
    folded = 0
    for module in model.modules():
        order = getattr(module, 'order', None)
        norm_name = getattr(module, 'norm_name', None)
        conv = getattr(module, 'conv', None)
        if not (isinstance(order, tuple) and isinstance(norm_name, str) and type(conv) is nn.Conv2d):
            continue
        bn = getattr(module, norm_name, None)
        if not isinstance(bn, nn.BatchNorm2d) or 'conv' not in order or 'norm' not in order:
            continue
        if order.index('norm') != order.index('conv') + 1 or bn.num_features != conv.out_channels:
            continue
        module.conv = fold_conv_bn(conv, bn)
        setattr(module, norm_name, nn.Identity())
        folded += 1
    return folded


def _hook(module: nn.Module, name: str) -> Optional[callable]:
    """``module.<name>`` when it is a method (a sub-module that happens to be called ``fuse`` is not a hook)."""
    fn = getattr(module, name, None)
    return fn if inspect.ismethod(fn) else None


def prepare_for_deploy(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and apply every deployment rewrite it supports (in place; also returned).

    Order: the model's own hook (``fuse_bn`` and friends, see ``MODEL_HOOKS``), then sub-module hooks
    (``MODULE_HOOKS``, as timm's ``reparameterize_model`` does), then the generic Sequential Conv+BN fold for whatever
    is left. A timm ``features_only`` wrapper is looked through (``model.model``).
    """
    model.eval()
    inner = getattr(model, 'model', None)
    target = inner if isinstance(inner, nn.Module) else model
    for root in ({id(model): model, id(target): target}).values():
        for hook in MODEL_HOOKS:
            fn = _hook(root, hook)
            if fn is not None:
                _logger.info('deploy: %s.%s()', type(root).__name__, hook)
                fn()
                break
    for name, module in list(model.named_modules()):
        if module is model or module is target:
            continue
        for hook in MODULE_HOOKS:
            fn = _hook(module, hook)
            if fn is not None:
                _logger.info('deploy: %s.%s()', name, hook)
                fn()
                break
    folded = fuse_sequential_conv_bn(model) + fuse_convmodule_bn(model)
    if folded:
        _logger.info('deploy: folded %d Conv+BatchNorm pairs', folded)
    return model.eval()


def replace_adaptive_avg_pools(model: nn.Module) -> int:
    """Swap every ``nn.AdaptiveAvgPool2d`` with an output other than 1x1 (a global pool, which ONNX has) for
    :class:`MatmulAdaptiveAvgPool2d`; returns the count. Used before export (UperNet's pyramid pooling, 1/2/3/6)."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.AdaptiveAvgPool2d:
                size = child.output_size
                size = (size, size) if isinstance(size, int) else tuple(size)
                if size != (1, 1) and None not in size:
                    setattr(parent, name, MatmulAdaptiveAvgPool2d(size))
                    replaced += 1
    return replaced


def _export_form(module: nn.Module, target: str) -> Optional[nn.Module]:
    make = getattr(module, 'export_form', None)
    if inspect.ismethod(make):
        return make(target)
    foreign = FOREIGN_EXPORT_FORMS[target].get(type(module))
    return foreign(module) if foreign is not None else None


def apply_export_forms(model: nn.Module, target: str) -> int:
    """Replace every sub-module that has an export form for ``target`` by that form (in place); returns the count.

    Children are visited top down and a replaced module's own children are not visited again (its form decides
    what it holds). The model itself is never replaced.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            form = _export_form(child, target)
            if form is not None and form is not child:
                setattr(parent, name, form)
                replaced += 1
    return replaced


def prepare_for_export(model: nn.Module, target: str = 'onnx') -> nn.Module:
    """The one way a model is made ready for an export to ``target`` (in place; also returned, in eval mode).

    1. :func:`prepare_for_deploy`: BatchNorm folding and the models' re-parameterisation hooks (exact up to
       rounding, whatever the target).
    2. Export forms: a module whose computation a target runs faster (or at all) when written differently provides
       ``export_form(self, target: str) -> Optional[nn.Module]``, defined beside the module in its own file; it
       returns the replacement (same outputs, to rounding) or None where it has none for that target. Module types
       modzoo does not own (timm's, torch's) get theirs from ``FOREIGN_EXPORT_FORMS[target]``. A new format adds
       its name to ``EXPORT_TARGETS`` and its forms in these two places; nothing else changes.

    Eager code never sees the forms: they exist only in the model being exported, so a caller who needs the
    original (a parity reference) copies it first.
    """
    if target not in EXPORT_TARGETS:
        raise ValueError(f'unknown export target {target!r}: choose from {", ".join(EXPORT_TARGETS)}')
    prepare_for_deploy(model)
    replaced = apply_export_forms(model, target)
    if replaced:
        _logger.info('export (%s): %d modules in their export form', target, replaced)
    return model.eval()
