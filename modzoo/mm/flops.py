"""FLOPs and parameters of a whole segmentor/detector config, counted the way the papers' tables count them.

fvcore's JIT-trace counter (the one behind mmengine's ``get_model_complexity_info``, which MMSegmentation/MMDetection's
``tools/analysis_tools/get_flops.py`` use) on the inference forward (``mode='tensor'``): the backbone, neck and
decode head (segmentors: not the auxiliary head, which inference skips), for detectors the RPN and RoI heads on the
config's test-time proposal count. Conventions:

* one fused multiply-add counts as one FLOP (fvcore, mmcv and the FocalNet/Swin/SMT/PVT papers all count MACs);
* elementwise ops (add, mul, activations, softmax) are not counted (fvcore's choice, also the papers');
* ``scaled_dot_product_attention`` is counted (``Q K^T`` plus ``A V``) through the zoo's shared fvcore handles
  (:data:`modzoo.utils.flops.FLOP_HANDLES`); fvcore alone would drop all attention FLOPs (PVT, SMT, EfficientMod).

Every op fvcore skipped is returned, so an undercount is visible rather than silent.
"""
import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ['ComplexityReport', 'count_config_flops', 'main']


@dataclass
class ComplexityReport:
    config: str
    shape: Tuple[int, int]
    gflops: float  # fvcore, FMA = 1
    params_m: float  # every parameter of the model
    params_inference_m: float  # without auxiliary heads (what inference runs)
    backbone_gflops: float
    backbone_params_m: float
    skipped_ops: Dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        rows = [
            ('config', self.config),
            ('input shape', f'{self.shape[0]}x{self.shape[1]}'),
            ('GFLOPs (fvcore, FMA=1)', f'{self.gflops:.1f}'),
            ('params (M)', f'{self.params_m:.2f}'),
            ('params without auxiliary heads (M)', f'{self.params_inference_m:.2f}'),
            ('backbone GFLOPs', f'{self.backbone_gflops:.1f}'),
            ('backbone params (M)', f'{self.backbone_params_m:.2f}'),
            ('ops not counted', ', '.join(f'{k} x{v}' for k, v in sorted(self.skipped_ops.items())) or '-'),
        ]
        width = max(len(r[0]) for r in rows)
        return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)


class _InferenceForward(nn.Module):
    """The model's ``mode='tensor'`` forward with fixed data samples, returning a flat tuple of tensors."""

    def __init__(self, model: nn.Module, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return tuple(_flatten(self.model(inputs, self.data_samples, mode='tensor')))


def _flatten(out) -> List[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten(o)]
    return []


def _data_samples(scope: str, shape: Tuple[int, int]):
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1., 1.))
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta)]
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=meta)]


def _count(module: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> Tuple[float, Counter]:
    from modzoo.utils.flops import FLOP_HANDLES, flop_count_analysis
    analysis = flop_count_analysis()(module, inputs).set_op_handle(**FLOP_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings('none')
    total = analysis.total()
    return total, Counter(analysis.unsupported_ops())


def count_config_flops(config, shape: Sequence[int] = (512, 2048)) -> ComplexityReport:
    """FLOPs/params of a config's model (path or Config) on one ``3 x H x W`` input, and of its backbone alone."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from .smoke import cheapen_model_cfg, models_registry, scope_of

    cfg = Config.fromfile(config) if isinstance(config, str) else config
    scope = scope_of(cfg)
    model_cfg = cheapen_model_cfg(cfg.model, few_boxes=False)  # a deep copy: the caller's config stays as it was
    # fixed weights: a detector's FLOPs depend on how many boxes survive NMS, so an unseeded init varied them by ~1%
    with torch.random.fork_rng(), DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        model = models_registry(scope).build(model_cfg)
    model.eval()
    h, w = int(shape[0]), int(shape[1])
    x = torch.zeros(1, 3, h, w)
    with torch.no_grad(), DefaultScope.overwrite_default_scope(scope):
        total, skipped = _count(_InferenceForward(model, _data_samples(scope, (h, w))), (x,))
        backbone_total, _ = _count(model.backbone, (x,))
    params = sum(p.numel() for p in model.parameters())
    aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith('auxiliary_head.'))
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    return ComplexityReport(
        config=getattr(cfg, 'filename', '') or '<config>',
        shape=(h, w),
        gflops=total / 1e9,
        params_m=params / 1e6,
        params_inference_m=(params - aux) / 1e6,
        backbone_gflops=backbone_total / 1e9,
        backbone_params_m=backbone_params / 1e6,
        skipped_ops=dict(skipped),
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``tools/analysis/get_flops.py``: print the report of each config (and write them all to ``--json``)."""
    parser = argparse.ArgumentParser(
        description='FLOPs and parameters of a whole MMSegmentation/MMDetection config (fvcore, one FMA = one FLOP).')
    parser.add_argument('config', nargs='+', help='config file(s)')
    parser.add_argument('--shape', type=int, nargs='+', default=[512, 2048], help='input H W (one value: square)')
    parser.add_argument('--json', help='also write the reports to this JSON file')
    args = parser.parse_args(argv)
    shape = args.shape * 2 if len(args.shape) == 1 else args.shape
    if len(shape) != 2:
        parser.error('--shape takes H W or a single size')
    reports = []
    for config in args.config:
        report = count_config_flops(config, shape)
        reports.append(report)
        print(report.table(), end='\n\n')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump([r.__dict__ for r in reports], f, indent=1)
