"""Stock OpenMMLab configs with only the backbone swapped (configs/own_config_examples), run by the stock tools.

Each example trains a few iterations on the tiny datasets with mmengine's own ``Runner`` (not modzoo's tools); the
segmentation run's checkpoint then goes through what a user's stock tools do with it: mmengine's
``load_checkpoint``, Runner resume, mmseg's ``init_model`` and its own ``tools/test.py``, and a Pretrained
``init_cfg`` on the full training checkpoint, all with torch's ``weights_only`` default.
"""
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip('mmseg')
pytest.importorskip('mmdet')
pytestmark = pytest.mark.mm

import modzoo.mm  # noqa: E402,F401  (what custom_imports does; allow-lists mmengine checkpoints)
from modzoo.mm import ModzooBackbone  # noqa: E402
from modzoo.mm.tiny import apply_tiny  # noqa: E402
import mm_testing  # noqa: E402
from mm_testing import ROOT, one_thread_fast_parsing  # noqa: E402,F401  (autouse fixture)

tiny_root = mm_testing.tiny_root  # fixture

EXAMPLES = os.path.join(ROOT, 'configs', 'own_config_examples')
SEG = 'segformer_gridpe-pvt-v2-b0_8xb2-160k_ade20k-512x512.py'
RETINANET = 'retinanet_gridpe-pvt-v2-b0_fpn_1x_coco.py'
MASK_RCNN = 'mask-rcnn_focalnet-t-srf_fpn_1x_coco.py'



def _tiny_config(name, tiny_root, work_dir, **backbone):
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(EXAMPLES, name))
    apply_tiny(cfg, tiny_root, iters=2, scale_factor=16)
    cfg.model.backbone.update(backbone)  # smaller backbones where the example's would dominate the run time
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = os.path.basename(str(work_dir))
    return cfg


def _stock_runner(cfg):
    from mmengine.runner import Runner
    assert os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '0') in ('0', '')
    return Runner.from_cfg(cfg)


@pytest.fixture(scope='module')
def seg_run(tiny_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('own_seg')
    cfg = _tiny_config(SEG, tiny_root, work_dir)
    runner = _stock_runner(cfg)
    runner.train()
    checkpoint = os.path.join(str(work_dir), 'iter_2.pth')
    assert os.path.isfile(checkpoint)
    return cfg, runner, checkpoint


@pytest.mark.parametrize('name, backbone', [
    (RETINANET, {}),
    (MASK_RCNN, dict(depths=(1, 1, 1, 1))),
])
def test_detection_examples_train_and_evaluate(name, backbone, tiny_root, tmp_path):
    runner = _stock_runner(_tiny_config(name, tiny_root, tmp_path, **backbone))
    runner.train()
    assert 0.0 <= runner.message_hub.get_scalar('val/coco/bbox_mAP').current() <= 1.0
    assert os.path.isfile(os.path.join(str(tmp_path), 'epoch_1.pth'))


def test_segmentation_example_trains_and_evaluates(seg_run):
    _, runner, _ = seg_run
    assert runner.iter == 2
    assert 0.0 <= runner.message_hub.get_scalar('val/mIoU').current() <= 100.0


def test_stock_load_checkpoint_and_init_model(seg_run):
    from mmengine.runner import load_checkpoint
    from mmseg.apis import init_model
    cfg, runner, checkpoint = seg_run
    saved = torch.load(checkpoint)  # the full training checkpoint, weights_only (torch's default)
    assert {'meta', 'message_hub', 'optimizer', 'state_dict'} <= set(saved)
    trained = runner.model.state_dict()

    model = init_model(cfg, checkpoint, device='cpu')
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    load_checkpoint(model.backbone, checkpoint, revise_keys=[(r'^backbone\.', '')], strict=False)
    assert torch.equal(model.backbone.model.patch_embed.proj.weight, trained['backbone.model.patch_embed.proj.weight'])


def test_stock_runner_resume(seg_run, tmp_path):
    cfg, runner, checkpoint = seg_run
    cfg = cfg.copy()
    cfg.work_dir = str(tmp_path)
    cfg.experiment_name = 'own_seg_resume'
    cfg.resume, cfg.load_from = True, checkpoint
    resumed = _stock_runner(cfg)
    resumed.train()  # max_iters is 2 and the checkpoint is at 2: resuming trains no further step
    assert resumed.iter == 2
    trained = runner.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, trained[key]), key


def test_stock_mmseg_test_tool(seg_run, tmp_path):
    cfg, _, checkpoint = seg_run
    config = str(tmp_path / 'tiny_config.py')
    cfg.dump(config)
    tool = os.path.join(os.path.dirname(__import__('mmseg').__file__), '.mim', 'tools', 'test.py')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]), OMP_NUM_THREADS='1')
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    result = subprocess.run([sys.executable, tool, config, checkpoint, '--work-dir', str(tmp_path / 'test')],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert 'mIoU' in result.stdout + result.stderr


def test_init_cfg_pretrained_from_full_training_checkpoint(seg_run):
    _, runner, checkpoint = seg_run
    backbone = ModzooBackbone('zoo_gridpe_pvt_v2_b0', init_cfg=dict(type='Pretrained', checkpoint=checkpoint))
    backbone.init_weights()
    trained = runner.model.backbone.state_dict()
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, trained[key]), key
    report = backbone._last_load_report
    assert not report.missing and not report.unexpected and not report.mismatched


def test_open_mmlab_location_names_the_config_key(tiny_root, tmp_path):
    from mmseg.registry import MODELS
    cfg = _tiny_config(SEG, tiny_root, tmp_path)
    cfg.model.pretrained = 'open-mmlab://resnet50_v1c'  # what a stock ResNet config carries at segmentor level
    segmentor = MODELS.build(cfg.model)
    with pytest.raises(ValueError) as info:
        segmentor.init_weights()
    message = str(info.value)
    assert 'model.pretrained' in message and 'set it to None' in message and '\n' not in message
    for location in ('torchvision://resnet50', 'mmcls://mobilenet_v2'):
        backbone = ModzooBackbone('zoo_gridpe_pvt_v2_b0', init_cfg=dict(type='Pretrained', checkpoint=location))
        with pytest.raises(ValueError, match=r'model\.backbone\.init_cfg\.checkpoint=.*replaced.*set it to None'):
            backbone.init_weights()


def test_inherited_kwargs_hint_delete(tiny_root):
    from mmengine.config import Config
    from mmdet.registry import MODELS
    text = ("_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']\n"
            "custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)\n"
            "model = dict(backbone=dict(type='ModzooBackbone', model_name='zoo_focalnet_tiny_srf'))\n")
    cfg = Config.fromstring(text, '.py')
    with pytest.raises(TypeError, match='_delete_=True'):
        MODELS.build(cfg.model.backbone)
