"""timm's model contract, as its own ``tests/test_models.py`` asserts it, for every registered modzoo model.

Our code, timm's assertions: forward, backward, default_cfgs, features, forward_intermediates, torchscript,
forward_fx, backward_fx and forward_fx_torchscript, plus what timm does not test: ``feature_cls='fx'`` and
torchvision's ``create_feature_extractor``, tiny/odd input sizes and an empty batch, ``torch.export`` (strict and
non-strict, dynamic batch), checkpoint errors and license metadata.

Every variant keeps its own heads, kernels and options but is built at reduced depth (``reduced_size``), and the
FocalNet large/xlarge/huge variants at FocalNet-T's width (their only difference in code paths is the number), so
every code path runs in CI time; input sizes are capped like timm's ``_get_input_size`` (at smaller targets).
"""
import logging
import math
import os

import pytest
import timm
import torch
from timm.layers import set_layer_config
from timm.models._features_fx import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import modzoo
from modzoo.utils import tracing
from zoo_testing import fast_init, is_large

MODELS = modzoo.list_models()
FWD_SIZE = 64  # timm: forward 384, backward/jit/fx 128; ours are smaller, the code paths are the same
FEAT_SIZE = 96  # timm's TARGET_FFEAT_SIZE


def reduced_size(name: str) -> dict:
    """Depth overrides that keep every stage (and, for SMT, both block types of stage 3); FocalNet's 192- to
    352-channel variants also at 96 channels (at full width each of them costs a minute of CI on 2 cores)."""
    family = modzoo.model_family(name)
    if family == 'focalnet':
        if name.endswith('_iso'):
            return dict(depths=(4,))
        wide = any(f'_{size}_' in name + '_' for size in ('large', 'xlarge', 'huge'))
        return dict(depths=(1, 1, 1, 1), **(dict(embed_dim=96) if wide else {}))
    if family == 'efficientmod':
        attention = (0, 0, 0, 0) if name.endswith('_conv') else (0, 0, 1, 1)
        return dict(depths=(1, 1, 1, 1), attention_depth=attention)
    if family == 'smt':
        return dict(depths=(1, 1, 2, 1))
    return dict(depths=(1, 1, 1, 1))


def build(name: str, **kwargs) -> torch.nn.Module:
    depth = reduced_size(name)
    if is_large(name, **depth):
        with fast_init():
            return timm.create_model(name, **depth, **kwargs)
    return timm.create_model(name, **depth, **kwargs)


def _input_size(model: torch.nn.Module, target: int):
    """timm's ``_get_input_size``: the cfg's input size, capped at ``target``."""
    input_size = model.pretrained_cfg['input_size']
    return tuple(min(s, target) for s in input_size)


def _fx_model(model: torch.nn.Module, train: bool = False) -> torch.nn.Module:
    """timm's ``_create_fx_model``: torchvision's feature extractor on the last node, with timm's FX leaves."""
    tracer_kwargs = dict(
        leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(), param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    return create_feature_extractor(
        model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer_kwargs)


def _names(spec):
    return (spec,) if isinstance(spec, str) else tuple(spec)


@pytest.mark.parametrize('name', MODELS)
def test_forward_default_cfgs_backward(name):
    """timm's test_model_forward (+ grad checkpointing), test_model_default_cfgs (at the cfg's input size) and
    test_model_backward, on one build."""
    model = build(name).eval()
    x = torch.randn(1, *_input_size(model, FWD_SIZE))
    with torch.no_grad():
        out = model(x)
        assert out.shape[0] == 1 and not torch.isnan(out).any(), 'Output included NaNs'
        model.set_grad_checkpointing()
        assert torch.allclose(model(x), out, rtol=1e-4, atol=1e-5)
        model.set_grad_checkpointing(False)

    cfg = model.pretrained_cfg
    state_dict = model.state_dict()
    if model.num_classes:  # a tag with num_classes 0 (focalnet_huge_fl4's, as in timm) ships no classifier
        for c in _names(cfg['classifier']):
            assert c + '.weight' in state_dict, f'{c} not in model params'
    for fc in _names(cfg['first_conv']):
        assert fc + '.weight' in state_dict, f'{fc} not in model params'
    pool_size = tuple(cfg['pool_size'])
    x = torch.randn(1, *cfg['input_size'])
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[-2:] == pool_size and feats.shape[1] == model.num_features
        assert model.forward_head(feats, pre_logits=True).shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        pooled = model(x)
        assert pooled.dim() == 2 and pooled.shape[-1] == model.num_features
        model.reset_classifier(0, '')
        unpooled = model(x)
        assert unpooled.dim() == 4 and unpooled.shape[-2:] == pool_size

    model.reset_classifier(42, 'avg')
    model.train()
    num_params = sum(p.numel() for p in model.parameters())
    out = model(torch.randn(2, *_input_size(model, FWD_SIZE)))
    out.mean().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, f'No gradient for {n}'
    assert sum(p.grad.numel() for p in model.parameters()) == num_params, 'Some parameters are missing gradients'
    assert out.shape[-1] == 42 and not torch.isnan(out).any()


@pytest.mark.parametrize('name', MODELS)
def test_features_and_intermediates(name):
    """timm's test_model_forward_intermediates and test_model_forward_features, the latter through
    ``feature_cls='fx'``, and the same taps from a plain torchvision ``create_feature_extractor`` (no timm tracer
    settings). The default 'getter' features are checked in test_models.py."""
    x = torch.randn(1, 3, FEAT_SIZE, FEAT_SIZE)
    model = build(name).eval()
    info = model.feature_info
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.allclose(final, model.forward_features(x), atol=1e-5)
        assert len(inter) == len(info)
        for t, f in zip(inter, info, strict=True):
            assert t.shape[1] == f['num_chs'] and t.shape[-1] == math.ceil(FEAT_SIZE / f['reduction'])
        model.set_grad_checkpointing()
        regrad = model.forward_intermediates(x)[1]
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(regrad, inter, strict=True))
        model.set_grad_checkpointing(False)

        nodes = {f['module']: f['module'] for f in info}
        extracted = list(create_feature_extractor(model, return_nodes=nodes)(x).values())
        assert all(torch.equal(a, b) for a, b in zip(extracted, inter, strict=True)), \
            'create_feature_extractor taps differ'

    features = build(name, features_only=True, feature_cls='fx').eval()
    channels = features.feature_info.channels()
    assert len(channels) >= 4
    with torch.no_grad():
        outputs = features(x)
    assert len(outputs) == len(channels)
    for c, r, o in zip(channels, features.feature_info.reduction(), outputs, strict=True):
        assert o.shape[0] == 1 and o.shape[1] == c and not torch.isnan(o).any()
        assert o.shape[-1] <= math.ceil(FEAT_SIZE / r) + 1


@pytest.mark.parametrize('name', MODELS)
def test_torchscript(name):
    """timm's test_model_forward_torchscript (SMT: a clear refusal instead, see ``SMT.__prepare_scriptable__``)."""
    with set_layer_config(scriptable=True):
        model = build(name).eval()
    if modzoo.model_family(name) == 'smt':
        with pytest.raises(RuntimeError, match='SMT does not support torch.jit.script'):
            torch.jit.script(model)
        return
    scripted = torch.jit.script(model)
    with torch.no_grad():
        out = scripted(torch.randn(1, *_input_size(model, FWD_SIZE)))
    assert out.shape[0] == 1 and not torch.isnan(out).any()


@pytest.mark.parametrize('name', MODELS)
def test_fx(name):
    """timm's test_model_forward_fx (FX output == eager output, exactly), test_model_forward_fx_torchscript (the
    same graph, scripted) and test_model_backward_fx."""
    model = build(name).eval()
    x = torch.randn(1, *_input_size(model, FWD_SIZE))
    with torch.no_grad():
        out = model(x)
        fx_model = _fx_model(model)
        fx_out = torch.cat(tuple(fx_model(x).values()))
        assert torch.all(fx_out == out), f'FX differs from eager by {(fx_out - out).abs().max():.3g}'
        assert out.shape[0] == 1 and not torch.isnan(out).any()
        scripted_out = torch.cat(tuple(torch.jit.script(fx_model)(x).values()))
        assert scripted_out.shape[0] == 1 and not torch.isnan(scripted_out).any()

    model.reset_classifier(42)
    model.train()
    num_params = sum(p.numel() for p in model.parameters())
    fx_train = _fx_model(model, train=True)
    out = torch.cat(tuple(fx_train(torch.randn(2, *_input_size(model, FWD_SIZE))).values()))
    out.mean().backward()
    for n, p in fx_train.named_parameters():
        assert p.grad is not None, f'No gradient for {n}'
    assert sum(p.grad.numel() for p in fx_train.parameters() if p.grad is not None) == num_params
    assert out.shape[-1] == 42 and not torch.isnan(out).any()


@pytest.mark.parametrize('name', MODELS)
def test_any_input_size_and_empty_batch(name):
    model = build(name).eval()
    width = model.num_classes or model.num_features
    with torch.no_grad():
        for size in ((1, 1), (7, 7), (28, 28), (31, 45)):
            out = model(torch.randn(1, 3, *size))
            assert out.shape == (1, width) and not torch.isnan(out).any(), size
        taps = model.forward_intermediates(torch.randn(1, 3, 7, 45), intermediates_only=True)
        for t, f in zip(taps, model.feature_info, strict=True):
            # timm's bound (overlapping conv stems, FocalNet's use_conv_embed, floor where patchify convs ceil)
            for got, size in zip(t.shape[-2:], (7, 45), strict=True):
                assert 1 <= got <= math.ceil(size / f['reduction']) + 1, (size, f, tuple(t.shape))
        assert model(torch.randn(0, 3, 64, 64)).shape == (0, width)
        taps = model.forward_intermediates(torch.randn(0, 3, 64, 64), intermediates_only=True)
        assert [t.shape[:2] for t in taps] == [(0, f['num_chs']) for f in model.feature_info]


# one model per architecture path; tiny widths keep export time down
EXPORT_CASES = {
    'focalnet_hierarchical': ('zoo_focalnet_tiny_srf', dict(embed_dim=16, depths=(1, 1, 1, 1))),
    'focalnet_isotropic': ('zoo_focalnet_tiny_iso', dict(embed_dim=32, depths=(1,))),
    'efficientmod': ('zoo_efficientmod_xxs', dict(embed_dim=(16, 24, 32, 48), depths=(1, 1, 1, 1),
                                                  attention_depth=(0, 0, 1, 1))),
    'smt': ('zoo_smt_tiny', dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 2, 1))),
    'gridpe_pvt_v2': ('zoo_gridpe_pvt_v2_b0', dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1),
                                                   num_heads=(1, 2, 2, 4))),
    'gridpe_pvt_v2_li': ('zoo_gridpe_pvt_v2_b2_li', dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1),
                                                         num_heads=(1, 2, 2, 4))),
    'gridpe_pvt_v1': ('zoo_gridpe_pvt_v1_tiny', dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1),
                                                     num_heads=(1, 2, 2, 4))),
}


@pytest.mark.parametrize('strict', [False, True], ids=['nonstrict', 'strict'])
@pytest.mark.parametrize('case', sorted(EXPORT_CASES))
def test_torch_export_dynamic_batch(case, strict):
    name, kwargs = EXPORT_CASES[case]
    model = timm.create_model(name, num_classes=7, **kwargs).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        before = model(x)  # fills GridPE's eager table cache at this size
    batch = torch.export.Dim('batch', min=1, max=64)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},), strict=strict)
    exported = program.module()
    with torch.no_grad():
        assert torch.equal(model(x), before), 'export changed the eager model'
        for n in (1, 3):
            x = torch.randn(n, 3, 48, 48)
            assert torch.allclose(exported(x), model(x), rtol=1e-4, atol=1e-5), n


def test_tracing_helper():
    """One shared answer: FX symbolic tracing and jit tracing count as tracing, strict and non-strict torch.export
    as exporting; only eager mode may cache. Each capture bakes the flags it saw into its graph as a constant."""
    from modzoo.kernels import dispatch
    assert dispatch.in_export_or_trace is tracing.is_tracing

    class Probe(torch.nn.Module):
        def forward(self, x):
            return x + (100 * tracing.is_tracing() + 10 * tracing.is_exporting() + tracing.can_cache())

    x = torch.zeros(1)
    assert Probe()(x).item() == 1
    assert torch.fx.symbolic_trace(Probe())(x).item() == 100
    assert torch.jit.trace(Probe(), (x,), check_trace=False)(x).item() == 100
    for strict in (False, True):
        assert torch.export.export(Probe(), (x,), strict=strict).module()(x).item() == 10, strict


def test_licenses():
    expected = {'focalnet': 'mit', 'gridpe_pvt': 'apache-2.0', 'efficientmod': 'unknown', 'smt': 'unknown'}
    tags = timm.list_pretrained('zoo_*')
    assert tags
    for tag in tags:
        cfg = timm.models.get_pretrained_cfg(tag)
        assert cfg.license == expected[modzoo.model_family(tag)], tag


# -- checkpoint errors: every misfit named, a fitting head kept --------------------------------------------------

SMALL_PVT = dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 2, 4))


@pytest.fixture(scope='module')
def ten_class_file(tmp_path_factory):
    source = timm.create_model('zoo_gridpe_pvt_v2_b0', num_classes=10, **SMALL_PVT).eval()
    path = os.path.join(str(tmp_path_factory.mktemp('ckpt')), 'ten.pth')
    torch.save(source.state_dict(), path)
    return source, path


def test_fitting_head_is_kept_through_the_overlay(ten_class_file):
    source, path = ten_class_file
    model = timm.create_model('zoo_gridpe_pvt_v2_b0', pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file=path), **SMALL_PVT).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    assert model.pretrained_cfg['num_classes'] == 10


def test_head_mismatch_is_a_checkpoint_error(ten_class_file):
    _, path = ten_class_file
    with pytest.raises(modzoo.CheckpointMismatchError, match=r'head.weight: \(10, 64\) vs \(1000, 64\)'):
        timm.create_model('zoo_gridpe_pvt_v2_b0', pretrained=True, pretrained_cfg_overlay=dict(file=path),
                          **SMALL_PVT)
    with pytest.raises(modzoo.CheckpointMismatchError, match=r'head.bias: \(10,\) vs \(1000,\)'):
        modzoo.load_checkpoint(timm.create_model('zoo_gridpe_pvt_v2_b0', **SMALL_PVT), path)
    stem_mismatch = r'patch_embed.proj.weight: \(16, 3, 7, 7\) vs \(16, 1, 7, 7\)'
    with pytest.raises(modzoo.CheckpointMismatchError, match=stem_mismatch):
        modzoo.load_checkpoint(timm.create_model('zoo_gridpe_pvt_v2_b0', num_classes=10, in_chans=1,
                                                 **SMALL_PVT), path)


def test_reinitialised_head_warns(ten_class_file, caplog):
    _, path = ten_class_file
    with caplog.at_level(logging.WARNING, logger='modzoo'):
        model = timm.create_model('zoo_gridpe_pvt_v2_b0', pretrained=True, num_classes=5,
                                  pretrained_cfg_overlay=dict(file=path), **SMALL_PVT)
    assert model.head.weight.shape == (5, 64)
    assert 'does not fit num_classes=5' in caplog.text
    # a backbone build takes the file without a word about the head
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='modzoo'):
        timm.create_model('zoo_gridpe_pvt_v2_b0', pretrained=True, features_only=True,
                          pretrained_cfg_overlay=dict(file=path), **SMALL_PVT)
    assert 'classifier' not in caplog.text
