# The ADE20K UperNet recipe of Swin / FocalNet / SMT (their segmentation configs): AdamW lr 6e-5, betas (0.9, 0.999),
# weight decay 0.01 with no decay on norm parameters, 1500 linear warm-up iterations (from 1e-6 x lr) then poly decay
# (power 1) to 0 at 160k iterations; 8 GPUs x 2 images; evaluation and a checkpoint every 16k iterations.
_base_ = ['mmseg::_base_/schedules/schedule_160k.py']
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
