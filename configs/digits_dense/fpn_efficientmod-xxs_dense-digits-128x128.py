# Semantic FPN + EfficientMod-xxs on the dense digits: the ADE20K config ../efficientmod/fpn_efficientmod-s_8xb4-40k_
# ade20k-512x512.py with only the data (11 classes, 128x128), sizes (the smallest variant, xxs, and its widths; a
# 64-channel neck and head: the ADE20K 256/128 channels cost most of the CPU time at this size) and schedule
# changed. Random initialisation (no download here; put an ImageNet init_cfg back when the weights are at hand).
_base_ = ['../efficientmod/fpn_efficientmod-s_8xb4-40k_ade20k-512x512.py', './_base_/dense_digits_seg.py']
model = dict(
    data_preprocessor=dict(size=_base_.dense_crop_size),
    backbone=dict(model_name='zoo_efficientmod_xxs', init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    decode_head=dict(in_channels=[64, 64, 64, 64], channels=64, num_classes=11,
                     loss_decode=_base_.dense_loss_decode, sampler=_base_.dense_sampler))
train_dataloader = _base_.dense_train_dataloader
val_dataloader = _base_.dense_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.dense_evaluator
test_evaluator = val_evaluator
train_cfg = _base_.dense_train_cfg
optim_wrapper = _base_.dense_optim_wrapper
param_scheduler = _base_.dense_param_scheduler
default_hooks = _base_.dense_default_hooks
