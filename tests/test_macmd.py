"""MACMD decoder: golden outputs of the released modules, shapes on PVT v2, parameters, gradients."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from modzoo.decoders import MACMD, MACMDSegmenter
from modzoo.decoders import macmd as M

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'golden')

# golden fixture -> (our module built with the released constructor arguments, block name for the key remap)
GOLDEN_BUILDERS = {
    'macmd_hdconv': (lambda: M.HDConv(32, 32), 'hdconv'),
    'macmd_mcag': (lambda: M.MCAG(32), 'mcag'),
    'macmd_meab': (lambda: M.MEAB(64, 64), 'meab'),
    'macmd_apm_same_size': (lambda: M.AttentionPoolingModulation([16, 32, 48, 64], 16), 'apm'),
    'macmd_ccmix': (lambda: M.CrossChannelMix([48, 32, 16], 16), 'ccmix'),
    'macmd_upblock': (lambda: M.UpBlock(64, 32, exp_ratio=1.0, dw_kernel=9), 'upblock'),
    'macmd_ffb': (lambda: M.FeatureFusionBlock(16), 'ffb'),
}
# The released code has 9,750,881 decoder parameters (test.ipynb): its MACMD class without the three 1x1 heads
# (they live in network.py), with an unused LayerNorm in every UpBlock, and without APM's up-sampling blocks (created
# in forward, so never counted).
PAPER_DECODER_PARAMS = 9_750_881


def _load_golden(name):
    tensors = load_file(os.path.join(GOLDEN_DIR, name + '.safetensors'))
    with open(os.path.join(GOLDEN_DIR, name + '.json')) as f:
        meta = json.load(f)
    state_dict = {k[len('state_dict.'):]: v for k, v in tensors.items() if k.startswith('state_dict.')}
    inputs = [tensors[f'input.{i}'] for i in range(len(meta['input_shapes']))]
    outputs = [tensors[f'output.{i}'] for i in range(len(meta['output_shapes']))]
    return state_dict, inputs, outputs, meta


def test_every_golden_fixture_is_covered():
    names = sorted(f[:-5] for f in os.listdir(GOLDEN_DIR) if f.startswith('macmd_') and f.endswith('.json'))
    assert names == sorted(GOLDEN_BUILDERS)


@pytest.mark.parametrize('name', sorted(GOLDEN_BUILDERS))
def test_golden_module_outputs(name):
    build, block = GOLDEN_BUILDERS[name]
    state_dict, inputs, outputs, meta = _load_golden(name)
    module = build()
    remapped = M.remap_official_keys(state_dict, block)
    result = module.load_state_dict(remapped, strict=False)
    assert not result.unexpected_keys
    # APM's up-sampling blocks are ours (the released code never registers them); with all four levels at one size
    # they are not used, as in the released code
    assert all(k.startswith('upsample.') for k in result.missing_keys) and (block == 'apm') == bool(result.missing_keys)
    module.eval()
    with torch.no_grad():
        if block in ('apm', 'ccmix'):
            out = module(inputs)
        else:
            out = module(*inputs)
    out = list(out) if isinstance(out, (list, tuple)) else [out]
    assert len(out) == len(outputs)
    for ours, ref in zip(out, outputs, strict=True):
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_remap_rejects_unknown_block():
    with pytest.raises(KeyError, match='Unknown MACMD block'):
        M.remap_official_keys({}, 'seghead')


def test_decoder_parameter_count_vs_paper():
    decoder = MACMD((64, 128, 320, 512), num_classes=9)
    total = sum(p.numel() for p in decoder.parameters())
    apm_upsampling = sum(p.numel() for p in decoder.apm.upsample.parameters())
    heads = sum(p.numel() for m in (decoder.head, decoder.aux_head1, decoder.aux_head2) for p in m.parameters())
    unused_ln1 = 2 * sum(up.conv_in.conv.in_channels for up in (decoder.up4, decoder.up3, decoder.up2, decoder.up1))
    print(f'\nMACMD decoder (PVT v2 b2 levels, 9 classes): {total:,} parameters; paper/released 9.75M '
          f'({PAPER_DECODER_PARAMS:,}). Difference {total - PAPER_DECODER_PARAMS:+,} = registered APM up-sampling '
          f'blocks {apm_upsampling:+,} + three heads counted outside the released decoder class {heads:+,} - the '
          f'released UpBlocks\' unused LayerNorms {unused_ln1:,}')
    assert apm_upsampling == 3 * (64 * 9 + 2 * 64 + 64 * 64 + 64)
    assert total - apm_upsampling - heads + unused_ln1 == PAPER_DECODER_PARAMS


def test_decoder_state_dict_and_gradients():
    """Every parameter (APM's up-sampling blocks included) is in the state_dict and receives a gradient."""
    chs = (32, 64, 160, 256)
    decoder = MACMD(chs, num_classes=5)
    state = decoder.state_dict()
    params = dict(decoder.named_parameters())
    assert set(params) <= set(state)
    assert any(k.startswith('apm.upsample.2.') for k in params)
    feats = [torch.randn(2, c, 32 // 2 ** i, 40 // 2 ** i) for i, c in enumerate(chs)]
    # eval mode: in train mode the gradient of a conv bias that feeds a BatchNorm is zero by construction (the batch
    # mean cancels it; MCAG's gate conv, as released), so "non-zero" is checked with running statistics
    for train in (True, False):
        decoder.train(train)
        decoder.zero_grad(set_to_none=True)
        sum(o.square().mean() for o in decoder(feats)).backward()
        assert not [n for n, p in params.items() if p.grad is None]
    assert not [n for n, p in params.items() if not p.grad.abs().sum() > 0]


def test_decoder_rejects_wrong_features():
    decoder = MACMD((32, 64, 160, 256), num_classes=3)
    with pytest.raises(ValueError, match='list of 4 feature maps'):
        decoder([torch.randn(1, 32, 8, 8)] * 3)
    with pytest.raises(ValueError, match='built for level channels'):
        decoder([torch.randn(1, c, 8, 8) for c in (32, 64, 128, 256)])
    with pytest.raises(ValueError, match='divisible by 4'):
        MACMD((30, 64, 160, 256))


@pytest.mark.parametrize('size', [(224, 224), (256, 320)])
def test_segmenter_shapes_small_encoder(size):
    model = MACMDSegmenter('pvt_v2_b0', num_classes=9, in_chans=1).eval()
    assert model.decoder.in_chs == (32, 64, 160, 256)
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        outs = model(x)
        native = model.decoder(model.encoder(x))
    assert [tuple(o.shape) for o in outs] == [(1, 9) + size] * 3
    h, w = size
    assert [tuple(o.shape[-2:]) for o in native] == [(h // 2, w // 2), (h // 4, w // 4), (h // 8, w // 8)]


def test_segmenter_pvt_v2_b2_224():
    model = MACMDSegmenter('pvt_v2_b2', num_classes=9).eval()
    assert model.decoder.in_chs == (64, 128, 320, 512)
    assert sum(p.numel() for p in model.encoder.parameters()) == 24_849_856  # as printed by the released notebook
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [(1, 9, 224, 224)] * 3
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.mm
def test_tiny_synapse_layout_loads_in_mmseg(tmp_path):
    """The tiny Synapse writer produces what mmseg's SynapseDataset (data_root data/synapse/) reads."""
    datasets = pytest.importorskip('mmseg.datasets')
    import numpy as np
    from PIL import Image
    from modzoo.mm.tiny import write_tiny_synapse
    root = write_tiny_synapse(str(tmp_path), cases={'train': [5], 'val': [1]}, slices=2, size=64)
    for split in ('train', 'val'):
        ds = datasets.SynapseDataset(
            data_root=root, data_prefix=dict(img_path=f'img_dir/{split}', seg_map_path=f'ann_dir/{split}'),
            pipeline=[])
        assert len(ds) == 2
        label = np.array(Image.open(ds[0]['seg_map_path']))
        assert label.dtype == np.uint8 and set(np.unique(label)) == set(range(9))
        assert Image.open(ds[0]['img_path']).mode == 'RGB'
