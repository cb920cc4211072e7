# Mask R-CNN + SMT-S on COCO, 3x schedule.
# Source: Lin et al., "Scale-Aware Modulation Meet Transformer", ICCV 2023; recipe from AFeng-x/SMT
#   detection/configs/mask_rcnn_smt_b_fpn_mstrain-poly_3x_coco.py (multi-scale 480-800 + crop, AdamW 2e-4 / wd 0.05 /
#   no decay on norms, 36 epochs, steps 27/33); drop path 0.2 (SMT-S has no official 3x file: its
#   mask_rcnn_smt_s_fpn.py value). Not copied: the official 3x file passes groups_mode=1, which SMT does not accept.
# Reported: box / mask AP 49.0 / 43.4, 40M params, 265 GFLOPs (README).
_base_ = [
    '../_base_/models/mask-rcnn_modzoo_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/coco_adamw_3x.py', 'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        model_name='zoo_smt_small',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_smt_small.in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.05))
