"""EfficientMod: official numerics (golden fixtures), official key layouts, the official per-block structure, tile
semantics, checkpoint handling, features and the SDPA FLOP handle."""
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import modzoo
from modzoo.models.efficientmod import (
    AttentionBlock, EfficientModBlock, EfficientModulation, dwconv_gelu, gelu_tile_mul,
)
from modzoo.utils import count_flops, sdpa_flop_jit
from zoo_testing import (
    fitted,
    build_on_meta, check_golden_logits, check_loads_identically, create_from_file, golden_names, layout_names,
    load_assign, random_checkpoint, reported_and_manifest,
)

VARIANTS = ['xxs', 'xs', 's', 's_conv']
# a small hybrid config: modulation blocks with r = 1 and r = 6, attention blocks in stages 3 and 4
SMALL = dict(embed_dim=(16, 24, 32, 48), depths=(2, 2, 2, 1), attention_depth=(0, 0, 1, 1))

# The official factories' structure (read from the official code): per-block expansion ratios of the
# modulation blocks, attention (heads, head_dim) per stage, attention MLP ratio per stage.
OFFICIAL_STRUCTURE = {
    'xxs': dict(dims=(32, 64, 128, 256), ratios=[[1, 6], [1, 6], [1, 6, 1, 6, 1, 6], [1, 6]],
                attn=(0, 0, 1, 2), heads=(None, None, (8, 32), (8, 32)), att_ratio=(0, 0, 4, 4)),
    'xs': dict(dims=(32, 64, 144, 288), ratios=[[1, 4, 1], [1, 4, 1], [1, 4, 1, 4], [1, 4]],
               attn=(0, 0, 3, 3), heads=(None, None, (8, 32), (8, 36)), att_ratio=(4, 4, 4, 4)),
    's': dict(dims=(32, 64, 144, 312), ratios=[[1, 6] * 2, [1, 6] * 2, [1, 6] * 4, [1, 6] * 2],
              attn=(0, 0, 4, 4), heads=(None, None, (8, 32), (8, 39)), att_ratio=(4, 4, 4, 5)),
    's_conv': dict(dims=(40, 80, 160, 344), ratios=[[1, 6] * 2, [1, 6] * 2, [1, 6] * 6, [1, 6] * 4],
                   attn=(0, 0, 0, 0), heads=(None,) * 4, att_ratio=None),
}


def _from_official_kwargs(official: dict) -> dict:
    """The golden fixtures' official constructor kwargs -> ours; the settings we hard-code must be the official ones."""
    assert official['patch_size'] == [7, 3, 3, 3] and official['patch_stride'] == [4, 2, 2, 2]
    assert official['patch_pad'] == [3, 1, 1, 1] and official['patch_norm'] and official['bias']
    assert all(official['conv_in_mlp']) and official['use_layerscale']
    assert official['conv_group_dim'] == official['mlp_ratio']  # so the context width is C in every block
    assert {k for stage in official['context_size'] for k in stage} == {7}
    return dict(
        num_classes=official['num_classes'], embed_dim=official['embed_dim'], depths=official['depths'],
        attention_depth=official['attention_depth'], mlp_ratio=official['mlp_ratio'],
        att_ratio=official['att_ratio'], layerscale_value=official['layerscale_value'])


@pytest.mark.parametrize('golden', golden_names('efficientmod_'))
def test_golden_logits(golden, tmp_path):
    """Official-layout weights in a timm train container, through the public timm API, give the official logits."""
    check_golden_logits(
        'zoo_efficientmod_xxs', golden, tmp_path,
        wrap=lambda state_dict: {'state_dict': state_dict, 'epoch': 1}, model_kwargs=_from_official_kwargs)


def _variant_of(layout: str) -> str:
    return 'zoo_' + layout.lower()  # keys/efficientmod_s_Conv.json -> zoo_efficientmod_s_conv


@pytest.mark.parametrize('layout', layout_names('efficientmod_'))
def test_official_layout_loads_strict(layout):
    """A checkpoint with exactly the official keys/shapes converts and loads strictly into the matching variant."""
    official = random_checkpoint(layout)
    model = build_on_meta(_variant_of(layout))
    converted = fitted({'state_dict': official}, model)
    load_assign(model, converted)
    assert len(converted) == len(official)  # every official tensor landed in the model


def test_official_file_through_public_api(tmp_path):
    official = random_checkpoint('efficientmod_xxs')
    model = create_from_file('zoo_efficientmod_xxs', {'model': official}, tmp_path).eval()
    # the official downsample at the end of stage 0 is ours at the start of stage 1
    assert torch.equal(model.layers[1].downsample.proj.weight, official['layers.0.downsample.proj.weight'])
    block = model.layers[2].blocks[1]
    assert torch.equal(block.ls.gamma, official['layers.2.blocks.1.gamma_1'])
    assert torch.equal(block.mlp.context_layer.dwconv.weight,
                       official['layers.2.blocks.1.mlp.context_layer.context_list.0.weight'])
    # official Linear weights are ours unchanged (channels-last layout: no reshapes)
    assert torch.equal(block.mlp.fc1.weight, official['layers.2.blocks.1.mlp.fc1.weight'])
    assert torch.equal(model.layers[2].blocks[6].attn.qkv.weight, official['layers.2.blocks.6.attn.qkv.weight'])
    assert torch.equal(model.head.fc.weight, official['head.weight'])

    # dense tasks: the same classification file loads into a features_only backbone (timm drops the head)
    feats = create_from_file('zoo_efficientmod_xxs', {'state_dict_ema': official}, tmp_path, features_only=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model.forward_intermediates(x, intermediates_only=True)
        for got, want in zip(feats(x), expected, strict=True):
            assert torch.equal(got, want)


def test_official_dense_backbone_file():
    """An official det/seg file (``backbone.`` keys, no final norm/head) loads into a features_only backbone; a model
    that still has its final norm needs ``allow_missing``."""
    official = random_checkpoint('efficientmod_xxs')
    det = {'backbone.' + k: v for k, v in official.items() if not k.startswith(('head.', 'norm.'))}
    det['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 32, 1, 1)
    backbone = timm.create_model('zoo_efficientmod_xxs', features_only=True).model  # final norm and head pruned
    modzoo.load_checkpoint(backbone, {'state_dict': det})
    assert torch.equal(backbone.layers[3].downsample.norm.weight, official['layers.2.downsample.norm.weight'])
    modzoo.load_checkpoint(backbone, {'state_dict': official})  # the classification file too (norm/head unused)

    model = build_on_meta('zoo_efficientmod_xxs')
    with pytest.raises(modzoo.CheckpointMismatchError, match=r"allow_missing=\('head.', 'norm.'\)"):
        fitted({'state_dict': det}, model)
    model = timm.create_model('zoo_efficientmod_xxs')
    report = modzoo.models.fit_checkpoint({'state_dict': det}, model, allow_missing=('norm.', 'head.'))
    model.load_state_dict(report.state_dict, strict=False)
    assert torch.equal(model.norm.weight, torch.ones(256))  # not in the file: keeps its initialisation
    converted = report.state_dict
    assert {k for k in model.state_dict() if k not in converted} == {'head.fc.weight', 'head.fc.bias', 'norm.weight',
                                                                  'norm.bias'}


@pytest.mark.parametrize('container', ['state_dict', 'state_dict_ema', 'model', 'plain', 'module', 'official'])
def test_checkpoint_containers(container):
    source = timm.create_model('zoo_efficientmod_xxs', **SMALL).eval()
    with torch.no_grad():
        for p in source.parameters():  # LayerScale 1e-4 would hide most differences
            p.add_(torch.randn_like(p) * 0.1)
    sd = source.state_dict()
    decoy = {k: v + 1 for k, v in sd.items()}  # must not be picked over the EMA weights
    official = {
        k.replace('stem.', 'patch_embed.').replace('.ls.gamma', '.gamma_1').replace('head.fc.', 'head.')
        .replace('.context_layer.dwconv.', '.context_layer.context_list.0.'): v for k, v in sd.items()}
    for i in (1, 2, 3):
        for name in ('proj.weight', 'proj.bias', 'norm.weight', 'norm.bias'):
            official[f'layers.{i - 1}.downsample.{name}'] = official.pop(f'layers.{i}.downsample.{name}')
    wrapped = {
        'state_dict': {'state_dict': sd, 'epoch': 3, 'arch': 'efficientMod_xxs'},
        'state_dict_ema': {'state_dict': decoy, 'state_dict_ema': sd},
        'model': {'model': sd},
        'plain': sd,
        'module': {'state_dict': {'module.' + k: v for k, v in sd.items()}},
        'official': {'state_dict': {k: v + 1 for k, v in official.items()}, 'state_dict_ema': official},
    }[container]
    check_loads_identically('zoo_efficientmod_xxs', source, wrapped, **SMALL)


def test_mismatched_checkpoint_lists_keys_and_shapes(tmp_path):
    xxs = random_checkpoint('efficientmod_xxs')
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        create_from_file('zoo_efficientmod_xs', {'state_dict': xxs}, tmp_path)
    message = str(err.value)
    assert 'missing' in message and 'layers.0.blocks.2.mlp.fc1.weight' in message
    assert 'layers.2.blocks.0.mlp.fc1.weight: (128, 128) vs (144, 144)' in message
    # features_only makes timm load non-strict; the filter still refuses
    with pytest.raises(modzoo.CheckpointMismatchError):
        create_from_file('zoo_efficientmod_xs', {'state_dict': xxs}, tmp_path, features_only=True)


@pytest.mark.parametrize('variant', VARIANTS)
def test_structure_matches_official(variant):
    """Exact per-block expansions (no GELU when r = 1), attention heads x head_dim, LayerScale, norms and kernels."""
    spec = OFFICIAL_STRUCTURE[variant]
    model = build_on_meta(f'zoo_efficientmod_{variant}')
    stem = model.stem.proj
    assert stem.kernel_size == (7, 7) and stem.stride == (4, 4) and stem.padding == (3, 3)
    for i, stage in enumerate(model.layers):
        dim = spec['dims'][i]
        if i == 0:
            assert stage.downsample is None
        else:
            conv = stage.downsample.proj
            assert (conv.in_channels, conv.out_channels) == (spec['dims'][i - 1], dim)
            assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1)
        mod_blocks = [b for b in stage.blocks if isinstance(b, EfficientModBlock)]
        attn_blocks = [b for b in stage.blocks if isinstance(b, AttentionBlock)]
        # the attention blocks come after all modulation blocks (shared `blocks.{j}` index space)
        assert list(stage.blocks) == mod_blocks + attn_blocks
        ratios = [b.mlp.fc1.out_features // dim for b in mod_blocks]
        assert ratios == spec['ratios'][i], f'stage {i}'
        for block, r in zip(mod_blocks, ratios, strict=True):
            assert block.mlp.fc1.weight.shape == (r * dim, dim) and block.mlp.fc2.weight.shape == (dim, r * dim)
            assert block.mlp.apply_gelu == (r > 1)
            ctx = block.mlp.context_layer
            assert ctx.f.weight.shape == (dim, dim) and ctx.g.weight.shape == (dim, dim)
            assert ctx.dwconv.weight.shape == (dim, 1, 7, 7) and ctx.dwconv.groups == dim
            assert ctx.dwconv.bias is not None
            assert block.ls.gamma.shape == (dim,)
            assert block.norm.eps == 1e-5
        assert len(attn_blocks) == spec['attn'][i]
        for block in attn_blocks:
            heads, head_dim = spec['heads'][i]
            assert (block.attn.num_heads, block.attn.head_dim) == (heads, head_dim)
            assert block.attn.qkv.weight.shape == (3 * heads * head_dim, dim) and block.attn.qkv.bias is None
            assert block.attn.proj.weight.shape == (dim, heads * head_dim)
            assert block.mlp.fc1.out_features == dim * spec['att_ratio'][i]
            assert not any('ls' in n or 'gamma' in n for n, _ in block.named_parameters())  # no LayerScale
            assert block.norm1.eps == block.norm2.eps == 1e-5
    assert model.norm.eps == 1e-5


def test_layerscale_init():
    model = timm.create_model('zoo_efficientmod_xxs', **SMALL)
    assert torch.equal(model.layers[0].blocks[0].ls.gamma, torch.full((16,), 1e-4))


def test_create_model_honours_kwargs():
    model = timm.create_model('zoo_efficientmod_s', num_classes=10, drop_path_rate=0.1, drop_rate=0.3).eval()
    assert model.head.fc.out_features == 10 and model.num_classes == 10
    assert model.head.drop.p == 0.3
    rates = []
    for stage in model.layers:
        for block in stage.blocks:  # modulation then attention blocks: one linear schedule over all 28
            paths = [m for m in block.modules() if type(m).__name__ == 'DropPath']
            rates.append(paths[0].drop_prob if paths else 0.)
    assert len(rates) == 4 + 4 + 12 + 8
    assert rates[0] == 0. and max(rates) == pytest.approx(0.1) and rates == sorted(rates)
    assert rates[-1] == pytest.approx(0.1) and rates[1] == pytest.approx(0.1 / 27)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    # registered defaults: the official drop-path of each factory (0.02 for s and s_conv, none for xxs/xs)
    default_s = build_on_meta('zoo_efficientmod_s')
    assert max(m.drop_prob for m in default_s.modules() if type(m).__name__ == 'DropPath') == pytest.approx(0.02)
    assert not any(type(m).__name__ == 'DropPath' for m in build_on_meta('zoo_efficientmod_xxs').modules())


def test_tile_semantics():
    """Hidden channel j is multiplied by context channel j mod C (tile/repeat), not j // r (interleave)."""
    torch.manual_seed(0)
    v, ctx = torch.randn(2, 3, 5, 4 * 6), torch.randn(2, 3, 5, 6)
    out = gelu_tile_mul(v, ctx, False)
    assert torch.equal(out, v * ctx.repeat(1, 1, 1, 4))
    assert not torch.allclose(out, v * ctx.repeat_interleave(4, dim=-1))
    assert torch.equal(out[..., 13], v[..., 13] * ctx[..., 13 % 6])
    assert torch.allclose(gelu_tile_mul(v, ctx, True), F.gelu(v) * ctx.repeat(1, 1, 1, 4))
    # r = 1: a plain product
    assert torch.equal(gelu_tile_mul(v[..., :6], ctx, False), v[..., :6] * ctx)


def test_tile_is_never_materialised(monkeypatch):
    model = timm.create_model('zoo_efficientmod_xxs', **SMALL).eval()

    def refuse(*args, **kwargs):
        raise AssertionError('the tile must be a broadcast, not a materialised repeat')
    monkeypatch.setattr(torch.Tensor, 'repeat', refuse)
    monkeypatch.setattr(torch.Tensor, 'repeat_interleave', refuse)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize('expansion', [1, 4])
def test_modulation_formula(expansion):
    """``fc2(act_r(fc1 x) * tile(g(GELU(dw7(f x)))))`` with act_r = GELU only when r > 1, written out by hand."""
    torch.manual_seed(0)
    mod = EfficientModulation(8, expansion).eval()
    x = torch.randn(2, 5, 6, 8)
    ctx = mod.context_layer
    c = F.conv2d(ctx.f(x).permute(0, 3, 1, 2), ctx.dwconv.weight, ctx.dwconv.bias, padding=3, groups=8)
    c = ctx.g(F.gelu(c).permute(0, 2, 3, 1))
    v = mod.fc1(x)
    v = F.gelu(v) if expansion > 1 else v
    with torch.no_grad():
        assert torch.allclose(mod(x), mod.fc2(v * c.repeat(1, 1, 1, expansion)), atol=1e-6)
    # dwconv_gelu on a channels-last view equals the contiguous NCHW result
    y = torch.randn(2, 6, 7, 8).permute(0, 3, 1, 2)
    assert torch.allclose(dwconv_gelu(y, ctx.dwconv.weight, ctx.dwconv.bias),
                          F.gelu(F.conv2d(y.contiguous(), ctx.dwconv.weight, ctx.dwconv.bias, padding=3, groups=8)),
                          atol=1e-6)


def test_block_dropout_only_where_official():
    """proj_drop_rate (the official in-block ``drop_rate``) acts after the GELU of r > 1 blocks only; attention
    dropout is off in eval (the official code passes it to SDPA in eval too)."""
    model = timm.create_model('zoo_efficientmod_xxs', **SMALL, proj_drop_rate=0.5, attn_drop_rate=0.5).eval()
    assert model.layers[0].blocks[0].mlp.drop_prob == 0. and model.layers[0].blocks[1].mlp.drop_prob == 0.5
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


def test_features_strides_and_transitions():
    model = timm.create_model('zoo_efficientmod_xxs', **SMALL, features_only=True).eval()
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [16, 24, 32, 48]
    x = torch.randn(1, 3, 67, 45)  # odd sizes: the overlapping convs give ceil(size / stride)
    with torch.no_grad():
        feats = model(x)
    assert [tuple(f.shape) for f in feats] == [(1, 16, 17, 12), (1, 24, 9, 6), (1, 32, 5, 3), (1, 48, 3, 2)]

    full = timm.create_model('zoo_efficientmod_xxs', **SMALL).eval()
    names = full.stage_transitions()
    assert names == ['layers.1.downsample', 'layers.2.downsample', 'layers.3.downsample']
    modules = dict(full.named_modules())
    with torch.no_grad():
        taps = full.forward_intermediates(x, intermediates_only=True)
        for name, tap in zip(names, taps[:-1], strict=True):  # each transition takes the previous stage's NCHW output
            conv = modules[name].proj
            assert conv.stride == (2, 2) and conv.in_channels == tap.shape[1]
            out = modules[name](tap)
            assert out.shape[1:3] == ((tap.shape[2] + 1) // 2, (tap.shape[3] + 1) // 2)
    # the SFM add-on finds them through the contract
    from modzoo.layers import find_stage_transitions
    assert find_stage_transitions(full) == names


def test_pretrained_has_no_download_and_says_so():
    cfg = build_on_meta('zoo_efficientmod_s').pretrained_cfg
    assert not cfg.get('url') and not cfg.get('hf_hub_id')
    assert any('drive.google.com' in note for note in cfg['notes'])
    with pytest.raises(RuntimeError, match='No pretrained weights'):
        timm.create_model('zoo_efficientmod_xxs', pretrained=True)


def test_reported_and_manifest_cover_every_model():
    reported, manifest = reported_and_manifest('efficientmod')
    names = modzoo.list_models(family='efficientmod')
    assert sorted(names) == sorted(reported) == sorted(f'zoo_efficientmod_{v}' for v in VARIANTS)
    for name in names:
        tag = build_on_meta(name).pretrained_cfg['tag']
        assert f'{name}.{tag}' in manifest
        assert reported[name]['gflops'] is None and 'measured' in reported[name]['note']


def test_torchscript():
    model = timm.create_model('zoo_efficientmod_xxs', **SMALL, num_classes=5).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-6)
        feats = scripted.forward_intermediates(x, indices=[1, 3], intermediates_only=True)
    assert [tuple(f.shape) for f in feats] == [(1, 24, 8, 12), (1, 48, 2, 3)]


def test_torch_compile_fullgraph():
    """One graph, no breaks, with the fused ops (reference path on CPU) and the hybrid attention blocks."""
    model = timm.create_model('zoo_efficientmod_xxs', **SMALL, num_classes=5).eval()
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


# ------------------------------------------------------------------------------------------------------------------
# modzoo.utils.flops: fvcore with an SDPA handle

class _TinyAttention(nn.Module):
    def __init__(self, dim=16, heads=2, head_dim=12, fused=True):
        super().__init__()
        self.heads, self.head_dim, self.fused = heads, head_dim, fused
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.proj = nn.Linear(heads * head_dim, dim)

    def forward(self, x):  # count_flops feeds (1, *input_size) = (1, 1, N, C): tokens (1, N, C)
        x = x.flatten(0, 1)
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = (q @ k.transpose(-2, -1) * self.head_dim ** -0.5).softmax(-1) @ v
        return self.proj(out.transpose(1, 2).flatten(-2))


class _GroupedQueryAttention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)


def test_sdpa_flop_handle_counts_attention_matmuls():
    from fvcore.nn import FlopCountAnalysis
    from modzoo.utils import FLOP_HANDLES
    tokens, dim, heads, head_dim = 10, 16, 2, 12
    fused = _TinyAttention(dim, heads, head_dim, fused=True)
    gflops, params = count_flops(fused, (1, tokens, dim))
    linear_macs = tokens * dim * 3 * heads * head_dim + tokens * heads * head_dim * dim
    attention_macs = heads * tokens * tokens * head_dim * 2  # q @ k^T and attn @ v
    assert round(gflops * 1e9) == linear_macs + attention_macs
    assert params == sum(p.numel() for p in fused.parameters())
    # equal to fvcore's own count of the same attention written as explicit matmuls
    unfused = _TinyAttention(dim, heads, head_dim, fused=False)
    assert count_flops(unfused, (1, tokens, dim))[0] == gflops
    # grouped-query attention with a different value width: every query head does its own products
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 3)
    with torch.no_grad():
        analysis = FlopCountAnalysis(_GroupedQueryAttention(), (q, k, v)).set_op_handle(**FLOP_HANDLES)
        assert analysis.total() == 2 * 4 * 5 * 7 * (8 + 3)
    assert sdpa_flop_jit is FLOP_HANDLES['aten::scaled_dot_product_attention']


def test_count_flops_on_a_hybrid_model():
    """The model's SDPA calls are counted: with the handle the total exceeds fvcore's default by the attention MACs."""
    from fvcore.nn import FlopCountAnalysis
    model = timm.create_model('zoo_efficientmod_xxs', **SMALL).eval()
    gflops, _ = count_flops(model, (3, 64, 64))
    with torch.no_grad():
        default = FlopCountAnalysis(model, torch.randn(1, 3, 64, 64))
        default.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        without = default.total()
    # stage 3: 4x4 tokens, 8 heads x 32; stage 4: 2x2 tokens, 8 heads x 32
    attention = 8 * 16 * 16 * 64 + 8 * 4 * 4 * 64
    assert round(gflops * 1e9) - without == attention


def _modulation_written_out(self: EfficientModulation, x: torch.Tensor) -> torch.Tensor:
    """EfficientModulation.forward written out as the official ``ContextLayer`` and ``Mlp``: depthwise conv and GELU,
    the value's GELU and dropout (r > 1 only), and the product with the context repeated r times."""
    context = self.context_layer
    ctx = F.gelu(context.dwconv(context.f(x).permute(0, 3, 1, 2)))
    ctx = context.g(ctx.permute(0, 2, 3, 1))
    v = self.fc1(x)
    if self.expansion > 1:
        v = self.drop(F.gelu(v))
    return self.fc2(v * ctx.repeat(1, 1, 1, self.expansion))


@pytest.mark.parametrize('training', [False, True])
def test_model_equals_the_modulation_written_out(monkeypatch, training):
    """The model, whose modulation calls dwconv_gelu and gelu_tile_mul, gives bit for bit the logits of the same model
    whose modulation is written out in this file; in training with proj_drop_rate > 0 too (the same dropout masks,
    drawn between the GELU and the modulation)."""
    model = timm.create_model('zoo_efficientmod_xxs', **SMALL, proj_drop_rate=0.5 if training else 0.).train(training)
    x = torch.randn(2, 3, 64, 48)

    def logits(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return model(x)
    expected = logits(1)
    if training:  # the dropout draws a mask, so another seed gives other logits
        assert not torch.equal(logits(2), expected)
    monkeypatch.setattr(EfficientModulation, 'forward', _modulation_written_out)
    assert torch.equal(logits(1), expected)
