# UperNet + SMT-T on the dense digits: the ADE20K config ../smt/upernet_smt-s_8xb2-160k_ade20k-512x512.py with only
# the data (11 classes, 128x128), sizes (the smallest variant, SMT-T: SMT-S's widths, fewer blocks; a 64-channel
# UperNet head) and schedule changed. Random initialisation, no drop path in a short run.
_base_ = ['../smt/upernet_smt-s_8xb2-160k_ade20k-512x512.py', './_base_/dense_digits_seg.py']
model = dict(
    data_preprocessor=dict(size=_base_.dense_tiny_crop_size),
    backbone=dict(model_name='zoo_smt_tiny', drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(channels=64, num_classes=11,
                     loss_decode=_base_.dense_loss_decode, sampler=_base_.dense_sampler),
    auxiliary_head=dict(channels=32, num_classes=11,
                        loss_decode=_base_.dense_aux_loss_decode, sampler=_base_.dense_sampler))
train_dataloader = _base_.dense_tiny_train_dataloader
val_dataloader = _base_.dense_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.dense_evaluator
test_evaluator = val_evaluator
# to fit 10 minutes at one CPU thread: 64x64 crops, 2000 iterations at lr 2e-3 (SMT-T: mIoU 73.1 in 534 s, 1 thread,
# beside EfficientMod FPN; at 96x96 the 1000 iterations that fit gave 18.0, still on the all-background start)
max_iters = 2000
train_cfg = dict(_base_.dense_train_cfg, max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(_base_.dense_optim_wrapper, optimizer=dict(_base_.dense_optim_wrapper.optimizer, lr=2e-3))
param_scheduler = [_base_.dense_param_scheduler[0], dict(_base_.dense_param_scheduler[1], end=max_iters)]
default_hooks = _base_.dense_default_hooks
