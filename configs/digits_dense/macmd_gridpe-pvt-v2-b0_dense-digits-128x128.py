# MACMD + GridPE-PVTv2-b0 on the dense digits: the Synapse config ../macmd/macmd_gridpe-pvt-v2-b2_1xb16-150e_synapse-
# 224x224.py with only the data (11 classes, 128x128, mIoU), sizes (the smallest variant, b0, and its widths) and
# schedule (iterations instead of epochs) changed. Random initialisation, no drop path in a short run.
_base_ = ['../macmd/macmd_gridpe-pvt-v2-b2_1xb16-150e_synapse-224x224.py', './_base_/dense_digits_seg.py']
model = dict(
    data_preprocessor=dict(size=_base_.dense_small_crop_size),
    backbone=dict(model_name='zoo_gridpe_pvt_v2_b0', drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(in_channels=[32, 64, 160, 256], num_classes=11))
# 96x96 crops: at 128x128 its 2,000 iterations took 921 s at one thread (mIoU 82.2), over the 10 minutes
train_dataloader = _base_.dense_small_train_dataloader
val_dataloader = _base_.dense_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.dense_evaluator
test_evaluator = val_evaluator
train_cfg = _base_.dense_train_cfg
optim_wrapper = _base_.dense_optim_wrapper
param_scheduler = _base_.dense_param_scheduler
default_hooks = _base_.dense_default_hooks
