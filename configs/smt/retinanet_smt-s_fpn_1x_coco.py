# RetinaNet + SMT-S on COCO, 1x schedule (12 epochs, steps 8/11), single scale 1333x800.
# Source: Lin et al., "Scale-Aware Modulation Meet Transformer", ICCV 2023; AFeng-x/SMT ships only a 3x RetinaNet
#   recipe (detection/configs/retinanet_ressa_fpn_mstrain_480-800_3x_coco.py on retinanet_smt_s_fpn.py: drop path 0.2,
#   AdamW 1e-4 / wd 0.05, 2 images per GPU); this config uses that model and optimizer with mmdet's 1x schedule and
#   single-scale training, the setting of the paper's 1x RetinaNet row, plus no weight decay on norms.
# Reported: 3x box AP 47.3, 30M params, 247 GFLOPs (README); the 1x number is in the paper only.
_base_ = [
    '../_base_/models/retinanet_modzoo_fpn.py', 'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/coco_adamw_1x.py', 'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        model_name='zoo_smt_small',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_smt_small.in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.05))
