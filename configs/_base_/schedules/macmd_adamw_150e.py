# The released MACMD Synapse recipe (lalitmaurya47/MACMD configs/config_setting.py, utils.py, engine.py): AdamW lr 1e-3,
# betas (0.9, 0.999), eps 1e-8, weight decay 1e-3 on every parameter (no norm rule), 150 epochs, CosineAnnealingLR
# T_max 50 / eta_min 1e-6 stepped once per epoch (so the cosine runs down, up and down again over the 150 epochs, as
# torch's scheduler does with T_max < epochs; mmengine's CosineAnnealingLR follows the same recursion), batch 16 on
# one GPU. Evaluation every 10 epochs and a checkpoint every 50 (the released save_interval).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-3))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=50, eta_min=1e-6, by_epoch=True, begin=0, end=150),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=150, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=50),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
