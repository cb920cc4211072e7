"""SFM add-ons: ARS is the identity at initialisation, warps are monotone and invertible, MSAU, the aliasing tool."""
import copy
import math
import os

import pytest
import timm
import torch
import torch.nn.functional as F

from modzoo.layers.sfm import (
    SFM, AdaptiveResampler, AdaptiveUpsampler, SFMError, demodulate, find_stage_transitions,
    sample_separable,
)


def _pretrained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter and BN statistic, so nothing is at its (often zero/one) initial value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        for b in model.buffers():
            if b.is_floating_point():
                b.add_(torch.rand(b.shape, generator=gen) * 0.1)
    return model.eval()


def _random_resampler(chs: int, seed: int, min_density: float = 0.125) -> AdaptiveResampler:
    torch.manual_seed(seed)
    ars = AdaptiveResampler(chs, min_density)
    torch.nn.init.normal_(ars.saliency_proj.weight, std=2.)
    torch.nn.init.normal_(ars.saliency_proj.bias, std=1.)
    return ars


@pytest.mark.parametrize('name,features_only', [
    ('zoo_focalnet_tiny_srf', False),
    ('zoo_focalnet_tiny_srf', True),  # timm features_only (getter) wrapper: the mmseg adapter's path
    ('pvt_v2_b0', False),
    ('pvt_v2_b0', True),  # timm's default FeatureListNet for pvt_v2 (flattened module names)
])
def test_sfm_is_identity_at_init(name, features_only):
    kwargs = dict(features_only=True, out_indices=(0, 1, 2, 3)) if features_only else {}
    model = _pretrained_like(timm.create_model(name, **kwargs))
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        sfm = SFM(model).eval()
        out, warps = sfm(x, return_warps=True)
    ref, out = (ref, out) if features_only else ([ref], [out])
    for a, b in zip(ref, out, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    assert [w.size for w in warps] == [(16, 24), (8, 12), (4, 6)]
    assert len(sfm.resamplers) == 3


def test_find_stage_transitions_layouts():
    assert find_stage_transitions(timm.create_model('zoo_focalnet_tiny_srf', pretrained=False)) == [
        'layers.1.downsample', 'layers.2.downsample', 'layers.3.downsample']
    with torch.device('meta'):
        pvt = timm.create_model('pvt_v2_b0')
        getter = timm.create_model('pvt_v2_b0', features_only=True, feature_cls='getter')
        listed = timm.create_model('pvt_v2_b0', features_only=True)
        convnext = timm.create_model('convnext_atto')
        swin = timm.create_model('swin_tiny_patch4_window7_224')
        resnet = timm.create_model('resnet18')
    assert find_stage_transitions(pvt) == [f'stages.{i}.downsample' for i in (1, 2, 3)]
    assert find_stage_transitions(getter) == [f'model.stages.{i}.downsample' for i in (1, 2, 3)]
    assert find_stage_transitions(listed) == [f'stages_{i}.downsample' for i in (1, 2, 3)]
    assert find_stage_transitions(convnext) == [f'stages.{i}.downsample' for i in (1, 2, 3)]
    with pytest.raises(SFMError, match='channels-last patch-merging'):
        find_stage_transitions(swin)
    with pytest.raises(SFMError, match='Cannot find the stage transitions of ResNet'):
        SFM(resnet)
    with pytest.raises(SFMError, match='No module named'):
        SFM(pvt, transitions=['stages.9.downsample'])


def test_sfm_state_dict_deepcopy_and_remove():
    model = timm.create_model('pvt_v2_b0', features_only=True, feature_cls='getter')
    plain_sd = copy.deepcopy(model.state_dict())
    sfm = SFM(model)
    # the backbone's keys are untouched: a plain checkpoint loads into sfm.backbone strictly
    assert set(sfm.backbone.state_dict()) == set(plain_sd)
    sfm.backbone.load_state_dict(plain_sd, strict=True)
    own = {k for k in sfm.state_dict() if not k.startswith('backbone.')}
    assert own and all(k.startswith('resamplers.') for k in own)
    # give the resamplers a real warp, then check a deepcopy uses its own (copied) resamplers
    for r in sfm.resamplers:
        torch.nn.init.normal_(r.saliency_proj.weight, std=1.)
    x = torch.randn(1, 3, 64, 64)
    clone = copy.deepcopy(sfm)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), sfm(x), rtol=0, atol=0)
        for r in clone.resamplers:
            r.reset_parameters()
        assert any((a - b).abs().max() > 1e-4 for a, b in zip(clone(x), sfm(x), strict=True))
    backbone = sfm.remove()
    with torch.no_grad():
        ref = timm.create_model('pvt_v2_b0', features_only=True, feature_cls='getter')
        ref.load_state_dict(backbone.state_dict())
        torch.testing.assert_close(backbone(x), ref(x), rtol=0, atol=0)


def test_ars_wrong_input_is_a_clear_error():
    with pytest.raises(ValueError, match='NCHW input with 6 channels'):
        AdaptiveResampler(6)(torch.randn(1, 10, 12, 6))  # channels-last
    with pytest.raises(ValueError, match='NCHW input'):
        AdaptiveResampler(6)(torch.randn(1, 6, 12))


@pytest.mark.parametrize('seed,size', [(0, (17, 23)), (1, (32, 32)), (2, (5, 40)), (3, (1, 7))])
def test_ars_warp_is_monotone_and_bounded(seed, size):
    ars = _random_resampler(6, seed)
    x = torch.randn(3, 6, *size) * 3
    warp = ars.warp_from_saliency(ars.saliency(x))
    for axis, n in enumerate(size):
        cum = warp.cum_y if axis == 0 else warp.cum_x
        assert cum.shape == (3, n + 1)
        steps = cum.diff(dim=1)
        assert (steps > 0).all()
        # the density floor bounds the local stretch to 1 / min_density
        assert (steps.amax(1) / steps.amin(1) <= 1 / ars.min_density + 1e-4).all()
    grid = warp.modulation_grid()
    gx, gy = grid[..., 0], grid[..., 1]
    # strictly increasing along both axes (no folding), separable, inside the image
    if size[1] > 1:
        assert (gx.diff(dim=2) > 0).all()
    if size[0] > 1:
        assert (gy.diff(dim=1) > 0).all()
    assert (gx == gx[:, :1]).all() and (gy == gy[:, :, :1]).all()
    assert grid.abs().max() <= 1
    # phi and phi^-1 are exact inverses of each other
    s = torch.rand(3, 50)
    for axis in (0, 1):
        torch.testing.assert_close(warp.forward_map(axis, warp.inverse_map(axis, s)), s, rtol=0, atol=1e-6)


def test_ars_samples_densely_where_saliency_is_high():
    ars = AdaptiveResampler(1)
    saliency = torch.ones(1, 1, 40, 60)
    saliency[..., 20:30] = 20.  # a salient band of columns
    warp = ars.warp_from_saliency(saliency)
    cells = warp.inverse_at_centres(1, 60)[0]  # sample positions in input cells
    spacing = cells.diff()
    inside = spacing[(cells[:-1] > 21) & (cells[1:] < 29)]
    outside = spacing[(cells[1:] < 18) | (cells[:-1] > 32)]
    assert inside.max() < 0.5 * outside.min()
    # rows are not salient: the y warp stays the identity
    torch.testing.assert_close(warp.inverse_at_centres(0, 40)[0], torch.arange(40.) + 0.5, rtol=0, atol=1e-6)


def test_identity_is_exact_in_half_precision():
    x = torch.randn(2, 8, 20, 30, dtype=torch.bfloat16)
    y, warp = AdaptiveResampler(8).to(torch.bfloat16)(x)
    assert y.dtype == torch.bfloat16 and torch.equal(y, x)
    assert warp.cum_x.dtype == torch.float32  # the warp itself is computed in float32


def test_sampler_matches_grid_sample():
    ars = _random_resampler(4, 5)
    x = torch.randn(2, 4, 19, 26)
    warp = ars.warp_from_saliency(ars.saliency(x))
    ref = F.grid_sample(x, warp.modulation_grid(), mode='bilinear', padding_mode='border', align_corners=False)
    torch.testing.assert_close(ars.resample(x, warp), ref, rtol=0, atol=1e-4)
    # identity positions reproduce the input bit for bit
    pos_y = torch.arange(19.)[None].expand(2, -1)
    pos_x = torch.arange(26.)[None].expand(2, -1)
    assert torch.equal(sample_separable(x, pos_y, pos_x), x)


def _smooth_maps(n: int, h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing='ij')
    maps = [torch.sin(2 * math.pi * (xx + 0.5 * yy)), torch.cos(2 * math.pi * yy), xx * yy,
            torch.sin(math.pi * xx) ** 2]
    return torch.stack(maps)[None].repeat(n, 1, 1, 1)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_ars_then_inverse_warp_round_trips(seed):
    ars = _random_resampler(4, seed)
    h, w = 48, 64
    warp = ars.warp_from_saliency(ars.saliency(torch.randn(2, 4, h, w)))
    # smooth maps (amplitude 1) come back up to interpolation error
    x = _smooth_maps(2, h, w)
    back = demodulate(ars.resample(x, warp), warp, warp.size)
    err = (back - x).abs()
    assert err.max() < 0.08 and err.mean() < 5e-3, (err.max(), err.mean())
    # the identity warp round-trips exactly up to float rounding
    _, identity = AdaptiveResampler(4)(x)
    torch.testing.assert_close(demodulate(AdaptiveResampler(4)(x)[0], identity, identity.size), x, rtol=0, atol=1e-5)


def test_identity_warp_demodulation_is_bilinear_upsampling():
    ars = AdaptiveResampler(3)
    x = torch.randn(2, 3, 16, 20)
    _, warp = ars(x)  # identity warp of a 16 x 20 map
    coarse = torch.randn(2, 5, 8, 10)
    ref = F.interpolate(coarse, size=(16, 20), mode='bilinear', align_corners=False)
    torch.testing.assert_close(demodulate(coarse, warp, warp.size), ref, rtol=0, atol=1e-6)


def test_msau_coarse_to_fine_and_gradients():
    backbone = timm.create_model('pvt_v2_b0', features_only=True, feature_cls='getter')
    sfm = SFM(backbone)
    for r in sfm.resamplers:
        torch.nn.init.normal_(r.saliency_proj.weight, std=0.5)
    x = torch.randn(2, 3, 64, 96)
    feats, warps = sfm(x, return_warps=True)
    assert [w.size for w in warps] == [tuple(f.shape[-2:]) for f in feats[:3]]
    msau = AdaptiveUpsampler(5, num_scales=3, guide_chs=[f.shape[1] for f in feats[:3]])
    # at initialisation MSAU is the plain inverse warp
    logits = torch.randn(2, 5, *feats[3].shape[-2:], requires_grad=True)
    with torch.no_grad():
        plain = logits
        for k in reversed(range(3)):
            plain = demodulate(plain, warps[k], warps[k].size)
        torch.testing.assert_close(msau(logits, warps, feats[:3]), plain, rtol=0, atol=0)
    with torch.no_grad():
        for module in msau.reassemble:
            module.gamma.fill_(0.5)
    out = msau(logits, warps, feats[:3])
    assert out.shape == (2, 5, 16, 24)
    out.square().mean().backward()
    for name, p in list(msau.named_parameters()) + [('logits', logits)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for i, r in enumerate(sfm.resamplers):
        for name, p in r.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f'resampler {i} {name}'
    # demodulating a pyramid level in one step through the composed warps matches the step-by-step walk
    one_step = demodulate(feats[2].detach(), warps[:2], warps[0].size)
    two_step = demodulate(demodulate(feats[2].detach(), warps[1], warps[1].size), warps[0], warps[0].size)
    assert (one_step - two_step).abs().mean() < 0.1 * feats[2].abs().mean()


def test_saliency_head_gets_gradients_at_init():
    # zero-initialised last conv gives the identity warp, but not a dead head: the loss still reaches it
    sfm = SFM(timm.create_model('pvt_v2_b0', features_only=True, feature_cls='getter'))
    x = torch.randn(2, 3, 64, 64)
    feats = sfm(x)
    sum(f.square().mean() for f in feats).backward()
    for r in sfm.resamplers:
        assert r.saliency_proj.weight.grad.abs().sum() > 0


def test_energy_saliency_lowers_aliasing_of_localised_texture():
    """The SFM claim on a controlled map: stretching a local high-frequency patch moves its power below Nyquist."""
    from modzoo.bench import aliasing
    yy, xx = torch.meshgrid(torch.arange(64.), torch.arange(64.), indexing='ij')
    x = torch.sin(2 * math.pi * xx / 64) + torch.cos(2 * math.pi * yy / 48)
    patch = ((xx >= 20) & (xx < 32) & (yy >= 16) & (yy < 40)).float()
    x = (x + patch * torch.sin(2 * math.pi * 0.35 * xx + 0.3 * yy))[None, None].repeat(1, 4, 1, 1)
    plain = aliasing.share_above_nyquist(aliasing.power_spectrum(x))
    modulated, _ = aliasing.EnergyResampler(4)(x)
    resampled = aliasing.share_above_nyquist(aliasing.power_spectrum(modulated))
    assert plain > 0.1 and resampled < 0.25 * plain


def test_aliasing_tool_runs_on_tiny_ade20k(tmp_path):
    from modzoo.bench import aliasing
    tiny = pytest.importorskip('modzoo.mm.tiny')  # the dataset writers live with the OpenMMLab adapters
    ade = tiny.write_tiny_ade20k(str(tmp_path), num_train=2, num_val=1, size=(48, 64))
    assert sorted(os.listdir(os.path.join(ade, 'images', 'training'))) == ['ADE_train_00000001.jpg',
                                                                           'ADE_train_00000002.jpg']
    assert os.path.isfile(os.path.join(ade, 'annotations', 'validation', 'ADE_val_00000001.png'))
    # the dataset root works: label maps (annotations/) are skipped
    assert [os.path.basename(p) for p in aliasing.list_images(ade, 0)] == [
        'ADE_train_00000001.jpg', 'ADE_train_00000002.jpg', 'ADE_val_00000001.jpg']
    out = tmp_path / 'spectra.png'
    for ars in ('init', 'energy'):
        result = aliasing.main(['--model', 'pvt_v2_b0', '--images', ade, '--size', '64', '--ars', ars,
                                '--out', str(out)])
        assert len(result['without']) == len(result['with']) == 3
        assert all(0 <= v <= 1 for v in result['without'] + result['with'])
        if ars == 'init':  # untrained ARS is the identity warp
            assert result['with'] == pytest.approx(result['without'], abs=1e-9)
        else:
            assert result['with'] != pytest.approx(result['without'], abs=1e-4)
        assert out.stat().st_size > 1000
