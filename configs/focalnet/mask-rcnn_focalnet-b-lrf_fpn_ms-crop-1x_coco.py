# Mask R-CNN + FocalNet-B (lrf: focal levels 3, kernels 9/11/13) on COCO, 1x schedule (12 epochs, lr x0.1 at epochs 9
#   and 11).
# Source: Yang et al., "Focal Modulation Networks", NeurIPS 2022; recipe from microsoft/FocalNet
#   detection/configs/focalnet/mask_rcnn_focalnet_base_patch4_mstrain_480-800_adamw_1x_coco_lrf.py: focal window
#   9, drop path 0.3, per-stage output LayerNorms, multi-scale 480-800 + crop augmentation (for 1x as well),
#   AdamW 1e-4 / wd 0.05 / no decay on norms, fp16 (add --amp). The official config sets 1 image per GPU without
#   stating the GPU count; this config keeps mmdet's 8 GPUs x 2 images (total batch 16, the Swin recipe FocalNet
#   follows).
# Reported (README): box / mask AP 49.0 / 43.5, 111.4M params, 507 GFLOPs.
_base_ = [
    '../_base_/models/mask-rcnn_modzoo_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/coco_adamw_1x_step9-11.py', 'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        model_name='zoo_focalnet_base_lrf',
        focal_windows=(9, 9, 9, 9),  # ImageNet weights have window 3: kernels are zero-padded on load
        out_norms=True,
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_focalnet_base_lrf.ms_in1k')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.05))
