# Semantic FPN + EfficientMod-s on ADE20K, 512x512, 40k iterations (the paper's segmentation setting).
# Source: Ma et al., "Efficient Modulation for Vision Networks", ICLR 2024; recipe from ma-xu/EfficientMod
#   segmentation/configs/sem_fpn/efficientMod_s.py: AdamW lr 2e-4 (1e-4 x 2 for 8 GPUs) / wd 1e-4, 1000 linear
#   warm-up iterations from 0.1 x lr, cosine decay to 1e-6 x lr over 40k iterations (80k / 2 for 8 GPUs),
#   8 GPUs x 4 images; no weight decay on norms added (negligible at wd 1e-4).
#   Not copied: the official file gives the FPN neck in_channels [40, 80, 160, 344] (those of s_Conv; the s_Conv file
#   has these), which does not fit EfficientMod-s; the neck here takes its real widths [32, 64, 144, 312].
# Reported (segmentation/README.md): mIoU 46.0.
_base_ = ['../_base_/fpn_ade20k-512x512_40k.py']
model = dict(
    backbone=dict(
        model_name='zoo_efficientmod_s',
        # the official weights are in a Google Drive folder (see modzoo/data/manifest/efficientmod.json); after a manual
        # download, `python tools/get_checkpoint.py zoo_efficientmod_s --file <file>` writes this verified copy
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/zoo_efficientmod_s.dist_in1k.safetensors')),
    neck=dict(in_channels=[32, 64, 144, 312]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', T_max=40000, eta_min_ratio=1e-6, by_epoch=False, begin=0, end=40000),
]
