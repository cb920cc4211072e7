#!/usr/bin/env python
"""Modulator and gate maps of one stage of a modulation network for one image, saved as a PNG.

    python tools/visualize_modulation.py --model zoo_focalnet_tiny_srf --pretrained --image cat.jpg --stage 2 \
        --out cat_focalnet_stage2.png
    python tools/visualize_modulation.py --model zoo_efficientmod_xxs --checkpoint runs/x/best.pth --image 7.png

As in the FocalNet paper's figures, each block of the stage gets a row: the input, the modulator's magnitude
(L2 norm over channels of ``m``, the tensor that multiplies the query/value) and, where the family has them, the
per-level gates. Maps are captured with forward hooks on the modulation modules' sub-layers, so the models carry no
visualisation state (the official FocalNet/SMT code stores ``self.modulator`` on every forward instead).

Supported modulation modules, by class (one table entry per family; add a row for a new family):

* ``FocalModulation`` (FocalNet): modulator = output of ``h`` (``m = h(ctx_all)``, ``y = q * m``); gates = the last
  ``focal_level + 1`` channels of ``f``'s output (one per focal level, plus the global level).
* ``EfficientModulation`` (EfficientMod): modulator = output of ``context_layer`` (``ctx``, tiled over the value).
* ``ScaleAwareModulation`` (SMT): modulator = output of ``proj1`` (``SAA(MHMC(s))``, multiplies ``v``).

GridPE-PVT has attention, not modulation, and is refused with that reason.
"""
import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['ModulationTap', 'TAPS', 'VisualizeError', 'modulation_modules', 'stage_of_modules', 'default_stage',
           'collect_maps', 'render', 'visualize', 'main']


@dataclass(frozen=True)
class ModulationTap:
    family: str
    modulator: str  # sub-module whose output is the modulator
    layout: str  # 'nchw' or 'nhwc' (channels-last) output of that sub-module
    gate_source: Optional[str] = None
    gates: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None  # (module, source output) -> B,G,H,W
    gate_labels: Optional[Callable[[nn.Module], List[str]]] = None


def _focal_gates(module: nn.Module, f_out: torch.Tensor) -> torch.Tensor:
    return f_out[:, -(module.focal_level + 1):]


def _focal_gate_labels(module: nn.Module) -> List[str]:
    return [f'gate level {i + 1} (k={k})' for i, k in enumerate(module.kernel_sizes)] + ['gate global']


TAPS: Dict[str, ModulationTap] = {
    'FocalModulation': ModulationTap('focalnet', 'h', 'nchw', 'f', _focal_gates, _focal_gate_labels),
    'EfficientModulation': ModulationTap('efficientmod', 'context_layer', 'nhwc'),
    'ScaleAwareModulation': ModulationTap('smt', 'proj1', 'nchw'),
}


class VisualizeError(ValueError):
    """The model has no supported modulation modules, or the chosen stage has none."""


def modulation_modules(model: nn.Module) -> Dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if type(m).__name__ in TAPS}


def stage_of_modules(model: nn.Module, names: Sequence[str]) -> Dict[str, int]:
    """Stage index of each named module, from ``feature_info``: the first stage tap that is an ancestor of the
    module or comes after it in module order (stage containers such as FocalNet's ``layers.i`` are ancestors;
    SMT's per-stage ``norm{i}`` follows its blocks)."""
    taps = [f['module'] for f in getattr(model, 'feature_info', [])]
    if not taps:
        return {n: 0 for n in names}
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    stages = {}
    for name in names:
        for idx, tap in enumerate(taps):
            if name.startswith(tap + '.') or order.get(tap, -1) > order[name]:
                stages[name] = idx
                break
        else:
            stages[name] = len(taps) - 1
    return stages


def default_stage(model: nn.Module, image_size: int, min_side: int = 4) -> int:
    """The deepest stage with modulation whose maps are at least ``min_side`` pixels across at this input size
    (deeper maps are more semantic; a 1x1 map shows nothing), else the first stage with modulation."""
    mods = modulation_modules(model)
    stages = sorted(set(stage_of_modules(model, list(mods)).values())) if mods else [0]
    info = getattr(model, 'feature_info', None) or []
    big_enough = [s for s in stages if s < len(info) and image_size // info[s]['reduction'] >= min_side]
    return big_enough[-1] if big_enough else stages[0]


@torch.no_grad()
def collect_maps(model: nn.Module, x: torch.Tensor, stage: int, return_output: bool = False):
    """Run ``model`` on ``x`` (batch 1) and return, per modulation block of ``stage``: its name, the modulator
    magnitude (H, W), the gate maps (G, H, W) or None, and the gate labels (and the model output when asked)."""
    mods = modulation_modules(model)
    if not mods:
        supported = ', '.join(f'{k} ({t.family})' for k, t in TAPS.items())
        arch = getattr(model, 'pretrained_cfg', {}).get('architecture', type(model).__name__)
        raise VisualizeError(f'{arch} has no modulation modules to visualise (supported: {supported}); '
                             'attention models such as GridPE-PVT have attention maps, not modulators')
    stages = stage_of_modules(model, list(mods))
    available = sorted(set(stages.values()))
    chosen = [n for n in mods if stages[n] == stage]
    if not chosen:
        raise VisualizeError(f'stage {stage} has no modulation blocks; stages with modulation: {available}')
    captured: Dict[str, Dict[str, torch.Tensor]] = {n: {} for n in chosen}
    handles = []

    def hook(store: Dict, key: str):
        def fn(_module, _inputs, output):
            store[key] = output.detach()
        return fn

    try:
        for name in chosen:
            module, tap = mods[name], TAPS[type(mods[name]).__name__]
            handles.append(module.get_submodule(tap.modulator).register_forward_hook(hook(captured[name], 'mod')))
            if tap.gate_source:
                handles.append(module.get_submodule(tap.gate_source).register_forward_hook(
                    hook(captured[name], 'gate_src')))
        output = model.eval()(x)
    finally:
        for h in handles:
            h.remove()

    rows = []
    for name in chosen:
        module, tap = mods[name], TAPS[type(mods[name]).__name__]
        m = captured[name]['mod'][0].float()
        if tap.layout == 'nhwc':
            m = m.permute(2, 0, 1)
        row = {'name': name, 'modulator': m.norm(dim=0), 'gates': None, 'gate_labels': []}
        if tap.gates is not None and 'gate_src' in captured[name]:
            row['gates'] = tap.gates(module, captured[name]['gate_src'])[0].float()
            row['gate_labels'] = tap.gate_labels(module)
        rows.append(row)
    return (rows, output) if return_output else rows


def render(image: torch.Tensor, rows: List[Dict], title: str, out: str) -> str:
    """Write the figure: one row per block (input, modulator magnitude, gates) with heatmaps over the image."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError('visualisation needs matplotlib (pip install "modzoo[dev]" or matplotlib)') from e
    h, w = image.shape[-2:]
    img = image.permute(1, 2, 0).clamp(0, 1).numpy()
    cols = 2 + max((len(r['gate_labels']) for r in rows), default=0)
    fig, axes = plt.subplots(len(rows), cols, figsize=(max(2.4 * cols, 6.0), 2.5 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        maps = [('|modulator|', row['modulator'])]
        if row['gates'] is not None:
            maps += list(zip(row['gate_labels'], row['gates'], strict=True))
        axes[i][0].imshow(img)
        axes[i][0].set_title(row['name'], fontsize=7)
        for j, (label, fmap) in enumerate(maps, start=1):
            up = F.interpolate(fmap[None, None], size=(h, w), mode='bilinear', align_corners=False)[0, 0]
            lo, hi = float(fmap.min()), float(fmap.max())
            if hi - lo <= 1e-6 * max(abs(hi), 1.0):  # a constant map (e.g. 1x1): draw it flat, not rounding noise
                up, lo, hi = torch.zeros_like(up), 0.0, 1.0
            axes[i][j].imshow(img.mean(-1), cmap='gray')
            axes[i][j].imshow(up.numpy(), cmap='jet', alpha=0.55, vmin=lo, vmax=hi)
            axes[i][j].set_title(f'{label} ({fmap.shape[-2]}x{fmap.shape[-1]})', fontsize=7)
        for ax in axes[i]:
            ax.axis('off')
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def visualize(model_name: str, image_path: str, out: str, stage: Optional[int] = None,
              checkpoint: Optional[str] = None, pretrained: bool = False, model_kwargs=None,
              img_size: Optional[int] = None) -> Dict:
    from PIL import Image
    from timm.data import create_transform
    from modzoo.train.validate import load_model_for_inference
    if not os.path.isfile(image_path):
        raise FileNotFoundError(f'image not found: {image_path!r}')
    model, cfg, _ = load_model_for_inference(model_name, checkpoint, pretrained, model_kwargs,
                                             overrides=dict(img_size=img_size))
    tf = create_transform(cfg['input_size'], is_training=False, interpolation=cfg['interpolation'],
                          crop_pct=cfg['crop_pct'], mean=cfg['mean'], std=cfg['std'])
    x = tf(Image.open(image_path).convert('RGB'))[None]
    mean = torch.tensor(cfg['mean'])[:, None, None]
    std = torch.tensor(cfg['std'])[:, None, None]
    shown = x[0] * std + mean
    if stage is None:
        stage = default_stage(model, min(cfg['input_size'][1:]))
    rows, logits = collect_maps(model, x, stage, return_output=True)
    probs = logits.softmax(-1)[0]
    top = int(probs.argmax())
    title = f'{model_name}, stage {stage} ({len(rows)} modulation blocks); prediction: class {top} ({probs[top]:.2f})'
    render(shown, rows, title, out)
    return {'out': out, 'stage': stage, 'blocks': [r['name'] for r in rows], 'prediction': top}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', required=True)
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--pretrained', action='store_true')
    p.add_argument('--model-kwargs', nargs='*', default=None, metavar='KEY=VALUE')
    p.add_argument('--image', required=True)
    p.add_argument('--stage', type=int, default=None,
                   help='stage index (default: the deepest stage with modulation and maps of at least 4x4)')
    p.add_argument('--img-size', type=int, default=None)
    p.add_argument('--out', default=None, help='PNG path (default: <image>_<model>_stage<k>.png)')
    args = p.parse_args(argv)
    from modzoo.models import CheckpointMismatchError, UnknownModelError
    from modzoo.train.config import ConfigError
    stage_tag = args.stage if args.stage is not None else 'last'
    out = args.out or os.path.splitext(args.image)[0] + f'_{args.model}_stage{stage_tag}.png'
    try:
        result = visualize(args.model, args.image, out, args.stage, args.checkpoint, args.pretrained,
                           args.model_kwargs, args.img_size)
    except (VisualizeError, ConfigError, UnknownModelError, CheckpointMismatchError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {result["out"]} (stage {result["stage"]}: {", ".join(result["blocks"])})')
    return 0
