# Mask R-CNN + GridPE-PVTv2-b2 on COCO, 3x schedule.
# Source: GridPE (arXiv 2406.07049) on PVT v2 (Wang et al., CVM 2022); recipe from
#   whai362/PVT detection/configs/mask_rcnn_pvt_v2_b2_fpn_3x_mstrain.py: multi-scale 480-800 + crop, AdamW 1e-4 / wd
#   0.05 / no decay on norms, 36 epochs, steps 27/33, drop path 0.1.
#   GridPE adds no trainable parameters, so the PVTv2-b2 ImageNet weights load unchanged; the GridPE paper publishes
#   no PVT dense-task results, so the recipes are those of PVTv2.
# Reported: none for GridPE-PVT.
_base_ = [
    '../_base_/models/mask-rcnn_modzoo_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/coco_adamw_3x.py', 'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        model_name='zoo_gridpe_pvt_v2_b2',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_gridpe_pvt_v2_b2.in1k')),
    neck=dict(in_channels=[64, 128, 320, 512]))
optim_wrapper = dict(optimizer=dict(lr=0.0001, weight_decay=0.05))
