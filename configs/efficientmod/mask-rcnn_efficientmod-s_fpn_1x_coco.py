# Mask R-CNN + EfficientMod-s on COCO, 1x schedule.
# Source: Ma et al., "Efficient Modulation for Vision Networks", ICLR 2024; recipe from ma-xu/EfficientMod
#   detection/configs/efficientMod_s.py: mmdet schedule_1x (12 epochs, steps 8/11), single scale 1333x800, AdamW 2e-4
#   / wd 0.05, 2 images per GPU; no weight decay on norms added. Features are the raw stage outputs (no output norms),
#   as the official backbone returns them.
# Reported: box / mask AP 43.6 / 40.3 (detection/README.md).
_base_ = [
    '../_base_/models/mask-rcnn_modzoo_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/coco_adamw_1x.py', 'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        model_name='zoo_efficientmod_s',
        # the official weights are in a Google Drive folder (see modzoo/data/manifest/efficientmod.json); after a manual
        # download, `python tools/get_checkpoint.py zoo_efficientmod_s --file <file>` writes this verified copy
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/zoo_efficientmod_s.dist_in1k.safetensors')),
    neck=dict(in_channels=[32, 64, 144, 312]))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.05))
