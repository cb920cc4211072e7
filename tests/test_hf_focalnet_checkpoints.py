"""HF transformers' FocalNet checkpoints (no transformers install needed): strict loading and identical outputs.

The HF layout is written down here from transformers' ``models/focalnet/modeling_focalnet.py``, module by module:
``FocalNetModel`` holds ``embeddings`` (``patch_embeddings.projection`` conv, ``norm``), ``encoder.stages.{i}``
(``layers.{j}``: ``norm1``, ``modulation`` with Linear ``projection_in``, 1x1 Conv2d ``projection_context``,
``focal_layers.{k}.0`` depthwise convs without bias, Linear ``projection_out``, optional ``layernorm``; ``norm2``,
``mlp.fc1``/``mlp.fc2`` Linears, optional ``gamma_1``/``gamma_2``; then ``downsample`` with ``projection`` and
``norm``, which ends every stage but the last) and ``layernorm``; ``FocalNetForImageClassification`` and
``FocalNetBackbone`` put it under ``focalnet.``, the former adds ``classifier``. The state dict below is built from a
zoo model's weights by that description, independently of the converter in ``modzoo/models/focalnet.py``.
"""
import pytest
import timm
import torch
from safetensors.torch import save_file

import modzoo
from modzoo import load_checkpoint


def hf_focalnet_state_dict(model, layout: str):
    """What HF's ``layout`` class ('model', 'classification' or 'backbone') would store for ``model``'s weights."""
    z = model.state_dict()
    base = '' if layout == 'model' else 'focalnet.'
    post_norm = any('.norm1_post.' in k for k in z)
    out = {}

    def put(hf_key, zoo_key, linear=False):
        value = z[zoo_key]
        out[base + hf_key] = (value.flatten(1) if linear and value.dim() > 2 else value).contiguous().clone()

    for p in ('weight', 'bias'):
        put(f'embeddings.patch_embeddings.projection.{p}', f'stem.proj.{p}')
        put(f'embeddings.norm.{p}', f'stem.norm.{p}')
    for i, stage in enumerate(model.layers):
        for j in range(len(stage.blocks)):
            hf, zoo = f'encoder.stages.{i}.layers.{j}.', f'layers.{i}.blocks.{j}.'
            for p in ('weight', 'bias'):
                put(hf + f'norm1.{p}', zoo + ('norm1_post' if post_norm else 'norm1') + f'.{p}')
                put(hf + f'norm2.{p}', zoo + ('norm2_post' if post_norm else 'norm2') + f'.{p}')
                put(hf + f'modulation.projection_in.{p}', zoo + f'modulation.f.{p}', linear=True)
                put(hf + f'modulation.projection_context.{p}', zoo + f'modulation.h.{p}')
                put(hf + f'modulation.projection_out.{p}', zoo + f'modulation.proj.{p}', linear=True)
                put(hf + f'mlp.fc1.{p}', zoo + f'mlp.fc1.{p}', linear=True)
                put(hf + f'mlp.fc2.{p}', zoo + f'mlp.fc2.{p}', linear=True)
                if zoo + f'modulation.norm.{p}' in z:
                    put(hf + f'modulation.layernorm.{p}', zoo + f'modulation.norm.{p}')
            k = 0
            while zoo + f'modulation.focal_layers.{k}.0.weight' in z:
                put(hf + f'modulation.focal_layers.{k}.0.weight', zoo + f'modulation.focal_layers.{k}.0.weight')
                k += 1
            if zoo + 'ls1.gamma' in z:
                put(hf + 'gamma_1', zoo + 'ls1.gamma')
                put(hf + 'gamma_2', zoo + 'ls2.gamma')
        if i + 1 < len(model.layers):
            for p in ('weight', 'bias'):
                put(f'encoder.stages.{i}.downsample.projection.{p}', f'layers.{i + 1}.downsample.proj.{p}')
                put(f'encoder.stages.{i}.downsample.norm.{p}', f'layers.{i + 1}.downsample.norm.{p}')
    for p in ('weight', 'bias'):
        put(f'layernorm.{p}', f'norm.{p}')
    if layout == 'classification':
        out['classifier.weight'] = z['head.fc.weight'].clone()
        out['classifier.bias'] = z['head.fc.bias'].clone()
    return out


SMALL = {
    # plain blocks (tiny/small/base)
    'zoo_focalnet_tiny_srf': dict(depths=(1, 1, 2, 1), embed_dim=32, num_classes=10),
    # conv stem, post-norm, LayerScale, LayerNorm in the modulation (large/xlarge/huge)
    'zoo_focalnet_huge_fl4': dict(depths=(1, 1, 1, 1), embed_dim=16, num_classes=10),
}


def _randomised(name):
    torch.manual_seed(0)
    model = timm.create_model(name, **SMALL[name]).eval()
    with torch.no_grad():
        for param in model.parameters():  # LayerNorms / LayerScale away from 1 and 0: a swapped name shows
            param.add_(0.05 * torch.randn_like(param))
    return model


@pytest.mark.parametrize('name', sorted(SMALL))
def test_hf_image_classification_bin_loads_strictly_and_matches(name, tmp_path):
    source = _randomised(name)
    path = str(tmp_path / 'pytorch_model.bin')
    torch.save(hf_focalnet_state_dict(source, 'classification'), path)
    target = timm.create_model(name, **SMALL[name]).eval()
    load_checkpoint(target, path)  # strict
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


@pytest.mark.parametrize('layout', ['model', 'backbone'])
def test_hf_model_and_backbone_safetensors_load_strictly_and_match(layout, tmp_path):
    name = 'zoo_focalnet_tiny_srf'
    source = _randomised(name)
    path = str(tmp_path / 'model.safetensors')
    save_file(hf_focalnet_state_dict(source, layout), path)
    target = timm.create_model(name, **dict(SMALL[name], num_classes=0)).eval()
    load_checkpoint(target, path)  # strict: no classifier in these layouts, none in the model
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target.forward_features(x), source.forward_features(x))


def test_hf_layout_mismatch_names_the_keys(tmp_path):
    name = 'zoo_focalnet_tiny_srf'
    state_dict = hf_focalnet_state_dict(_randomised(name), 'classification')
    del state_dict['focalnet.encoder.stages.1.layers.0.mlp.fc1.weight']
    with pytest.raises(modzoo.CheckpointMismatchError, match=r'layers\.1\.blocks\.0\.mlp\.fc1\.weight'):
        load_checkpoint(timm.create_model(name, **SMALL[name]), state_dict)
