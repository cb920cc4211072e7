"""Checkpoint conversion shared by GridPE-PVT v1 and v2: mmdet's PVT layouts and the GridPE rotation buffers."""
import logging
import re
from typing import Dict, List

import torch
import torch.nn as nn


__all__ = ['from_mmdet_pvt', 'gridpe_new_layers', 'gridpe_hint']

_logger = logging.getLogger(__name__)


def from_mmdet_pvt(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """MMDetection's ``PyramidVisionTransformer`` / ``PyramidVisionTransformerV2`` layout -> the official whai362 one.

    mmdet's layout (``layers.{i}.0`` patch embedding, ``layers.{i}.1.{j}`` blocks behind an optional position
    embedding module, ``layers.{i}.2`` stage norm, ``nn.MultiheadAttention`` q/k/v in one ``in_proj``, 1x1-conv FFN
    layers) is the inverse of mmdet's own ``pvt_convert``; the official layout then converts as usual. Other layouts
    pass through unchanged.
    """
    if 'layers.0.0.projection.weight' not in state_dict:
        return state_dict
    with_pos_embed = any(re.fullmatch(r'layers\.\d+\.1\.0\.pos_embed', k) for k in state_dict)
    conv_ffn = any(re.search(r'\.ffn\.layers\.4\.', k) for k in state_dict)
    converted = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r'layers\.(\d+)\.(\d+)\.(.+)', key)
        if m is None:
            converted[key] = value
            continue
        stage, part, rest = int(m.group(1)) + 1, int(m.group(2)), m.group(3)
        if part == 0:  # patch embedding
            converted[f'patch_embed{stage}.' + rest.replace('projection.', 'proj.')] = value
        elif part == 2:  # stage norm (PVT v2)
            converted[f'norm{stage}.{rest}'] = value
        elif rest == '0.pos_embed' and with_pos_embed:
            converted[f'pos_embed{stage}'] = value
        else:
            index, _, name = rest.partition('.')
            block = f'block{stage}.{int(index) - with_pos_embed}.'
            attn = re.fullmatch(r'attn\.attn\.in_proj_(weight|bias)', name)
            if attn:  # q, then k and v: the official q and kv projections
                dim = value.shape[0] // 3
                converted[block + f'attn.q.{attn.group(1)}'] = value[:dim]
                converted[block + f'attn.kv.{attn.group(1)}'] = value[dim:]
                continue
            name = name.replace('attn.attn.out_proj.', 'attn.proj.')
            ffn = re.fullmatch(r'ffn\.layers\.(\d)\.(weight|bias)', name)
            if ffn:
                layer = {'0': 'fc1', '1': 'dwconv.dwconv', '4' if conv_ffn else '3': 'fc2'}[ffn.group(1)]
                if layer in ('fc1', 'fc2') and value.dim() == 4:
                    value = value.flatten(1)  # 1x1 conv -> linear
                name = f'mlp.{layer}.{ffn.group(2)}'
            converted[block + name] = value
    return converted


def gridpe_new_layers(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> List[str]:
    """A plain PVT checkpoint has no GridPE rotations: the model's seeded ones stay (the outputs then differ from
    the plain PVT until the model is fine-tuned)."""
    model_pe = [k for k in model.state_dict() if k.endswith('.grid_pe.omegas')]
    if not model_pe or any(k.endswith('.grid_pe.omegas') for k in state_dict):
        return []
    _logger.warning(
        'Loading a plain PVT checkpoint into a GridPE model: GridPE adds fixed rotations (seeded buffers) to %d '
        'attention blocks, so the outputs differ from the plain PVT until the model is fine-tuned.', len(model_pe))
    return model_pe


def gridpe_hint(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> str:
    """A checkpoint trained with GridPE must have it in the same blocks as the model."""
    model_pe = {k for k in model.state_dict() if k.endswith('.grid_pe.omegas')}
    checkpoint_pe = {k for k in state_dict if k.endswith('.grid_pe.omegas')}
    if checkpoint_pe and checkpoint_pe != model_pe:
        return ('The checkpoint was trained with GridPE in other blocks (its *.grid_pe.omegas buffers): build the '
                'model with the same gridpe / gridpe_blocks settings (gridpe=True, gridpe_blocks="all" or "first").')
    return ''
