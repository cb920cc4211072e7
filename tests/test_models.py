"""The model contract, checked for every registered modzoo model (all families), in the spirit of timm's
``tests/test_models.py``.

Each model is built once per test at a small input size; the checks that share a build are grouped so the suite
stays fast enough for CI on two cores. Models above ``LARGE_PARAMS`` skip the second (features_only) build: that
wrapper is the same code path for every size of a family and is covered by the smaller variants.
"""
import math

import pytest
import timm
import torch

import modzoo
from zoo_testing import build_on_meta, create_for_test, is_large

MODELS = modzoo.list_models()
SIZE = 64  # input size for the contract checks: stride-32 models give 2x2 final maps


def _input(batch: int = 2, size=(SIZE, SIZE), chans: int = 3) -> torch.Tensor:
    return torch.randn(batch, chans, *size)


def test_models_are_registered():
    assert MODELS, 'no modzoo model registered'
    for name in MODELS:
        assert name.startswith(modzoo.models.ZOO_PREFIX), name


def test_no_timm_entry_overwritten():
    # every zoo name is new to timm; timm's own entries still come from timm's modules
    for name in timm.list_models():
        module = timm.models.model_entrypoint(name).__module__
        if not name.startswith(modzoo.models.ZOO_PREFIX):
            assert module.startswith('timm.'), f'{name} now resolves to {module}'


@pytest.mark.parametrize('name', MODELS)
def test_pretrained_cfg(name):
    model = build_on_meta(name)
    cfg = model.pretrained_cfg
    for key in ('input_size', 'num_classes', 'mean', 'std', 'crop_pct', 'interpolation', 'first_conv', 'classifier'):
        assert key in cfg and cfg[key] is not None, f'{name}: pretrained_cfg lacks {key}'
    state = model.state_dict()
    assert cfg['first_conv'] + '.weight' in state
    if cfg['num_classes']:
        assert cfg['classifier'] + '.weight' in state
    assert model.num_classes == cfg['num_classes'] or cfg['num_classes'] == 0
    assert model.num_features > 0 and model.head_hidden_size > 0
    # the final feature map at the cfg's input size is the cfg's pool_size
    reduction = model.feature_info[-1]['reduction']
    expected = tuple(math.ceil(s / reduction) for s in cfg['input_size'][1:])
    if cfg.get('pool_size'):
        assert tuple(cfg['pool_size']) == expected, f'{name}: pool_size {cfg["pool_size"]} vs {expected}'
    reductions = [f['reduction'] for f in model.feature_info]
    assert reductions == sorted(reductions) and all(f['num_chs'] > 0 for f in model.feature_info)


@pytest.mark.parametrize('name', MODELS)
def test_model_contract(name):
    """forward/forward_features/forward_head/forward_intermediates/reset_classifier/grad checkpointing/backward."""
    model = create_for_test(name).eval()
    x = _input()
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, model.num_classes or model.num_features) and not torch.isnan(out).any()

        feats = model.forward_features(x)
        assert feats.dim() == 4 and feats.shape[1] == model.num_features
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.head_hidden_size)
        assert torch.allclose(model.forward_head(feats), out)

        final, inter = model.forward_intermediates(x)
        assert torch.allclose(final, feats, atol=1e-6)
        assert len(inter) == len(model.feature_info)
        for t, info in zip(inter, model.feature_info, strict=True):
            assert t.shape[1] == info['num_chs'], info
            assert t.shape[-1] == math.ceil(SIZE / info['reduction']), info
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [t.shape for t in last_two] == [t.shape for t in inter[-2:]]

        # non-square input and a size the strides do not divide
        for size in ((SIZE, SIZE + 32), (SIZE + 3, SIZE - 5)):
            y = model(_input(1, size))
            assert y.shape == (1, out.shape[1]) and not torch.isnan(y).any(), size

        model.set_grad_checkpointing(True)
        assert torch.allclose(model(x), out, rtol=1e-4, atol=1e-5)
        model.set_grad_checkpointing(False)

    with pytest.raises(ValueError, match='channel'):
        model(_input(chans=4))

    assert model.get_classifier() is not None
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, model.num_features)
    model.reset_classifier(0, '')
    with torch.no_grad():
        assert model(x).dim() == 4

    # backward with a fresh head: every parameter gets a gradient
    model.reset_classifier(42, 'avg')
    model.train()
    model.set_grad_checkpointing(True)
    out = model(_input(2, (32, 32)))
    assert out.shape == (2, 42)
    out.mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f'parameters without gradient: {no_grad[:10]}'
    assert not any(torch.isnan(p.grad).any() for p in model.parameters())


@pytest.mark.parametrize('name', MODELS)
def test_features_only(name):
    if is_large(name):
        # feature_info checks without a second full build; the forward is covered by the smaller family members
        model = build_on_meta(name)
        assert len(model.feature_info) >= 1
        pytest.skip('large model: features_only forward covered by smaller variants of the family')
    model = timm.create_model(name, pretrained=False, features_only=True).eval()
    info = model.feature_info
    x = _input()
    with torch.no_grad():
        feats = model(x)
    assert len(feats) == len(info.channels())
    for t, chans, red in zip(feats, info.channels(), info.reduction(), strict=True):
        assert t.shape[0] == 2 and t.shape[1] == chans
        assert t.shape[-1] == math.ceil(SIZE / red)

    picked = timm.create_model(name, pretrained=False, features_only=True, out_indices=(-2, -1)).eval()
    with torch.no_grad():
        assert [t.shape for t in picked(x)] == [t.shape for t in feats[-2:]]


@pytest.mark.parametrize('name', MODELS)
def test_in_chans_and_num_classes(name):
    if is_large(name):
        pytest.skip('large model: in_chans/num_classes plumbing covered by smaller variants of the family')
    model = timm.create_model(name, pretrained=False, in_chans=1, num_classes=5, drop_path_rate=0.1).eval()
    with torch.no_grad():
        assert model(_input(chans=1)).shape == (2, 5)
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == 'DropPath']
    assert rates and max(rates) > 0, 'drop_path_rate not honoured'


def test_unknown_model_suggests_names():
    with pytest.raises(ValueError, match='Did you mean: zoo_focalnet_tiny_srf'):
        modzoo.create_model('zoo_focalnet_tiny_sfr')
