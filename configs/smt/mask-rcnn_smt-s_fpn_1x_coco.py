# Mask R-CNN + SMT-S on COCO, 1x schedule.
# Source: Lin et al., "Scale-Aware Modulation Meet Transformer", ICCV 2023; recipe from AFeng-x/SMT
#   detection/configs/mask_rcnn_smt_s_fpn.py (model, drop path 0.2) + mask_rcnn_ResSA_fpn_1x_coco.py (AdamW 2e-4 / wd
#   0.05 / no decay on norms, 2 images per GPU, mmdet schedule_1x, single scale 1333x800).
# Reported: box / mask AP reported in the paper only (README lists 3x).
_base_ = [
    '../_base_/models/mask-rcnn_modzoo_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/coco_adamw_1x.py', 'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        model_name='zoo_smt_small',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_smt_small.in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.05))
