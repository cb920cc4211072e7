"""SMT: official numerics (golden fixtures), official key layouts, det/seg naming, checkpoint handling, deploy fusion,
the fixed official bugs (reset_classifier, gradient checkpointing, dynamic-batch ONNX) and export paths."""
import pytest
import timm
import torch
import torch.nn as nn

import modzoo
from modzoo.models.smt import (
    SMT, MultiHeadSelfAttention, ScaleAwareModulation, fuse_bn, mixed_dwconv_interleave,
)
from zoo_testing import (
    fitted,
    build_on_meta, check_golden_logits, check_loads_identically, create_from_file, golden_names, layout_names,
    load_assign, num_params, random_checkpoint, reported_and_manifest,
)

# a narrow SMT with every block type: stages 1-2 SAM, stage 3 SAM+MSA, stage 4 MSA
SMALL = dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 2, 1))
LAYOUT_VARIANT = {'smt_t': 'zoo_smt_tiny', 'smt_s': 'zoo_smt_small', 'smt_b': 'zoo_smt_base', 'smt_l': 'zoo_smt_large'}


@pytest.mark.parametrize('golden', golden_names('smt_'))
def test_golden_logits(golden, tmp_path):
    """Official-layout weights through the public timm API reproduce the official code's logits."""
    check_golden_logits('zoo_smt_tiny', golden, tmp_path)


@pytest.mark.parametrize('layout', layout_names('smt_'))
def test_official_layout_loads_strict(layout):
    """A checkpoint with exactly the official keys/shapes loads strictly into the matching full-size variant."""
    official = random_checkpoint(layout)
    model = build_on_meta(LAYOUT_VARIANT[layout], num_classes=official['head.weight'].shape[0])
    converted = fitted({'model': official}, model)
    load_assign(model, converted)
    assert len(converted) == len(official)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in official.items())  # every official tensor under its own name


def test_full_size_params_and_block_types():
    """Parameter counts of the official code (SMT-S: 22.55M, not the README's 21M) and the hybrid placement."""
    expected = {'zoo_smt_tiny': 11_506_536, 'zoo_smt_small': 22_550_952, 'zoo_smt_base': 32_037_352,
                'zoo_smt_large': 80_620_264}
    models = {name: build_on_meta(name) for name in expected}
    for name, model in models.items():
        assert num_params(model) == expected[name], name
        types = model.block_types()
        assert all(t == 'SAM' for t in types[0] + types[1]), name
        assert types[2] == ['SAM', 'MSA'] * (len(types[2]) // 2), name
        assert all(t == 'MSA' for t in types[3]), name
        # LayerScale only in L; MSA head_dim 48 for L, 32 for T/S/B, in both MSA stages
        assert (model.block4[0].gamma_1 is not None) == (name == 'zoo_smt_large'), name
        head_dims = {m.head_dim for m in model.modules() if isinstance(m, MultiHeadSelfAttention)}
        assert head_dims == ({48} if name == 'zoo_smt_large' else {32}), name
    assert models['zoo_smt_tiny'].block_types() == [['SAM', 'SAM'], ['SAM', 'SAM'], ['SAM', 'MSA'] * 4, ['MSA']]


def test_norm_eps():
    model = build_on_meta('zoo_smt_tiny')
    assert model.patch_embed1.norm.eps == 1e-5 and model.patch_embed3.norm.eps == 1e-5
    assert model.block2[0].norm1.eps == 1e-6 and model.block4[0].norm2.eps == 1e-6 and model.norm3.eps == 1e-6


def test_interleave_order():
    """C=8, h=4: output channel g*h + i is head i's channel g, i.e. input channels [0, 2, 4, 6, 1, 3, 5, 7]."""
    x = torch.arange(8.).reshape(1, 8, 1, 1).expand(1, 8, 5, 5).contiguous()
    weights, biases = [], []
    for i in range(4):
        k = 3 + 2 * i
        w = torch.zeros(2, 1, k, k)
        w[:, :, k // 2, k // 2] = 1.  # identity kernels
        weights.append(w)
        biases.append(torch.zeros(2))
    out = mixed_dwconv_interleave(x, weights, biases)
    assert out[0, :, 2, 2].tolist() == [0., 2., 4., 6., 1., 3., 5., 7.]


def test_interleave_matches_kernel_reference():
    """The kernels package implements the same op (so the lead can swap it in)."""
    from modzoo.kernels import mixed_dwconv_interleave_reference
    x = torch.randn(2, 16, 7, 9)
    weights = [torch.randn(4, 1, 3 + 2 * i, 3 + 2 * i) for i in range(4)]
    biases = [torch.randn(4) for _ in range(4)]
    expected = mixed_dwconv_interleave_reference(x, weights, biases)
    assert torch.allclose(mixed_dwconv_interleave(x, weights, biases), expected, rtol=1e-5, atol=1e-5)
    # a channels-last view, as the model passes it (another conv algorithm: float32 rounding differs)
    x_cl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert torch.allclose(mixed_dwconv_interleave(x_cl, weights, biases), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('container', ['model', 'state_dict', 'state_dict_ema', 'plain', 'module', 'mm_backbone'])
def test_checkpoint_containers(container):
    source = timm.create_model('zoo_smt_tiny', **SMALL).eval()
    sd = source.state_dict()
    noise = {k: v + 1 for k, v in sd.items()}  # a decoy that must not be picked over EMA weights
    wrapped = {
        'model': {'model': sd, 'epoch': 299},
        'state_dict': {'state_dict': sd},
        'state_dict_ema': {'state_dict': noise, 'state_dict_ema': sd},
        'plain': sd,
        'module': {'model': {'module.' + k: v for k, v in sd.items()}},
        'mm_backbone': {'state_dict': {**{'backbone.' + k: v for k, v in sd.items()},
                                       'neck.lateral.weight': torch.zeros(3)}},
    }[container]
    check_loads_identically('zoo_smt_tiny', source, wrapped, **SMALL)


def _det_seg_file(official):
    """An official det/seg backbone file: `backbone.` prefix, no classifier, the MSA local conv named `dw_conv`."""
    det = {}
    for key, value in official.items():
        if key.startswith('head.'):
            continue
        det['backbone.' + key.replace('.attn.local_conv.', '.attn.dw_conv.')] = value
    det['neck.fpn_convs.0.conv.weight'] = torch.zeros(1)
    return {'state_dict': det, 'meta': {}}


def test_det_seg_dw_conv_maps_to_local_conv(tmp_path):
    official = random_checkpoint('smt_t')
    det = _det_seg_file(official)
    renamed = [k for k in det['state_dict'] if '.dw_conv.' in k]
    assert len(renamed) == 5 * 2  # SMT-T has 5 MSA blocks (4 in stage 3, 1 in stage 4): weight + bias each

    model = build_on_meta('zoo_smt_tiny', num_classes=0)
    converted = fitted(det, model)
    load_assign(model, converted)  # strict: nothing is left at (random) init
    for key, value in official.items():
        if not key.startswith('head.'):
            assert converted[key] is value, key

    # and through the public API as a dense-task backbone
    feats = create_from_file('zoo_smt_tiny', det, tmp_path, features_only=True)
    assert torch.equal(feats.model.block3[1].attn.local_conv.weight, official['block3.1.attn.local_conv.weight'])
    assert torch.equal(feats.model.norm4.weight, official['norm4.weight'])


def test_mismatched_checkpoint_lists_keys_and_shapes(tmp_path):
    tiny = random_checkpoint('smt_t')
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        fitted({'model': tiny}, build_on_meta('zoo_smt_small'))
    assert '372 missing key(s)' in str(err.value) and 'block1.2.norm1.weight' in str(err.value)
    # features_only makes timm load non-strict; the filter still refuses
    with pytest.raises(modzoo.CheckpointMismatchError, match='block1.2.norm1.weight'):
        create_from_file('zoo_smt_small', {'model': tiny}, tmp_path, features_only=True)
    # SMT-L weights into SMT-B: widths differ, and L's LayerScale has nowhere to go
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        fitted({'model': random_checkpoint('smt_l')}, build_on_meta('zoo_smt_base'))
    msg = str(err.value)
    assert 'block1.0.attn.v.weight: (96, 96) vs (64, 64)' in msg and 'block1.0.gamma_1' in msg
    # a deploy-fused model is not a target for unfused checkpoints
    fused = timm.create_model('zoo_smt_tiny', **SMALL).eval().fuse_bn()
    with pytest.raises(modzoo.CheckpointMismatchError, match='bn.running_mean'):
        modzoo.load_checkpoint(fused, timm.create_model('zoo_smt_tiny', **SMALL).state_dict())


def test_head_and_in_chans_adaptation(tmp_path):
    sd = timm.create_model('zoo_smt_tiny', **SMALL).state_dict()
    model = create_from_file('zoo_smt_tiny', sd, tmp_path, **SMALL, num_classes=7, in_chans=1)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 7)


def _randomize_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
    return model


def test_fuse_bn_equal_outputs():
    model = _randomize_bn(timm.create_model('zoo_smt_tiny', **SMALL, use_layerscale=True, head_conv=7)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        assert model.fuse_bn() is model
        after = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.patch_embed1.conv[0].bias is not None
    assert (before - after).abs().max().item() <= 1e-5
    fuse_bn(model)  # idempotent
    with torch.no_grad():
        assert torch.equal(model(x), after)


def test_fuse_bn_through_features_wrapper():
    feats = _randomize_bn(timm.create_model('zoo_smt_tiny', **SMALL, features_only=True)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = feats(x)
        after = fuse_bn(feats)(x)
    assert all((a - b).abs().max().item() <= 1e-5 for a, b in zip(before, after, strict=True))


def test_reset_classifier():
    model = timm.create_model('zoo_smt_tiny', **SMALL).eval()
    model.reset_classifier(7)
    assert model.get_classifier().out_features == 7
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        model.reset_classifier(5, '')  # no pooling: per-location logits
        assert model(x).shape == (2, 5, 2, 2)
        model.reset_classifier(0, 'avg')
        assert model(x).shape == (2, 128)
    with pytest.raises(ValueError, match='global_pool'):
        model.reset_classifier(3, 'token')


def test_gradient_checkpointing():
    """Same outputs and gradients with checkpointing, and the blocks really are recomputed in backward."""
    model = timm.create_model('zoo_smt_tiny', **SMALL, num_classes=4).train()
    x = torch.randn(2, 3, 32, 32)
    calls = []
    block = model.block3[1]
    block_forward = block.forward

    def counting_forward(x):  # module hooks do not fire during the checkpoint recomputation; this does
        calls.append(1)
        return block_forward(x)

    block.forward = counting_forward

    def run():
        model.zero_grad()
        out = model(x)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    # BN running stats change with each train-mode forward; compare two models' worth of state instead
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out_plain, grads_plain = run()
    assert len(calls) == 1
    model.load_state_dict(state)
    model.set_grad_checkpointing(True)
    calls.clear()
    out_ckpt, grads_ckpt = run()
    assert len(calls) == 2  # forward + recomputation in backward
    assert torch.allclose(out_plain, out_ckpt, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_plain, grads_ckpt, strict=True))


def test_features_are_stage_norm_outputs():
    model = timm.create_model('zoo_smt_tiny', **SMALL).eval()
    feats = timm.create_model('zoo_smt_tiny', **SMALL, features_only=True).eval()
    result = feats.model.load_state_dict(model.state_dict(), strict=False)
    assert not result.missing_keys and sorted(result.unexpected_keys) == ['head.bias', 'head.weight']
    assert feats.feature_info.reduction() == [4, 8, 16, 32]
    captured = {}
    for i in range(1, 5):
        getattr(model, f'norm{i}').register_forward_hook(
            lambda m, args, out, i=i: captured.__setitem__(i, out.permute(0, 3, 1, 2)))
    x = torch.randn(1, 3, 66, 70)  # not a multiple of 32: the stem pads, every stage has ceil(H / stride) rows
    with torch.no_grad():
        model(x)
        outs = feats(x)
    assert [tuple(o.shape[-2:]) for o in outs] == [(17, 18), (9, 9), (5, 5), (3, 3)]
    for i, out in enumerate(outs, 1):
        assert torch.allclose(out, captured[i], atol=1e-6)


def test_stage_transitions_take_nchw():
    from modzoo.layers import SFM, find_stage_transitions
    model = timm.create_model('zoo_smt_tiny', **SMALL).eval()
    assert model.stage_transitions() == ['patch_embed2', 'patch_embed3', 'patch_embed4']
    assert find_stage_transitions(model) == model.stage_transitions()
    shapes = []
    for name in model.stage_transitions():
        model.get_submodule(name).register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    assert shapes == [(1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4)]
    with torch.no_grad():  # the SFM add-on (identity at init) wraps the transitions
        assert torch.allclose(SFM(model).eval()(x), ref, atol=1e-5)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # the TorchScript-based exporter is deprecated
def test_onnx_dynamic_batch(tmp_path):
    """TorchScript-based export with a dynamic batch axis; onnxruntime agrees with PyTorch at batch 1 and 3."""
    ort = pytest.importorskip('onnxruntime')
    model = timm.create_model('zoo_smt_tiny').eval()
    path = str(tmp_path / 'smt_tiny.onnx')
    torch.onnx.export(
        model, (torch.randn(2, 3, 64, 64),), path, dynamo=False, opset_version=17,
        input_names=['input'], output_names=['logits'], dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            expected = model(x)
        got = torch.from_numpy(session.run(None, {'input': x.numpy()})[0])
        assert got.shape == (batch, 1000)
        assert (got - expected).abs().max().item() <= 1e-4


def test_torchscript_script_refused_trace_works():
    model = timm.create_model('zoo_smt_tiny', **SMALL).eval()
    with pytest.raises(RuntimeError, match='does not support torch.jit.script'):
        torch.jit.script(model)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(2, 3, 64, 64))
        x = torch.randn(3, 3, 64, 64)  # another batch size than the trace's
        assert torch.allclose(traced(x), model(x), atol=1e-5)


def test_torch_compile_fullgraph():
    model = timm.create_model('zoo_smt_tiny', **SMALL, num_classes=5).eval()
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_bad_config_errors():
    with pytest.raises(ValueError, match='4 entries'):
        SMT(depths=(1, 1, 1))
    with pytest.raises(ValueError, match='head_conv'):
        SMT(head_conv=5)
    with pytest.raises(ValueError, match='ca_num_heads'):
        SMT(embed_dims=(18, 32, 64, 128))  # 18 channels do not split into 4 scales
    assert isinstance(timm.create_model('zoo_smt_tiny', **SMALL).block1[0].attn, ScaleAwareModulation)


def test_reported_numbers_and_manifest():
    reported, manifest = reported_and_manifest('smt')
    names = modzoo.list_models(family='smt')
    assert names == sorted(LAYOUT_VARIANT.values())
    assert all(name in reported for name in names)
    # every registered weight tag has a manifest entry with its head size and resolution, and nothing else is listed
    tags = timm.list_models('zoo_smt_*', pretrained=True, include_tags=True)
    assert sorted(tags) == sorted(manifest)
    for tag in tags:
        cfg = timm.models.get_pretrained_cfg(tag)
        assert manifest[tag]['num_classes'] == cfg.num_classes and manifest[tag]['resolution'] == cfg.input_size[-1]
        assert cfg.url in [s['url'] for s in manifest[tag]['sources']]
    cfg_384 = timm.models.get_pretrained_cfg('zoo_smt_large.in22k_ft_in1k_384')
    assert cfg_384.pool_size == (12, 12) and cfg_384.crop_pct == 1.0
    # the README's 21M for SMT-S is kept as reported, with the code's 22.55M beside it
    small = reported['zoo_smt_small']
    assert small['params_m'] == 21.0 and small['params_m_official_code'] == 22.55 and '22.55M' in small['note']


def _modulator_written_out(self: ScaleAwareModulation, x: torch.Tensor) -> torch.Tensor:
    """ScaleAwareModulation.modulator written out as the official code: head i's ``local_conv_{i+1}`` on its channel
    chunk, the heads concatenated so that channel g * h + i is head i's channel g, then SAA's proj0, BN, GELU, proj1."""
    B, H, W, C = x.shape
    heads = self.s(x).reshape(B, H, W, self.num_heads, C // self.num_heads).permute(3, 0, 4, 1, 2)
    s_out = None
    for i in range(self.num_heads):
        s_i = getattr(self, f'local_conv_{i + 1}')(heads[i]).reshape(B, C // self.num_heads, 1, H, W)
        s_out = s_i if s_out is None else torch.cat([s_out, s_i], 2)
    return self.proj1(self.act(self.bn(self.proj0(s_out.reshape(B, C, H, W)))))


@pytest.mark.parametrize('deploy', [False, True])
def test_model_equals_the_mixed_conv_written_out(monkeypatch, deploy):
    """The model, whose SAM calls mixed_dwconv_interleave, gives bit for bit the logits of the same model whose SAM
    runs the per-head convs and the interleave written out in this file; also with the BNs folded for deployment."""
    model = timm.create_model('zoo_smt_tiny', depths=(1, 1, 2, 1)).eval()
    if deploy:
        model.fuse_bn()
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = model(x)
        monkeypatch.setattr(ScaleAwareModulation, 'modulator', _modulator_written_out)
        written_out = model(x)
    assert torch.equal(written_out, expected)
