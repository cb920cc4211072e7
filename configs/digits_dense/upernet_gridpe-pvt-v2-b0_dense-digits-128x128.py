# UperNet + GridPE-PVTv2-b0 on the dense digits: the ADE20K config ../gridpe_pvt/upernet_gridpe-pvt-v2-b2_8xb2-160k_
# ade20k-512x512.py with only the data (11 classes, 128x128), sizes (the smallest variant, b0, and its widths; a
# 64-channel UperNet head) and schedule changed. Random initialisation, no drop path in a short run.
_base_ = ['../gridpe_pvt/upernet_gridpe-pvt-v2-b2_8xb2-160k_ade20k-512x512.py', './_base_/dense_digits_seg.py']
model = dict(
    data_preprocessor=dict(size=_base_.dense_small_crop_size),
    backbone=dict(model_name='zoo_gridpe_pvt_v2_b0', drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(in_channels=[32, 64, 160, 256], channels=64, num_classes=11,
                     loss_decode=_base_.dense_loss_decode, sampler=_base_.dense_sampler),
    auxiliary_head=dict(in_channels=160, channels=32, num_classes=11,
                        loss_decode=_base_.dense_aux_loss_decode, sampler=_base_.dense_sampler))
train_dataloader = _base_.dense_small_train_dataloader
val_dataloader = _base_.dense_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.dense_evaluator
test_evaluator = val_evaluator
# the main job's run too (modzoo.main_job's dense stage, beside the detector): 96x96 crops, 1500 iterations at lr 2e-3
max_iters = 1500
train_cfg = dict(_base_.dense_train_cfg, max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(_base_.dense_optim_wrapper, optimizer=dict(_base_.dense_optim_wrapper.optimizer, lr=2e-3))
param_scheduler = [_base_.dense_param_scheduler[0], dict(_base_.dense_param_scheduler[1], end=max_iters)]
default_hooks = _base_.dense_default_hooks
