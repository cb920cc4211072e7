"""SFM and MACMD in MMSegmentation: the SFM backbone option, SFMUPerHead, MACMDHead and its losses, end to end.

That every new config (configs/sfm/*, configs/macmd/*) parses, carries its recipe, builds at full size and trains one
step (forward + backward) is checked with all other configs in tests/test_mm_configs.py (their EXPECTED rows).
"""
import copy
import os

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmseg')
pytestmark = pytest.mark.mm

from modzoo.layers.sfm import demodulate  # noqa: E402
from modzoo.mm import ModzooBackbone  # noqa: E402
from modzoo.mm.backbone import SFMFeatures  # noqa: E402
from modzoo.mm import cli  # noqa: E402
from modzoo.mm.seg import ClasswiseDiceLoss, MACMDHead  # noqa: E402
from modzoo.mm.smoke import build_model, dummy_batch, load_config  # noqa: E402
from modzoo.mm.tiny import WRITERS  # noqa: E402
from zoo_testing import fast_init  # noqa: E402
from mm_testing import ROOT, one_thread_fast_parsing  # noqa: E402,F401  (autouse fixture)

SFM_CONFIGS = {  # SFM config -> its plain partner (the base it extends)
    'sfm/upernet_focalnet-t-srf_sfm_8xb2-160k_ade20k-512x512.py':
        'focalnet/upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py',
    'sfm/upernet_smt-s_sfm_8xb2-160k_ade20k-512x512.py': 'smt/upernet_smt-s_8xb2-160k_ade20k-512x512.py',
}
MACMD_CONFIG = 'macmd/macmd_pvt-v2-b2_1xb16-150e_synapse-224x224.py'


def _config(relpath: str):
    return load_config(os.path.join(ROOT, 'configs', relpath))


def _pretrained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every float parameter and buffer, so that nothing sits at a (zero/one) initial value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            t.add_(torch.randn(t.shape, generator=gen) * 0.02)
    return model


def _randomise_resamplers(resamplers, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for r in resamplers:
            r.saliency_proj.weight.copy_(torch.randn(r.saliency_proj.weight.shape, generator=gen) * 2)
            r.saliency_proj.bias.copy_(torch.randn(r.saliency_proj.bias.shape, generator=gen))


# ----------------------------------------------------------------------------------------------------------------------
# SFM backbone option
# ----------------------------------------------------------------------------------------------------------------------

SMALL_FOCALNET = dict(model_name='zoo_focalnet_tiny_srf', depths=(1, 1, 1, 1), out_norms=True)


def test_sfm_backbone_identity_keys_and_features(tmp_path):
    plain = _pretrained_like(ModzooBackbone(**SMALL_FOCALNET)).eval()
    sfm = ModzooBackbone(sfm=dict(), **SMALL_FOCALNET).eval()
    # the network's keys are unchanged: a plain adapter checkpoint loads, only the (identity) resamplers are missing
    added = set(sfm.state_dict()) - set(plain.state_dict())
    assert added == {k for k in sfm.state_dict() if k.startswith('resamplers.')}
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in plain.state_dict().items()}}, path)
    report = sfm.load_pretrained(str(path))
    assert report.missing and all(k.startswith('resamplers.') for k in report.missing)

    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref, out = plain(x), sfm(x)
    assert isinstance(out, SFMFeatures) and len(out) == 4 and out.levels == (0, 1, 2, 3)
    assert [w.size for w in out.warps] == [(16, 24), (8, 12), (4, 6)]
    for a, b, m in zip(ref, out, out.modulated, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)  # ARS starts as the identity warp
        torch.testing.assert_close(m, a, rtol=0, atol=1e-5)

    # trained-like warps: the uniform maps are the exact inverse of the recorded warps applied to the modulated ones
    _randomise_resamplers(sfm.resamplers)
    with torch.no_grad():
        out = sfm(x)
    for k, (u, m) in enumerate(zip(out, out.modulated, strict=True)):
        torch.testing.assert_close(u, m if k == 0 else demodulate(m, out.warps[:k]), rtol=0, atol=0)
        if k:
            assert (u - m).abs().max() > 1e-2
    # an SFM checkpoint round-trips (resamplers included); a plain backbone refuses it unless non-strict
    path = tmp_path / 'sfm.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in sfm.state_dict().items()}}, path)
    again = ModzooBackbone(sfm=dict(), **SMALL_FOCALNET).eval()
    again.load_pretrained(str(path))
    with torch.no_grad():
        for a, b in zip(out, again(x), strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
    with pytest.raises(ValueError, match='sfm=None'):
        ModzooBackbone(**SMALL_FOCALNET).load_pretrained(str(path))

    # taps other than 0..3: each map carries its own number of warps
    sub = ModzooBackbone(sfm=dict(), out_indices=(1, 3), **SMALL_FOCALNET)
    assert sub(x).levels == (1, 3) and len(sub(x).warps) == 3
    with pytest.raises(TypeError, match='dict of SFM options'):
        ModzooBackbone(sfm=True, **SMALL_FOCALNET)


# ----------------------------------------------------------------------------------------------------------------------
# SFM segmentors
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('config', sorted(SFM_CONFIGS))
def test_sfm_segmentor_equals_plain_at_init(config):
    """With ARS at the identity warp and MSAU's reassembly gated off, the SFM segmentor is its plain partner."""
    cfg, plain_cfg = _config(config), _config(SFM_CONFIGS[config])
    assert cfg.model.backbone.sfm == dict(min_density=0.125) and cfg.model.decode_head.type == 'SFMUPerHead'
    size = (64, 96)
    with fast_init():
        plain = build_model(plain_cfg, input_size=size).eval()
        sfm = build_model(cfg, input_size=size).eval()
    _pretrained_like(plain)
    missing, unexpected = sfm.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(k.startswith(('backbone.resamplers.', 'decode_head.msau.')) for k in missing)

    data = plain.data_preprocessor(dummy_batch(plain_cfg, size=size), False)
    inputs, samples = data['inputs'], data['data_samples']
    with torch.no_grad():
        ref = plain(inputs, samples, mode='tensor')
        out = sfm(inputs, samples, mode='tensor')
        assert out.shape == ref.shape == (2, 150, 16, 24)
        # float32 summation order differs between the SFM and the plain head (1.3e-5 seen on an AMD EPYC)
        torch.testing.assert_close(out, ref, rtol=0, atol=5e-5)
        pred_ref = plain(inputs, copy.deepcopy(samples), mode='predict')
        pred = sfm(inputs, copy.deepcopy(samples), mode='predict')
    for a, b in zip(pred_ref, pred, strict=True):
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)

    # trained-like warps change the prediction, and the losses reach ARS and MSAU
    _randomise_resamplers(sfm.backbone.resamplers)
    with torch.no_grad():
        assert (sfm(inputs, samples, mode='tensor') - ref).abs().max() > 1e-3
    sfm.train()
    losses = sfm.loss(inputs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    for r in sfm.backbone.resamplers:
        assert r.saliency_dw.weight.grad.abs().sum() > 0
    for reassembly in sfm.decode_head.msau.reassemble:
        assert reassembly.gamma.grad.abs().sum() > 0

    # the SFM head needs the SFM backbone's warps: a plain feature tuple is a clear error
    with pytest.raises(TypeError, match='SFMFeatures'):
        sfm.decode_head(tuple(plain.extract_feat(inputs)))


# ----------------------------------------------------------------------------------------------------------------------
# MACMD head and losses
# ----------------------------------------------------------------------------------------------------------------------

def _released_dice(prob: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, smooth: float = 1e-5):
    """The released DiceLoss_ (softmax probabilities, class by class over the batch, mean over all classes),
    written out, with ignored pixels left out."""
    total = 0.
    for c in range(prob.shape[1]):
        p = prob[:, c] * valid
        t = (labels == c).float() * valid
        total = total + 1 - (2 * (p * t).sum() + smooth) / ((p * p).sum() + (t * t).sum() + smooth)
    return total / prob.shape[1]


def test_classwise_dice_matches_released_formula():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 12, 10, generator=gen, requires_grad=True)
    labels = torch.randint(0, 5, (2, 12, 10), generator=gen)
    loss = ClasswiseDiceLoss(loss_weight=0.6)
    expected = _released_dice(logits.softmax(1), labels, torch.ones(2, 12, 10))
    torch.testing.assert_close(loss(logits, labels), 0.6 * expected)
    labels[:, :, :3] = 255  # ignored pixels leave every sum
    valid = (labels != 255).float()
    torch.testing.assert_close(loss(logits, labels), 0.6 * _released_dice(logits.softmax(1), labels, valid))
    loss(logits, labels).backward()
    assert logits.grad[:, :, :, :3].abs().max() == 0 and logits.grad.abs().max() > 0
    with pytest.raises(ValueError, match='labels must be in'):
        loss(logits, torch.full((2, 12, 10), 7))


@pytest.fixture(scope='module')
def macmd_model():
    cfg = _config(MACMD_CONFIG)
    return cfg, build_model(cfg, input_size=(64, 64))


def test_macmd_head_deep_supervision_losses(macmd_model):
    cfg, model = macmd_model
    head = model.decode_head
    assert isinstance(head, MACMDHead)
    loss_cfg = cfg.model.decode_head.loss_decode
    assert [(d.type, d.loss_weight) for d in loss_cfg] == [('CrossEntropyLoss', 0.4), ('ClasswiseDiceLoss', 0.6)]
    assert head.aux_loss_weights == (1.0, 1.0)

    model.train()
    data = model.data_preprocessor(dummy_batch(cfg, size=(64, 64)), True)
    torch.manual_seed(0)
    outs = head.forward_all(model.extract_feat(data['inputs']))
    assert [tuple(o.shape) for o in outs] == [(2, 9, 32, 32), (2, 9, 16, 16), (2, 9, 8, 8)]  # strides 2, 4, 8
    losses = head.loss_by_feat(outs, data['data_samples'])
    assert set(losses) == {f'{p}{k}' for p in ('', 'aux1.', 'aux2.') for k in ('loss_ce', 'loss_dice', 'acc_seg')}

    labels = torch.stack([s.gt_sem_seg.data[0] for s in data['data_samples']])
    valid = (labels != 255).float()
    total = 0.
    for prefix, logits in zip(('', 'aux1.', 'aux2.'), outs, strict=True):
        up = F.interpolate(logits, size=labels.shape[-2:], mode='bilinear', align_corners=False)
        ce = 0.4 * F.cross_entropy(up, labels, ignore_index=255)
        dice = 0.6 * _released_dice(up.softmax(1), labels, valid)
        torch.testing.assert_close(losses[prefix + 'loss_ce'], ce)
        torch.testing.assert_close(losses[prefix + 'loss_dice'], dice)
        total = total + ce + dice  # equal weights on the three outputs
    parsed, _ = model.parse_losses({f'decode.{k}': v for k, v in losses.items()})
    torch.testing.assert_close(parsed, total)

    # every decoder parameter is trained, APM's registered up-sampling blocks included; conv_seg is the main classifier
    model.zero_grad()
    parsed.backward()
    assert all(p.grad is not None for p in head.parameters())
    # a bias right before a training-mode BN, or added to every level's score before the softmax over levels, cancels
    cancelled = {n for n in dict(head.named_parameters()) if n.endswith(('gate_conv.bias', 'apm.score_fc2.bias'))}
    zero = {n for n, p in head.named_parameters() if not p.grad.abs().sum() > 0}
    assert zero <= cancelled, sorted(zero - cancelled)
    assert any(n.startswith('decoder.apm.upsample.') for n, _ in head.named_parameters())
    assert not any(n.startswith('decoder.head.') for n, _ in head.named_parameters())

    # prediction is the main output alone; weights on the auxiliaries are honoured
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        main = head.forward_all(feats)[0]
        torch.testing.assert_close(head(feats), main)
        logits = model(data['inputs'], data['data_samples'], mode='tensor')
    torch.testing.assert_close(logits, main)
    weighted = copy.deepcopy(head)
    weighted.aux_loss_weights = (0.5, 2.0)
    scaled = weighted.loss_by_feat(outs, data['data_samples'])
    torch.testing.assert_close(scaled['aux1.loss_ce'], 0.5 * losses['aux1.loss_ce'])
    torch.testing.assert_close(scaled['aux2.loss_dice'], 2.0 * losses['aux2.loss_dice'])


def test_macmd_head_options_and_errors():
    kwargs = dict(in_channels=[32, 64, 160, 256], num_classes=3)
    head = MACMDHead(norm_cfg=dict(type='SyncBN'), **kwargs)
    assert head.channels == 16 and head.conv_seg.in_channels == 16
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in head.decoder.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in head.decoder.modules())
    with pytest.raises(ValueError, match='channels is fixed'):
        MACMDHead(channels=64, **kwargs)
    with pytest.raises(ValueError, match='BatchNorm'):
        MACMDHead(norm_cfg=dict(type='GN', num_groups=4), **kwargs)
    with pytest.raises(ValueError, match='four levels'):
        MACMDHead(in_channels=[32, 64, 160], in_index=[0, 1, 2], num_classes=3)


# ----------------------------------------------------------------------------------------------------------------------
# end to end on the tiny datasets
# ----------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('tiny'))
    WRITERS['ade20k'](root, num_train=4, num_val=2, size=(64, 80))
    WRITERS['synapse'](root, cases={'train': [5, 6], 'val': [1]}, slices=2, size=64)
    return root


def _val(runner, key: str) -> float:
    return runner.message_hub.get_scalar(f'val/{key}').current()


def test_sfm_config_trains_evaluates_and_feeds_the_aliasing_tool(tiny_root, tmp_path):
    from modzoo.bench import aliasing
    config = os.path.join(ROOT, 'configs', 'sfm', 'upernet_focalnet-t-srf_sfm_8xb2-160k_ade20k-512x512.py')
    runner = cli.train_main('mmseg', [
        config, '--work-dir', str(tmp_path), '--tiny', tiny_root, '--tiny-scale', '16',
        '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'experiment_name=sfm_e2e'])
    assert runner.iter == 2 and 0.0 <= _val(runner, 'mIoU') <= 100.0
    checkpoint = tmp_path / 'iter_2.pth'
    assert checkpoint.is_file()

    # the acceptance: the aliasing measure on the tiny ADE20K images, per stage, for both settings; here
    # with the trained SFM checkpoint (its ARS and fine-tuned backbone) and with the training-free energy saliency
    images = os.path.join(tiny_root, 'ade', 'ADEChallengeData2016', 'images')
    out = tmp_path / 'spectra.png'
    learned = aliasing.main([
        '--model', 'zoo_focalnet_tiny_srf', '--model-kwargs', 'focal_windows=(9,9,9,9)', 'out_norms=True',
        '--images', images, '--size', '64', '--sfm-checkpoint', str(checkpoint), '--out', str(out)])
    assert len(learned['without']) == len(learned['with']) == 3
    assert all(0 <= v <= 1 for v in learned['without'] + learned['with'])
    assert out.stat().st_size > 1000
    energy = aliasing.main(['--model', 'zoo_focalnet_tiny_srf', '--images', images, '--size', '64', '--ars', 'energy',
                            '--out', str(out)])
    assert energy['with'] != pytest.approx(energy['without'], abs=1e-4)
    with pytest.raises(SystemExit, match='model-kwargs'):  # the config's backbone options are needed
        aliasing.main(['--model', 'zoo_focalnet_tiny_srf', '--images', images, '--size', '64',
                       '--sfm-checkpoint', str(checkpoint), '--out', str(out)])


def test_macmd_config_trains_and_evaluates_on_synapse(tiny_root, tmp_path):
    config = os.path.join(ROOT, 'configs', 'macmd', 'macmd_pvt-v2-b2_1xb16-150e_synapse-224x224.py')
    common = ['--tiny', tiny_root, '--tiny-scale', '7']  # 224 -> 32 px slices
    runner = cli.train_main('mmseg', [
        config, '--work-dir', str(tmp_path), *common,
        '--cfg-options', 'train_cfg.max_epochs=1', 'experiment_name=macmd_e2e'])
    assert runner.epoch == 1 and runner.iter == 2  # 4 training slices at batch 2
    for key in ('mIoU', 'mDice'):  # mmseg's IoUMetric with Dice, as its Synapse base sets it
        assert 0.0 <= _val(runner, key) <= 100.0
    checkpoint = tmp_path / 'epoch_1.pth'
    assert checkpoint.is_file()
    metrics = cli.test_main('mmseg', [config, str(checkpoint), '--work-dir', str(tmp_path / 'test'), *common,
                              '--cfg-options', 'experiment_name=macmd_e2e_test'])
    assert metrics['mDice'] == pytest.approx(_val(runner, 'mDice'))
