"""tools/analysis/get_flops.py (modzoo.mm.flops): whole-config FLOPs as the papers count them."""
import os

import pytest
import timm
import torch

pytest.importorskip('mmseg')
pytest.importorskip('mmdet')
pytestmark = pytest.mark.mm

from modzoo.mm.flops import count_config_flops  # noqa: E402
from modzoo.mm.smoke import cached_package_config_index, load_config  # noqa: E402
from mm_testing import ROOT, one_thread_fast_parsing  # noqa: E402,F401  (autouse fixture)


def _config(relpath: str):
    with cached_package_config_index():
        return load_config(os.path.join(ROOT, 'configs', relpath))


def test_segmentor_count_is_backbone_plus_decode_head_with_attention():
    """The count covers backbone + decode head (inference, no auxiliary head) and includes SDPA attention."""
    if 'zoo_gridpe_pvt_v2_b2' not in timm.list_models('zoo_*'):
        pytest.skip('GridPE-PVT not registered')
    from fvcore.nn import FlopCountAnalysis
    from modzoo.utils.flops import FLOP_HANDLES
    cfg = _config('gridpe_pvt/upernet_gridpe-pvt-v2-b2_8xb2-160k_ade20k-512x512.py')
    report = count_config_flops(cfg, (64, 128))
    assert not any('scaled_dot_product_attention' in op for op in report.skipped_ops)
    assert report.params_m > report.params_inference_m > report.backbone_params_m  # the aux head is excluded

    # independent count of the same graph in two parts
    from modzoo.mm.smoke import build_model
    model = build_model(cfg).eval()
    x = torch.zeros(1, 3, 64, 128)
    with torch.no_grad():
        backbone = FlopCountAnalysis(model.backbone, x).set_op_handle(**FLOP_HANDLES)
        features = model.backbone(x)
        head = FlopCountAnalysis(model.decode_head, (features,)).set_op_handle(**FLOP_HANDLES)
        for a in (backbone, head):
            a.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        expected = backbone.total() + head.total()
    assert report.gflops * 1e9 == pytest.approx(expected, rel=1e-9)
    assert report.backbone_gflops * 1e9 == pytest.approx(backbone.total(), rel=1e-9)
    # attention is a real share of a PVT stage-1 count: the handle adds something
    attention = backbone.by_operator().get('scaled_dot_product_attention', 0)
    assert attention > 0


def test_detector_count_runs_rpn_and_roi_heads():
    cfg = _config('focalnet/mask-rcnn_focalnet-t-srf_fpn_ms-crop-1x_coco.py')
    cfg.model.test_cfg.rpn.max_per_img = 50  # fewer test-time proposals keep this cheap; the graph is the same
    report = count_config_flops(cfg, (96, 128))
    assert report.gflops > report.backbone_gflops > 0
    # the RoI box head's two FCs on every proposal: at least 50 x (256*7*7*1024 + 1024*1024) MACs
    assert (report.gflops - report.backbone_gflops) * 1e9 > 50 * (256 * 49 * 1024 + 1024 * 1024)


@pytest.mark.slow
def test_upernet_focalnet_tiny_matches_the_paper():
    """UperNet + FocalNet-T (srf) at 512x2048: the FocalNet README reports 944 GFLOPs and 61M parameters."""
    report = count_config_flops(_config('focalnet/upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py'), (512, 2048))
    assert report.gflops == pytest.approx(944, rel=0.005)
    assert report.params_m == pytest.approx(61, abs=0.5)
