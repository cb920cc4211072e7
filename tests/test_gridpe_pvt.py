"""GridPE-PVT: timm equivalence (PVT v2), official layouts (whai362 v1/v2), an independent PVT v1 reference, GridPE
buffers in checkpoints, positions that follow the input, export paths."""
import re

import pytest
import timm
import torch
import torch.nn.functional as F

import modzoo
from modzoo.layers import find_stage_transitions
from modzoo.layers.grid_pe import GridPE, grid_positions
from modzoo.layers import adaptive_avg_pool2d_traceable
from zoo_testing import (
    build_on_meta, create_from_file, fast_init, fitted, load_assign, num_params, reported_and_manifest,
)

V2 = ['b0', 'b1', 'b2', 'b2_li', 'b3', 'b4', 'b5']
# small widths with head_dim >= 6 (the smallest 2D GridPE group), one block per stage
TINY = dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 2, 4), num_classes=5)


def _nontrivial(logits: torch.Tensor) -> bool:
    return logits.std().item() > 1e-2


@pytest.mark.parametrize('variant', V2)
def test_plain_equals_timm(variant):
    """gridpe=False is timm's pvt_v2_*: the same full-size state dict (keys and shapes), and with the same weights
    the same logits (depths cut to one block per stage for speed; every other setting is the variant's)."""
    ours_meta = build_on_meta(f'zoo_gridpe_pvt_v2_{variant}', gridpe=False)
    theirs_meta = build_on_meta(f'pvt_v2_{variant}')
    assert ({k: v.shape for k, v in ours_meta.state_dict().items()}
            == {k: v.shape for k, v in theirs_meta.state_dict().items()})
    ours = timm.create_model(f'zoo_gridpe_pvt_v2_{variant}', gridpe=False, num_classes=10, depths=(1, 1, 1, 1)).eval()
    theirs = load_assign(build_on_meta(f'pvt_v2_{variant}', num_classes=10, depths=(1, 1, 1, 1)), ours.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = theirs.eval()(x)
        assert (ours(x) - expected).abs().max().item() <= 1e-5 and _nontrivial(expected)


def _official_v2(timm_sd):
    """timm pvt_v2 layout -> the official whai362 classification/pvt_v2.py names."""
    out = {}
    for k, v in timm_sd.items():
        k = re.sub(r'^patch_embed\.', 'patch_embed1.', k)
        k = re.sub(r'^stages\.(\d)\.downsample\.', lambda m: f'patch_embed{int(m.group(1)) + 1}.', k)
        k = re.sub(r'^stages\.(\d)\.blocks\.(\d+)\.', lambda m: f'block{int(m.group(1)) + 1}.{m.group(2)}.', k)
        k = re.sub(r'^stages\.(\d)\.norm\.', lambda m: f'norm{int(m.group(1)) + 1}.', k)
        out[k.replace('.mlp.dwconv.', '.mlp.dwconv.dwconv.')] = v
    return out


def _random_weights(model: torch.nn.Module, seed: int = 0) -> dict:
    """Random weights for a (meta) model without its init cost: small matrices, norms near 1."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        value = torch.randn(v.shape, generator=gen) * (0.02 if v.dim() > 1 else 0.1)
        out[k] = value + 1. if re.search(r'norm\d?\.weight$', k) else value
    return out


def test_timm_b2_weights_load_strict():
    """timm pvt_v2_b2 weights load strictly into the GridPE b2 (public API); with GridPE off, timm's logits."""
    theirs = build_on_meta('pvt_v2_b2')
    sd = _random_weights(theirs)
    load_assign(theirs, sd).eval()
    overlay = dict(state_dict=sd)  # timm's in-memory weight source: the pretrained=True path without a file
    with fast_init():
        gridpe = timm.create_model('zoo_gridpe_pvt_v2_b2', pretrained=True, pretrained_cfg_overlay=overlay).eval()
    ours_sd = gridpe.state_dict()
    assert all(torch.equal(ours_sd[k], v) for k, v in sd.items())
    extra = sorted(set(ours_sd) - set(sd))
    assert len(extra) == 16 and all(k.endswith('.attn.grid_pe.omegas') for k in extra)  # one per block
    for key in extra:  # the seeded rotations, as a fresh layer builds them
        pe = gridpe.get_submodule(key[:-len('.omegas')])
        assert torch.equal(ours_sd[key], GridPE(pe.num_heads, pe.head_dim, 2, seed=pe.seed).omegas)
    plain = build_on_meta('zoo_gridpe_pvt_v2_b2', gridpe=False)
    load_assign(plain, fitted(sd, plain)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
        assert (plain(x) - expected).abs().max().item() <= 1e-5 and _nontrivial(expected)
        assert (gridpe(x) - expected).abs().max().item() > 1e-3  # GridPE changes the function (fine-tuning start)


def test_official_v2_layout(tmp_path):
    """An official whai362 PVT v2 file (flat, or a det backbone with `backbone.`) converts and loads strictly."""
    small = dict(depths=(1, 2, 1, 1))  # the layout does not depend on depth; linear SRA has the most key kinds
    theirs = timm.create_model('pvt_v2_b2_li', **small).eval()
    official = _official_v2(theirs.state_dict())
    assert 'block1.0.mlp.dwconv.dwconv.weight' in official and 'norm4.weight' in official
    ours = create_from_file('zoo_gridpe_pvt_v2_b2_li', official, tmp_path, gridpe=False, **small).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    det = {'state_dict': {'backbone.' + k: v for k, v in official.items() if not k.startswith('head.')}}
    backbone = create_from_file('zoo_gridpe_pvt_v2_b2_li', det, tmp_path, features_only=True, **small)
    assert len(backbone(x)) == 4


def _official_v1(sd):
    """modzoo PVT v1 layout -> the official whai362 classification/pvt.py names."""
    out = {}
    for k, v in sd.items():
        if '.grid_pe.' in k:
            continue
        k = re.sub(r'^patch_embed\.', 'patch_embed1.', k)
        k = re.sub(r'^stages\.(\d)\.downsample\.', lambda m: f'patch_embed{int(m.group(1)) + 1}.', k)
        k = re.sub(r'^stages\.(\d)\.pos_embed$', lambda m: f'pos_embed{int(m.group(1)) + 1}', k)
        k = re.sub(r'^stages\.(\d)\.blocks\.(\d+)\.', lambda m: f'block{int(m.group(1)) + 1}.{m.group(2)}.', k)
        out[k] = v
    return out


def _reference_pvt_v1(sd, x, depths, heads, sr_ratios, img_size):
    """PVT v1 as the official classification/pvt.py computes it, written with functional ops on official keys."""
    batch = x.shape[0]
    for i in range(4):
        pre = f'patch_embed{i + 1}.'
        patch = 4 if i == 0 else 2
        x = F.conv2d(x, sd[pre + 'proj.weight'], sd[pre + 'proj.bias'], stride=patch)
        H, W = x.shape[-2:]
        dim = x.shape[1]
        x = F.layer_norm(x.flatten(2).transpose(1, 2), (dim,), sd[pre + 'norm.weight'], sd[pre + 'norm.bias'])
        pos = sd[f'pos_embed{i + 1}']
        cls_pos = pos[:, :1] if i == 3 else pos[:, :0]
        grid = pos[:, cls_pos.shape[1]:]
        side = img_size // 4 // 2 ** i
        if (H, W) != (side, side):
            grid = F.interpolate(grid.reshape(1, side, side, -1).permute(0, 3, 1, 2), size=(H, W), mode='bilinear')
            grid = grid.reshape(1, dim, H * W).permute(0, 2, 1)
        if i == 3:
            x = torch.cat((sd['cls_token'].expand(batch, -1, -1), x), dim=1)
        x = x + torch.cat((cls_pos, grid), dim=1)
        h, sr = heads[i], sr_ratios[i]
        for j in range(depths[i]):
            blk = f'block{i + 1}.{j}.'
            y = F.layer_norm(x, (dim,), sd[blk + 'norm1.weight'], sd[blk + 'norm1.bias'], eps=1e-6)
            q = F.linear(y, sd[blk + 'attn.q.weight'], sd[blk + 'attn.q.bias'])
            q = q.reshape(batch, -1, h, dim // h).permute(0, 2, 1, 3)
            if sr > 1:
                y = y.transpose(1, 2).reshape(batch, dim, H, W)
                y = F.conv2d(y, sd[blk + 'attn.sr.weight'], sd[blk + 'attn.sr.bias'], stride=sr)
                y = y.flatten(2).transpose(1, 2)
                y = F.layer_norm(y, (dim,), sd[blk + 'attn.norm.weight'], sd[blk + 'attn.norm.bias'])
            kv = F.linear(y, sd[blk + 'attn.kv.weight'], sd[blk + 'attn.kv.bias'])
            k, v = kv.reshape(batch, -1, 2, h, dim // h).permute(2, 0, 3, 1, 4)
            attn = ((q @ k.transpose(-2, -1)) * (dim // h) ** -0.5).softmax(-1)
            out = (attn @ v).transpose(1, 2).reshape(batch, -1, dim)
            x = x + F.linear(out, sd[blk + 'attn.proj.weight'], sd[blk + 'attn.proj.bias'])
            y = F.layer_norm(x, (dim,), sd[blk + 'norm2.weight'], sd[blk + 'norm2.bias'], eps=1e-6)
            y = F.linear(F.gelu(F.linear(y, sd[blk + 'mlp.fc1.weight'], sd[blk + 'mlp.fc1.bias'])),
                         sd[blk + 'mlp.fc2.weight'], sd[blk + 'mlp.fc2.bias'])
            x = x + y
        if i < 3:
            x = x.reshape(batch, H, W, -1).permute(0, 3, 1, 2)
    x = F.layer_norm(x, (x.shape[-1],), sd['norm.weight'], sd['norm.bias'], eps=1e-6)
    return F.linear(x[:, 0], sd['head.weight'], sd['head.bias'])


V1_SMALL = dict(depths=(1, 2, 1, 1), embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 2, 4), num_classes=7, img_size=64)


def test_v1_official_layout_matches_reference(tmp_path):
    """Official-layout PVT v1 weights in the class-token model give the official computation's logits, at the
    training size and at another size (position embeddings resampled), and the state dict converts key for key."""
    source = timm.create_model('zoo_gridpe_pvt_v1_small', class_token=True, gridpe=False, **V1_SMALL).eval()
    with torch.no_grad():  # non-trivial norms and biases
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    official = _official_v1(source.state_dict())
    assert 'pos_embed4' in official and official['pos_embed4'].shape == (1, 1 + 2 * 2, 64)
    model = create_from_file('zoo_gridpe_pvt_v1_small', official, tmp_path, checkpoint_classes=7, class_token=True,
                             gridpe=False, **V1_SMALL).eval()
    for size in ((64, 64), (96, 128)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = _reference_pvt_v1(official, x, (1, 2, 1, 1), (1, 2, 2, 4), (8, 4, 2, 1), 64)
            assert (model(x) - expected).abs().max().item() <= 1e-5 and _nontrivial(expected), size


def test_v1_class_token_checkpoint_into_pooling_model(tmp_path, caplog):
    """The official classifier reads the class token: the pooling model warns when it takes that classifier, and
    takes the rest as a backbone (class token and its position row dropped)."""
    source = timm.create_model('zoo_gridpe_pvt_v1_tiny', class_token=True, **V1_SMALL)
    official = _official_v1(source.state_dict())
    with caplog.at_level('WARNING'):
        create_from_file('zoo_gridpe_pvt_v1_tiny', official, tmp_path, checkpoint_classes=7, **V1_SMALL)
    assert 'class_token=True' in caplog.text
    backbone = create_from_file('zoo_gridpe_pvt_v1_tiny', official, tmp_path, checkpoint_classes=7,
                                features_only=True, **V1_SMALL)
    assert torch.equal(backbone.model.stages[3].pos_embed, official['pos_embed4'][:, 1:])
    outs = backbone(torch.randn(1, 3, 64, 96))
    assert [o.shape[1:] for o in outs] == [(16, 16, 24), (32, 8, 12), (48, 4, 6), (64, 2, 3)]


def test_v1_position_embedding_resampled_on_load():
    """Weights trained at 64 px into a model built for 96 px: the grids are resampled once, as the runtime would."""
    at64 = timm.create_model('zoo_gridpe_pvt_v1_tiny', **V1_SMALL).eval()
    at96 = timm.create_model('zoo_gridpe_pvt_v1_tiny', **dict(V1_SMALL, img_size=96)).eval()
    modzoo.load_checkpoint(at96, at64.state_dict())
    assert at96.stages[0].pos_embed.shape == (1, 24 * 24, 16)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(at96(x), at64(x), atol=1e-5)


def test_gridpe_buffers_in_checkpoints():
    """GridPE checkpoints carry their rotations: they round-trip, and refuse models with other GridPE blocks."""
    two_blocks = dict(TINY, depths=(2, 2, 1, 1))
    trained = timm.create_model('zoo_gridpe_pvt_v2_b0', **two_blocks, gridpe_seed=0).eval()
    other_seed = timm.create_model('zoo_gridpe_pvt_v2_b0', **two_blocks, gridpe_seed=5).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = other_seed(x)
        modzoo.load_checkpoint(other_seed, trained.state_dict())
        assert torch.equal(other_seed(x), trained(x)) and not torch.equal(before, trained(x))
    cases = ((dict(gridpe=False), 'unexpected'), (dict(gridpe_blocks='first'), 'unexpected'))
    for kwargs, missing_or_unexpected in cases:
        model = timm.create_model('zoo_gridpe_pvt_v2_b0', **two_blocks, **kwargs)
        with pytest.raises(modzoo.CheckpointMismatchError, match='gridpe') as err:
            modzoo.load_checkpoint(model, trained.state_dict())
        assert missing_or_unexpected in str(err.value) and 'grid_pe.omegas' in str(err.value)


def test_mismatched_checkpoint_lists_keys():
    b1 = build_on_meta('zoo_gridpe_pvt_v2_b1').state_dict()
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        fitted({'model': b1}, build_on_meta('zoo_gridpe_pvt_v2_b2'))
    assert 'stages.0.blocks.2.attn.q.weight' in str(err.value) and 'missing' in str(err.value)
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        fitted(b1, build_on_meta('zoo_gridpe_pvt_v2_b0'))
    assert 'stages.0.blocks.0.attn.kv.weight: (128, 64) vs (64, 32)' in str(err.value)


def test_gridpe_placement_and_scales():
    all_blocks = build_on_meta('zoo_gridpe_pvt_v2_b2')
    seeds = [m.seed for m in all_blocks.modules() if isinstance(m, GridPE)]
    assert seeds == list(range(16))  # every block, distinct fixed seeds
    first = build_on_meta('zoo_gridpe_pvt_v2_b2', gridpe_blocks='first')
    assert [k for k in first.state_dict() if 'grid_pe' in k] == [
        f'stages.{i}.blocks.0.attn.grid_pe.omegas' for i in range(4)]
    plain = build_on_meta('zoo_gridpe_pvt_v2_b2', gridpe=False)
    assert num_params(plain) == num_params(all_blocks) == num_params(build_on_meta('pvt_v2_b2'))
    optimal = build_on_meta('zoo_gridpe_pvt_v1_small', scale_mode='optimal')
    wavelengths = [stage.blocks[0].attn.grid_pe.max_wavelength for stage in optimal.stages]
    assert wavelengths == [56., 28., 14., 7.]  # the coarsest wave spans each stage's 224-px grid
    b0 = build_on_meta('zoo_gridpe_pvt_v2_b0').stages[0].blocks[0].attn.grid_pe
    assert (b0.head_dim, b0.rot_dim) == (32, 30)  # partial rotation
    with pytest.raises(ValueError, match='gridpe_blocks'):
        build_on_meta('zoo_gridpe_pvt_v2_b0', gridpe_blocks='last')
    with pytest.raises(ValueError, match='class_token'):
        build_on_meta('zoo_gridpe_pvt_v2_b0', class_token=True)


def test_positions_follow_the_input():
    """Non-square and unseen sizes: tables are rebuilt per size (cached), keys sit at the reduced cells' centres."""
    model = timm.create_model('zoo_gridpe_pvt_v2_b0', **TINY).eval()
    attn = model.stages[0].blocks[0].attn  # sr 8
    with torch.no_grad():
        for size in ((64, 96), (80, 48), (64, 96)):
            assert model(torch.randn(1, 3, *size)).shape == (1, 5)
    assert sorted(key[:2] for key in attn.grid_pe.cache) == [(16, 24), (20, 12)]
    q, k = torch.randn(2, 1, 16 * 24, 16), torch.randn(2, 1, 6, 16)
    q_rot, k_rot = attn.rotate_qk(q, k, 16, 24)  # eager: cached complex tables
    # the 2 x 3 reduced keys of a 16 x 24 grid with sr 8 sit at (8i + 4, 8j + 4); queries on the integer grid
    centres = torch.tensor([[4., 4.], [4., 12.], [4., 20.], [12., 4.], [12., 12.], [12., 20.]])
    q_ref, k_ref = attn.grid_pe(q, k, grid_positions(16, 24, dtype=torch.float64), centres.double())
    assert torch.allclose(q_rot, q_ref, atol=1e-5) and torch.allclose(k_rot, k_ref, atol=1e-5)


def test_bfloat16_and_backward():
    """bfloat16 (no complex type) takes the real rotation; gradients flow through the cached complex tables."""
    model = timm.create_model('zoo_gridpe_pvt_v2_b0', **TINY).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        low = model.to(torch.bfloat16)(x.bfloat16()).float()
    assert model.stages[0].blocks[0].attn.grid_pe.omegas.dtype == torch.float32
    assert torch.allclose(low, ref, atol=0.1, rtol=0.1)
    model.float().train()
    x.requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    attn = model.stages[2].blocks[0].attn.double()  # sr 2, 2 heads of 24 channels
    q = torch.randn(1, 2, 4 * 4, 24, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, 2 * 2, 24, dtype=torch.float64, requires_grad=True)
    # the complex path's gradient is the transposed rotation: check it numerically
    assert torch.autograd.gradcheck(lambda a, b: attn.rotate_qk(a, b, 4, 4), (q, k))


def test_linear_sra_pooling_follows_the_traced_size():
    """b2_li's 7x7 key pooling, traced at one size, stays right at others (no baked-in pooling kernel)."""
    for size in ((3, 5), (7, 7), (16, 23), (56, 56)):
        x = torch.randn(2, 4, *size)
        assert torch.allclose(adaptive_avg_pool2d_traceable(x, 7), F.adaptive_avg_pool2d(x, 7), atol=1e-6)
    model = timm.create_model('zoo_gridpe_pvt_v2_b2_li', **TINY).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 224, 224), check_trace=False)
        for size in ((160, 192), (96, 288)):
            x = torch.randn(1, 3, *size)
            assert torch.allclose(traced(x), model(x), atol=1e-5), size


def test_features_and_stage_transitions():
    model = timm.create_model('zoo_gridpe_pvt_v1_tiny', **TINY, features_only=True, out_indices=(1, 3))
    assert model.feature_info.reduction() == [8, 32]
    outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 12), (2, 64, 2, 3)]
    full = timm.create_model('zoo_gridpe_pvt_v2_b0', **TINY)
    names = full.stage_transitions()
    assert names == ['stages.1.downsample', 'stages.2.downsample', 'stages.3.downsample']
    modules = dict(full.named_modules())
    assert all(modules[n].proj.stride == (2, 2) for n in names)
    assert find_stage_transitions(timm.create_model('zoo_gridpe_pvt_v2_b0', **TINY, features_only=True))


def test_class_token_model_surface():
    model = timm.create_model('zoo_gridpe_pvt_v1_tiny', class_token=True, global_pool='token', **TINY).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = model.forward_features(x)
        assert tokens.shape == (2, 1 + 4, 64)  # (B, 1 + N, C), as timm's ViTs
        assert torch.allclose(model.forward_head(tokens), model(x))
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, tokens) and inter[-1].shape == (2, 64, 2, 2)
    assert model.no_weight_decay() == {'cls_token'}
    with pytest.raises(ValueError, match='global_pool'):
        timm.create_model('zoo_gridpe_pvt_v2_b0', global_pool='token', **TINY)


def test_torchscript():
    x = torch.randn(1, 3, 64, 96)
    for name, kwargs in (('zoo_gridpe_pvt_v2_b2_li', {}), ('zoo_gridpe_pvt_v1_tiny', dict(class_token=True))):
        model = timm.create_model(name, **TINY, **kwargs).eval()
        scripted = torch.jit.script(model)
        with torch.no_grad():
            assert torch.allclose(scripted(x), model(x), atol=1e-6)


def test_torch_compile():
    model = timm.create_model('zoo_gridpe_pvt_v2_b0', **TINY).eval()
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_reported_numbers_and_manifest():
    """Every registered variant has reported numbers and a manifest entry; params match the paper's (no GridPE
    parameters), and the pretrained cfgs point at the manifest's sources."""
    reported, manifest = reported_and_manifest('gridpe_pvt')
    names = modzoo.list_models(family='gridpe_pvt')
    assert len(names) == 11 and sorted(reported) == names
    for name in names:
        model = build_on_meta(name)
        assert abs(num_params(model) / 1e6 - reported[name]['params_m']) < 0.1, name
        tag = f'{name}.in1k'
        urls = [s.get('url') for s in manifest[tag]['sources']]
        assert model.pretrained_cfg['url'] in urls, name
