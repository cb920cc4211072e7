# Mask R-CNN + GridPE-PVTv2-b2 on COCO, 1x schedule.
# Source: GridPE (arXiv 2406.07049) on PVT v2 (Wang et al., CVM 2022); recipe from
#   whai362/PVT detection/configs/mask_rcnn_pvt_v2_b2_fpn_1x_coco.py: mmdet schedule_1x (12 epochs, steps 8/11),
#   single scale 1333x800, AdamW 2e-4 / wd 1e-4, drop path 0.1, 8 GPUs x 2 images; no decay on norms added.
#   GridPE adds no trainable parameters, so the PVTv2-b2 ImageNet weights load unchanged; the GridPE paper publishes
#   no PVT dense-task results, so the recipes are those of PVTv2.
# Reported: PVTv2-b2 (without GridPE) box / mask AP 45.3 / 41.2 (whai362/PVT detection/README.md).
_base_ = [
    '../_base_/models/mask-rcnn_modzoo_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/coco_adamw_1x.py', 'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        model_name='zoo_gridpe_pvt_v2_b2',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_gridpe_pvt_v2_b2.in1k')),
    neck=dict(in_channels=[64, 128, 320, 512]))
optim_wrapper = dict(optimizer=dict(lr=0.0002, weight_decay=0.0001))
