"""Checkpoint layouts users bring from other implementations, converted by the family filters.

* mmdet's own ``PyramidVisionTransformer`` / ``PyramidVisionTransformerV2`` (detector checkpoints, ``backbone.``
  keys): into GridPE-PVT with ``gridpe=False`` the features equal mmdet's own backbone's (to 1e-4 with mmdet's
  LayerNorm eps, to 1e-4 relative with the official eps); with GridPE on they load strictly (the rotations are new
  buffers).
* every family's load report accounts for every tensor of the file (EfficientMod's final norm and classifier
  included).
"""
import pytest
import torch

pytest.importorskip('mmdet')
pytestmark = pytest.mark.mm

from modzoo.mm import ModzooBackbone  # noqa: E402
from zoo_testing import random_checkpoint  # noqa: E402
from mm_testing import one_thread_fast_parsing  # noqa: E402,F401  (autouse fixture)


def _randomise_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """LayerNorms start at 1/0; random affine values make a wrong mapping of norm tensors visible."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.LayerNorm):
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))


def _mmdet_pvt(version: int):
    from mmdet.models.backbones.pvt import PyramidVisionTransformer, PyramidVisionTransformerV2
    torch.manual_seed(0)
    if version == 2:  # PVTv2-b0
        backbone = PyramidVisionTransformerV2(embed_dims=32, num_layers=[2, 2, 2, 2], drop_path_rate=0.)
        name = 'zoo_gridpe_pvt_v2_b0'
    else:  # PVT-tiny at two blocks per stage
        backbone = PyramidVisionTransformer(embed_dims=64, num_layers=[2, 2, 2, 2], drop_path_rate=0.)
        name = 'zoo_gridpe_pvt_v1_tiny'
    backbone.init_weights()
    _randomise_norms(backbone)
    return backbone.eval(), name


def _detector_checkpoint(backbone, path):
    """How an mmdet detector checkpoint stores its backbone (plus a neck tensor the backbone must ignore)."""
    state_dict = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state_dict['neck.lateral_convs.0.conv.weight'] = torch.zeros(4, 4, 1, 1)
    torch.save({'meta': {'mmdet_version': '3.3.0'}, 'state_dict': state_dict}, path)


@pytest.mark.parametrize('version', [1, 2])
def test_mmdet_pvt_checkpoint_gives_mmdet_features(version, tmp_path):
    mmdet_backbone, name = _mmdet_pvt(version)
    path = str(tmp_path / 'mmdet_pvt.pth')
    _detector_checkpoint(mmdet_backbone, path)
    depths = dict(depths=(2, 2, 2, 2))

    ours = ModzooBackbone(name, gridpe=False, init_cfg=dict(type='Pretrained', checkpoint=path), **depths)
    ours.init_weights()
    report = ours._last_load_report
    assert not report.missing and not report.unexpected and not report.mismatched
    ours.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = mmdet_backbone(x)
        got = ours(x)
        # mmdet's LayerNorms all use eps 1e-6; the official code's (and ours) patch-embedding and SR-attention norms
        # use 1e-5. With the same eps the two implementations agree to float precision.
        for module in ours.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = 1e-6
        same_eps = ours(x)
    assert len(got) == len(expected) == len(same_eps) == 4
    for a, b, c in zip(got, expected, same_eps, strict=True):
        assert a.shape == b.shape
        assert (c - b).abs().max().item() <= 1e-4
        assert (a - b).abs().max().item() <= 1e-4 * b.abs().max().item()

    # GridPE on: the same file loads strictly; the rotations are the model's seeded buffers, so features change
    gridpe = ModzooBackbone(name, gridpe=True, init_cfg=dict(type='Pretrained', checkpoint=path), **depths)
    gridpe.init_weights()
    assert not gridpe._last_load_report.unexpected and not gridpe._last_load_report.mismatched
    for key, value in ours.model.state_dict().items():
        assert torch.equal(gridpe.model.state_dict()[key], value), key
    with torch.no_grad():
        assert not torch.allclose(gridpe.eval()(x)[0], got[0], atol=1e-3)


def test_efficientmod_report_lists_final_norm_and_head(tmp_path):
    checkpoint = random_checkpoint('efficientmod_xxs', 0)
    path = str(tmp_path / 'efficientmod.pth')
    torch.save({'state_dict': checkpoint}, path)
    backbone = ModzooBackbone('zoo_efficientmod_xxs', init_cfg=dict(type='Pretrained', checkpoint=path))
    backbone.init_weights()
    report = backbone._last_load_report
    assert sorted(report.unused) == ['head.fc.bias', 'head.fc.weight', 'norm.bias', 'norm.weight']
    assert len(report.loaded) + len(report.unused) == len(checkpoint)
    assert 'unused by the features model' in report.summary()


@pytest.mark.parametrize('name, layout', [
    ('zoo_focalnet_tiny_srf', 'focalnet_tiny_srf'),
    ('zoo_smt_tiny', 'smt_t'),
])
def test_every_family_report_accounts_for_every_tensor(name, layout, tmp_path):
    checkpoint = random_checkpoint(layout, 0)
    for key in checkpoint:
        if key.endswith('running_var'):
            checkpoint[key] = checkpoint[key].abs() + 0.5
    path = str(tmp_path / 'classification.pth')
    torch.save({'model': checkpoint}, path)
    backbone = ModzooBackbone(name, init_cfg=dict(type='Pretrained', checkpoint=path))
    backbone.init_weights()
    report = backbone._last_load_report
    accounted = len(report.loaded) + len(report.unused) + len(report.unexpected) + len(report.mismatched)
    tracked = sum(k.endswith('num_batches_tracked') for k in checkpoint)
    assert accounted in (len(checkpoint), len(checkpoint) - tracked)
    assert report.unused  # the classifier at least


def test_hf_focalnet_backbone_file_into_modzoo_backbone(tmp_path):
    from safetensors.torch import save_file
    from test_hf_focalnet_checkpoints import SMALL, _randomised, hf_focalnet_state_dict
    source = _randomised('zoo_focalnet_tiny_srf')
    path = str(tmp_path / 'model.safetensors')
    save_file(hf_focalnet_state_dict(source, 'backbone'), path)
    kwargs = {k: v for k, v in SMALL['zoo_focalnet_tiny_srf'].items() if k != 'num_classes'}
    backbone = ModzooBackbone('zoo_focalnet_tiny_srf', init_cfg=dict(type='Pretrained', checkpoint=path), **kwargs)
    backbone.init_weights()
    report = backbone._last_load_report
    assert not report.missing and not report.unexpected and not report.mismatched
    assert sorted(report.unused) == ['norm.bias', 'norm.weight']  # HF's final layernorm: not used by the features
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = source.forward_intermediates(x, intermediates_only=True)
        for a, b in zip(backbone.eval()(x), expected, strict=True):
            assert torch.equal(a, b)


class _Opaque:
    """An object no allow-list admits (what a file with a pickled config or class instance holds)."""


def test_untrusted_pickle_hint_names_init_cfg_trust_pickle(tmp_path):
    path = str(tmp_path / 'pickled.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'config': _Opaque()}, path)
    backbone = ModzooBackbone('zoo_gridpe_pvt_v2_b0', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(RuntimeError, match='trust_pickle=True'):
        backbone.init_weights()
