# COCO 1x with AdamW: 12 epochs, lr x0.1 at epochs 8 and 11, 500 linear warm-up iterations (from 1e-3 x lr) as the
# mmdet 2.x schedule_1x the papers used, no weight decay on norm parameters. 8 GPUs x 2 images (auto_scale_lr
# base_batch_size 16). lr and weight decay are set by each config.
_base_ = ['mmdet::_base_/schedules/schedule_1x.py']
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
