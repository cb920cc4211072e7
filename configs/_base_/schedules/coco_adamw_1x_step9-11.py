# COCO 1x with AdamW as ./coco_adamw_1x.py, but lr x0.1 at epochs 9 and 11 instead of 8 and 11: the step=[9, 11] of
# the FocalNet Mask R-CNN 1x configs (microsoft/FocalNet detection/configs/focalnet/*_1x_coco_*.py).
_base_ = ['./coco_adamw_1x.py']
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
