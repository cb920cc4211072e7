"""FocalNet: official numerics (golden fixtures), official key layouts, timm equivalence, checkpoint handling."""
import pytest
import timm
import torch
import torch.nn.functional as F

import modzoo
from modzoo.models.focalnet import FocalModulation
from zoo_testing import (
    fitted,
    build_on_meta, check_golden_logits, check_loads_identically, create_for_test, create_from_file, golden_names,
    layout_names, load_assign, random_checkpoint,
)

SMALL = dict(embed_dim=16, depths=(1, 1, 2, 1))


@pytest.mark.parametrize('golden', golden_names('focalnet_'))
def test_golden_logits(golden, tmp_path):
    """Official-layout weights through the public timm API reproduce the official code's logits."""
    check_golden_logits('zoo_focalnet_tiny_srf', golden, tmp_path)


def _variant_of(layout: str) -> str:
    return 'zoo_' + layout  # keys/focalnet_tiny_srf.json -> zoo_focalnet_tiny_srf


@pytest.mark.parametrize('layout', [n for n in layout_names('focalnet_') if n != 'FOCALNET_CONFIGS'])
def test_official_layout_loads_strict(layout):
    """A checkpoint with exactly the official keys/shapes converts and loads strictly into the matching variant."""
    official = random_checkpoint(layout)
    head_rows = official['head.weight'].shape[0]
    model = build_on_meta(_variant_of(layout), num_classes=head_rows)
    converted = fitted({'model': official}, model)
    load_assign(model, converted)
    # every official tensor landed somewhere in the model, unchanged
    assert len(converted) == len(official)


def test_official_file_through_public_api(tmp_path):
    official = random_checkpoint('focalnet_tiny_srf')
    model = create_from_file('zoo_focalnet_tiny_srf', {'model': official}, tmp_path).eval()
    # the official downsample at the end of stage 0 is ours at the start of stage 1
    assert torch.equal(model.layers[1].downsample.proj.weight, official['layers.0.downsample.proj.weight'])
    assert torch.equal(model.layers[0].blocks[0].modulation.f.weight[..., 0, 0],
                       official['layers.0.blocks.0.modulation.f.weight'])
    assert torch.equal(model.head.fc.weight, official['head.weight'])


# variants timm also registers; fl4 L/XL differ from timm's registration only by normalize_modulator
SHARED_WITH_TIMM = [
    'tiny_srf', 'tiny_lrf', 'small_srf', 'small_lrf', 'base_srf', 'base_lrf',
    'large_fl3', 'large_fl4', 'xlarge_fl3', 'xlarge_fl4', 'huge_fl3', 'huge_fl4',
]


@pytest.mark.parametrize('variant', SHARED_WITH_TIMM)
def test_equivalent_to_timm(variant):
    """Same weights, same logits as timm's focalnet (full-size architecture, small input)."""
    ours = create_for_test(f'zoo_focalnet_{variant}', num_classes=10).eval()
    timm_kwargs = dict(num_classes=10)
    if variant in ('large_fl4', 'xlarge_fl4'):
        timm_kwargs['normalize_modulator'] = True  # timm's registration omits the official flag
    theirs = load_assign(build_on_meta(f'focalnet_{variant}', **timm_kwargs), ours.state_dict()).eval()
    # a multiple of 32: on other sizes we zero-pad before each patch conv like the official code, timm floors
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-5


def test_normalize_modulator_is_what_timm_omits():
    """large_fl4 normalises the modulator (official yaml); timm's registration does not, which changes logits."""
    ours = timm.create_model('zoo_focalnet_large_fl4', depths=(1, 1, 1, 1), embed_dim=16, num_classes=10).eval()
    with torch.no_grad():  # non-zero biases: with zero biases the post-norm LayerNorm hides the 1/(L+1) scale
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    assert all(b.modulation.normalize_modulator for s in ours.layers for b in s.blocks)
    from timm.models.focalnet import FocalNet as TimmFocalNet
    with torch.device('meta'):  # timm's large_fl4 settings at a small width/depth
        theirs = TimmFocalNet(
            depths=(1, 1, 1, 1), embed_dim=16, focal_levels=(4,) * 4, use_post_norm=True, use_overlap_down=True,
            layerscale_value=1e-4, num_classes=10)
    load_assign(theirs, ours.state_dict())
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert (ours(x) - theirs.eval()(x)).abs().max().item() > 1e-4


def test_timm_weights_load_unchanged():
    from timm.models.focalnet import FocalNet as TimmFocalNet
    theirs = TimmFocalNet(**SMALL, focal_levels=(3,) * 4, num_classes=10).eval()
    ours = timm.create_model('zoo_focalnet_tiny_lrf', **SMALL, num_classes=10).eval()
    ours.load_state_dict(fitted(theirs.state_dict(), ours))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize('container', ['model', 'state_dict', 'state_dict_ema', 'plain', 'module', 'mm_backbone'])
def test_checkpoint_containers(container):
    source = timm.create_model('zoo_focalnet_tiny_srf', **SMALL).eval()
    sd = source.state_dict()
    noise = {k: v + 1 for k, v in sd.items()}  # a decoy that must not be picked over EMA weights
    wrapped = {
        'model': {'model': sd},
        'state_dict': {'state_dict': sd, 'epoch': 3},
        'state_dict_ema': {'state_dict': noise, 'state_dict_ema': sd},
        'plain': sd,
        'module': {'model': {'module.' + k: v for k, v in sd.items()}},
        'mm_backbone': {'state_dict': {**{'backbone.' + k: v for k, v in sd.items()},
                                       'decode_head.conv.weight': sd['norm.weight']}},
    }[container]
    check_loads_identically('zoo_focalnet_tiny_srf', source, wrapped, **SMALL)


def test_mismatched_checkpoint_lists_keys_and_shapes(tmp_path):
    tiny = timm.create_model('zoo_focalnet_tiny_srf').state_dict()
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        create_from_file('zoo_focalnet_small_srf', {'model': tiny}, tmp_path)
    assert 'layers.2.blocks.6.modulation.f.weight' in str(err.value) and 'missing' in str(err.value)
    # features_only makes timm load non-strict; the filter still refuses
    with pytest.raises(modzoo.CheckpointMismatchError):
        create_from_file('zoo_focalnet_small_srf', {'model': tiny}, tmp_path, features_only=True)
    base = timm.create_model('zoo_focalnet_base_srf', depths=(2, 2, 6, 2)).state_dict()
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        create_from_file('zoo_focalnet_tiny_srf', {'model': base}, tmp_path)
    assert 'layers.0.blocks.0.modulation.f.weight: (259, 128, 1, 1) vs (195, 96, 1, 1)' in str(err.value)


def test_head_and_in_chans_adaptation(tmp_path):
    sd = timm.create_model('zoo_focalnet_tiny_srf', **SMALL).state_dict()
    model = create_from_file('zoo_focalnet_tiny_srf', sd, tmp_path, **SMALL, num_classes=7, in_chans=1)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 7)


def test_dense_task_focal_window_resize():
    """Window-3 ImageNet weights into a window-9 model (official detection setting): zero-padded kernels give the
    same function, as the official loader's do."""
    src = timm.create_model('zoo_focalnet_tiny_srf', **SMALL).eval()
    det = timm.create_model('zoo_focalnet_tiny_srf', **SMALL, focal_windows=(9, 9, 9, 9)).eval()
    modzoo.load_checkpoint(det, src.state_dict())
    assert det.layers[0].blocks[0].modulation.focal_layers[1][0].weight.shape[-1] == 11
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (det(x) - src(x)).abs().max().item() < 1e-5
    # centre-crop the other way
    back = timm.create_model('zoo_focalnet_tiny_srf', **SMALL).eval()
    modzoo.load_checkpoint(back, det.state_dict())
    with torch.no_grad():
        assert (back(x) - src(x)).abs().max().item() < 1e-5


def test_dense_task_extra_focal_level():
    src = timm.create_model('zoo_focalnet_tiny_srf', **SMALL)
    deeper = timm.create_model('zoo_focalnet_tiny_lrf', **SMALL)
    modzoo.load_checkpoint(deeper, src.state_dict())
    f_src = src.layers[0].blocks[0].modulation.f
    f_new = deeper.layers[0].blocks[0].modulation.f
    c = 16
    assert torch.equal(f_new.weight[:2 * c + 2], f_src.weight[:2 * c + 2])  # q, ctx, level-1/2 gates
    assert torch.count_nonzero(f_new.weight[2 * c + 2]) == 0  # the new level's gate starts at zero
    assert torch.equal(f_new.weight[-1], f_src.weight[-1])  # the global gate
    with pytest.raises(ValueError, match='more focal levels'):
        modzoo.load_checkpoint(src, deeper.state_dict())


def test_out_norms_for_dense_tasks(tmp_path):
    cls_sd = timm.create_model('zoo_focalnet_tiny_srf', **SMALL).state_dict()
    # ImageNet weights into a backbone with per-stage output norms: the norms are new, the rest loads
    feats = create_from_file('zoo_focalnet_tiny_srf', cls_sd, tmp_path, **SMALL, out_norms=True, features_only=True)
    outs = feats(torch.randn(1, 3, 64, 64))
    assert all(abs(o.mean(1).mean().item()) < 1e-4 for o in outs)  # LayerNorm2d outputs: zero channel mean
    # an official det/seg backbone file: `backbone.` prefix, per-output `norm{i}`, Linear layout, no head
    official = random_checkpoint('focalnet_tiny_srf')
    det = {'backbone.' + k: v for k, v in official.items() if not k.startswith(('head.', 'norm.'))}
    for i, c in enumerate((96, 192, 384, 768)):
        det[f'backbone.norm{i}.weight'] = torch.full((c,), 2.)
        det[f'backbone.norm{i}.bias'] = torch.zeros(c)
    model = timm.create_model('zoo_focalnet_tiny_srf', out_norms=True)
    sd = fitted({'state_dict': det}, model, strict=False)
    assert torch.equal(sd['layers.3.out_norm.weight'], torch.full((768,), 2.))
    with pytest.raises(modzoo.CheckpointMismatchError, match='norm.weight'):
        fitted({'state_dict': det}, model)  # the classifier's final norm is not in a det file


def test_isotropic_features_are_blocks():
    model = timm.create_model('zoo_focalnet_tiny_iso', features_only=True, out_indices=(3, 7, 11))
    assert model.feature_info.reduction() == [16, 16, 16]
    outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 192, 4, 6)] * 3


def test_torchscript():
    model = timm.create_model('zoo_focalnet_tiny_lrf', **SMALL, use_layerscale=True).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-6)
        feats = scripted.forward_intermediates(x, indices=[1, 3], intermediates_only=True)
    assert [f.shape[1] for f in feats] == [32, 128]


@pytest.mark.parametrize('backend', [
    'aot_eager',  # dynamo capture + AOT autograd: proves a single graph with no breaks, in seconds
    pytest.param('inductor', marks=pytest.mark.slow),  # full codegen: ~1-2 min of C++ compilation on 2 cores
])
def test_torch_compile(backend):
    model = timm.create_model('zoo_focalnet_tiny_srf', embed_dim=8, depths=(1, 1, 1, 1), num_classes=5).eval()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


def _focal_modulation_written_out(self: FocalModulation, x: torch.Tensor) -> torch.Tensor:
    """FocalModulation.forward with the focal levels written out, as the official code runs them: each level through
    its own ``focal_layers[l]`` (conv, GELU), summed as ``ctx_all + ctx * gate`` from zero, as the op's reference
    sums them (its first term is the product alone, which ``0 + product`` equals exactly)."""
    q, ctx, gates = torch.split(self.f(x), self.split_sizes, 1)
    ctx_all = 0
    for level in range(self.focal_level):
        ctx = self.focal_layers[level](ctx)
        ctx_all = ctx_all + ctx * gates[:, level:level + 1]
    ctx_global = F.gelu(ctx.mean((2, 3), keepdim=True))
    ctx_all = ctx_all + ctx_global * gates[:, self.focal_level:]
    if self.normalize_modulator:
        ctx_all = ctx_all / (self.focal_level + 1)
    return self.proj_drop(self.proj(self.norm(q * self.h(ctx_all))))


@pytest.mark.parametrize('variant,kwargs', [
    ('zoo_focalnet_tiny_srf', dict(normalize_modulator=True)),
    ('zoo_focalnet_tiny_lrf', dict(use_postln=True, use_postln_in_modulation=True)),
])
def test_model_equals_the_focal_levels_written_out(monkeypatch, variant, kwargs):
    """The model, whose modulation calls focal_context, gives bit for bit the logits of the same model whose
    modulation runs the focal levels written out in this file."""
    model = timm.create_model(variant, **kwargs, **SMALL).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = model(x)
        monkeypatch.setattr(FocalModulation, 'forward', _focal_modulation_written_out)
        written_out = model(x)
    assert torch.equal(written_out, expected)
