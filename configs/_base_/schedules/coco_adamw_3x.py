# COCO 3x with AdamW: 36 epochs, lr x0.1 at epochs 27 and 33, 500 linear warm-up iterations, no weight decay on norm
# parameters (the Swin / FocalNet / SMT / PVTv2 Mask R-CNN 3x configs). lr and weight decay are set by each config.
_base_ = ['./coco_adamw_1x.py']
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
