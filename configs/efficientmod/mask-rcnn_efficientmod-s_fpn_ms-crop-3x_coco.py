# Mask R-CNN + EfficientMod-s on COCO, 3x schedule.
# Source: Ma et al., "Efficient Modulation for Vision Networks", ICLR 2024; recipe from ma-xu/EfficientMod
#   no official 3x recipe: the 1x optimizer (AdamW 2e-4 / wd 0.05, from detection/configs/efficientMod_s.py) with the
#   common 3x multi-scale + crop schedule of Swin / FocalNet / SMT / PVTv2 (36 epochs, steps 27/33). Features are the
#   raw stage outputs (no output norms), as the official backbone returns them.
# Reported: none (no 3x result published).
_base_ = [
    '../_base_/models/mask-rcnn_modzoo_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/coco_adamw_3x.py', 'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        model_name='zoo_efficientmod_s',
        # the official weights are in a Google Drive folder (see modzoo/data/manifest/efficientmod.json); after a manual
        # download, `python tools/get_checkpoint.py zoo_efficientmod_s --file <file>` writes this verified copy
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/zoo_efficientmod_s.dist_in1k.safetensors')),
    neck=dict(in_channels=[32, 64, 144, 312]))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.05))
