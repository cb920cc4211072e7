"""modzoo.visualize (tools/visualize_modulation.py): hooks capture the real modulator/gates, every modulation family
renders a PNG, and models or stages without modulation are refused with the reason."""
import pytest
import torch
from PIL import Image

import modzoo
from modzoo import visualize as vis
from modzoo.models.focalnet import focal_context

TINY_FOCAL = dict(embed_dim=8, depths=(1, 1, 2, 1))


def _no_hooks_left(model):
    return all(not m._forward_hooks for m in model.modules())


def test_focal_hooks_capture_the_modulator_and_gates():
    model = modzoo.create_model('zoo_focalnet_tiny_srf', **TINY_FOCAL).eval()
    x = torch.randn(1, 3, 64, 64)
    inputs = {}
    for name, m in model.named_modules():
        if type(m).__name__ == 'FocalModulation':
            m.register_forward_pre_hook(lambda mod, args, name=name: inputs.__setitem__(name, args[0]))
    rows = vis.collect_maps(model, x, stage=2)
    assert [r['name'] for r in rows] == ['layers.2.blocks.0.modulation', 'layers.2.blocks.1.modulation']
    for row in rows:
        mod = model.get_submodule(row['name'])
        q, ctx, gates = torch.split(mod.f(inputs[row['name']]), mod.split_sizes, 1)
        modulator = mod.h(focal_context(ctx, gates, mod.focal_kernels(), mod.normalize_modulator))
        torch.testing.assert_close(row['modulator'], modulator[0].norm(dim=0))
        torch.testing.assert_close(row['gates'], gates[0])
        assert row['gate_labels'] == ['gate level 1 (k=3)', 'gate level 2 (k=5)', 'gate global']
        assert row['modulator'].shape == (4, 4)  # stride 16 at 64x64
    assert _no_hooks_left(model)


def test_stage_assignment_follows_feature_info():
    focal = modzoo.create_model('zoo_focalnet_tiny_srf', **TINY_FOCAL)
    stages = vis.stage_of_modules(focal, list(vis.modulation_modules(focal)))
    assert stages == {'layers.0.blocks.0.modulation': 0, 'layers.1.blocks.0.modulation': 1,
                      'layers.2.blocks.0.modulation': 2, 'layers.2.blocks.1.modulation': 2,
                      'layers.3.blocks.0.modulation': 3}
    # default: the deepest modulated stage whose maps are at least 4x4
    assert vis.default_stage(focal, 224) == 3 and vis.default_stage(focal, 64) == 2
    assert vis.default_stage(focal, 16) == 0
    with torch.device('meta'):
        smt = modzoo.create_model('zoo_smt_tiny')
    assert vis.default_stage(smt, 224) == 2  # stage 4 is attention only
    stages = vis.stage_of_modules(smt, list(vis.modulation_modules(smt)))
    # SMT-T: SAM in stages 1-2, alternating SAM/MSA in stage 3 (8 blocks), MSA only in stage 4
    assert sorted(set(stages.values())) == [0, 1, 2]
    assert sum(1 for s in stages.values() if s == 2) == 4


@pytest.fixture
def digit_image(tmp_path):
    from sklearn.datasets import load_digits
    img = Image.fromarray((load_digits().images[3] * 15).astype('uint8')).resize((64, 64)).convert('RGB')
    path = str(tmp_path / 'digit.png')
    img.save(path)
    return path


def test_visualize_tool_end_to_end(tmp_path, digit_image):
    model = modzoo.create_model('zoo_focalnet_tiny_srf', num_classes=10, **TINY_FOCAL)
    ckpt = str(tmp_path / 'w.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = str(tmp_path / 'maps.png')
    assert vis.main(['--model', 'zoo_focalnet_tiny_srf', '--checkpoint', ckpt, '--model-kwargs', 'embed_dim=8',
                     'depths=(1,1,2,1)', '--image', digit_image, '--img-size', '64', '--out', out]) == 0
    with Image.open(out) as png:  # default stage 2 (4x4 maps at 64x64): two blocks, modulator + 3 gates each
        assert png.format == 'PNG' and png.size[0] > 500


@pytest.mark.parametrize('model_name, stage, blocks, map_size', [
    ('zoo_efficientmod_xxs', 3, 2, 2),  # EfficientModulation blocks of stage 4 (before its attention blocks)
    ('zoo_smt_tiny', 1, 2, 8),          # SAM blocks of stage 2
])
def test_other_families_render(tmp_path, model_name, stage, blocks, map_size):
    model = modzoo.create_model(model_name)
    rows = vis.collect_maps(model, torch.randn(1, 3, 64, 64), stage)
    assert len(rows) == blocks and rows[0]['gates'] is None
    assert rows[0]['modulator'].shape == (map_size, map_size) and rows[0]['modulator'].abs().sum() > 0
    assert _no_hooks_left(model)
    out = vis.render(torch.rand(3, 64, 64), rows, model_name, str(tmp_path / 'maps.png'))
    with Image.open(out) as png:
        assert png.format == 'PNG'


def test_refuses_models_and_stages_without_modulation(tmp_path, digit_image, capsys):
    with torch.device('meta'):
        smt = modzoo.create_model('zoo_smt_tiny')
    with pytest.raises(vis.VisualizeError, match=r'stage 3 has no modulation blocks; stages with modulation: '
                                                 r'\[0, 1, 2\]'):
        vis.collect_maps(smt, torch.empty(1, 3, 64, 64, device='meta'), stage=3)
    pvt = modzoo.create_model('zoo_gridpe_pvt_v2_b0')
    with pytest.raises(vis.VisualizeError, match='no modulation modules'):
        vis.collect_maps(pvt, torch.randn(1, 3, 64, 64), stage=0)
    assert vis.main(['--model', 'zoo_focalnet_tiny_srf', '--pretrained', '--image', str(tmp_path / 'none.png')]) == 2
    assert vis.main(['--model', 'zoo_focalnet_tiny_srff', '--pretrained', '--image', digit_image]) == 2
    err = capsys.readouterr().err
    assert 'image not found' in err and 'Did you mean' in err
