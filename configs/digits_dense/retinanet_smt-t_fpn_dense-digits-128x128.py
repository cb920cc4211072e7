# RetinaNet + SMT-T on the dense digits: the COCO config ../smt/retinanet_smt-s_fpn_1x_coco.py with only the data
# (10 classes, 128x128), sizes (the smallest variant, SMT-T; anchors from 16 px, octave base scale 2, since the
# digits are 22-64 px; a 64-channel neck and head: the COCO 256 channels cost most of the CPU time at this size) and
# schedule changed. Random initialisation, no drop path in a short run.
_base_ = ['../smt/retinanet_smt-s_fpn_1x_coco.py', './_base_/dense_digits_det.py']
model = dict(
    backbone=dict(model_name='zoo_smt_tiny', drop_path_rate=0.0, init_cfg=None),
    neck=dict(out_channels=64),
    bbox_head=dict(num_classes=10, in_channels=64, feat_channels=64, anchor_generator=dict(octave_base_scale=2)))
train_dataloader = _base_.dense_train_dataloader
val_dataloader = _base_.dense_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.dense_evaluator
test_evaluator = val_evaluator
# to fit 10 minutes at one CPU thread (a step costs ~3x GridPE-PVTv2-b0 RetinaNet's): 4 epochs (752 iterations), lr
# x0.1 for the last; the checkpoint hook's save_last keeps it. 3 epochs (430 s) reached only AP 0.454 / AP50 0.515
max_epochs = 4
train_cfg = dict(_base_.dense_train_cfg, max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = _base_.dense_optim_wrapper
param_scheduler = [_base_.dense_param_scheduler[0],
                   dict(_base_.dense_param_scheduler[1], end=max_epochs, milestones=[max_epochs - 1])]
default_hooks = _base_.dense_default_hooks
auto_scale_lr = dict(enable=False, base_batch_size=8)
