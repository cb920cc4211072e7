# Dense digits (modzoo.dense_digits; `python tools/make_dense_digits.py data/dense_digits`) for mmseg's stock
# BaseSegDataset with a custom metainfo: img_dir/ann_dir PNGs, 0 = background, 1..10 = digits 0..9.
# A config takes these with `train_dataloader = _base_.dense_train_dataloader` etc. (the names differ from the ADE20K
# base's so that both bases can be listed); each entry replaces the ADE20K one whole (`_delete_`).
# The canvases (96-160 px, digits 28-48 px) are used at their own size, never resized, so every label edge stays an
# image edge: training takes random 128x128 crops (smaller canvases padded black, i.e. background, and labelled so),
# testing the whole canvas. No flips: a mirrored 2 is no 2.
dense_data_root = 'data/dense_digits/'
dense_metainfo = dict(
    classes=('background', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'),
    palette=[[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
             [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]])
dense_crop_size = (128, 128)
dense_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=dense_crop_size),
    dict(type='Pad', size=dense_crop_size, pad_val=dict(img=0, seg=0)),
    dict(type='PackSegInputs'),
]
dense_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dense_train_dataloader = dict(
    _delete_=True, batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='BaseSegDataset', data_root=dense_data_root, metainfo=dense_metainfo,
                 data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False, pipeline=dense_train_pipeline))
# 96x96 crops for the slower backbones (FocalNet, GridPE UperNet, the latter also the main job's run): about 0.6x the
# time of a 128x128 step; a config takes them with `train_dataloader = _base_.dense_small_train_dataloader` and
# `model.data_preprocessor.size = _base_.dense_small_crop_size`
dense_small_crop_size = (96, 96)
dense_small_train_dataloader = dict(dense_train_dataloader, dataset=dict(dense_train_dataloader['dataset'], pipeline=[
    *dense_train_pipeline[:2], dict(dense_train_pipeline[2], crop_size=dense_small_crop_size),
    dict(dense_train_pipeline[3], size=dense_small_crop_size), *dense_train_pipeline[4:]]))
# 64x64 crops for SMT-T: from random initialisation it needs ~2000 steps to leave the all-background start
dense_tiny_crop_size = (64, 64)
dense_tiny_train_dataloader = dict(dense_train_dataloader, dataset=dict(dense_train_dataloader['dataset'], pipeline=[
    *dense_train_pipeline[:2], dict(dense_train_pipeline[2], crop_size=dense_tiny_crop_size),
    dict(dense_train_pipeline[3], size=dense_tiny_crop_size), *dense_train_pipeline[4:]]))
dense_val_dataloader = dict(
    _delete_=True, batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='BaseSegDataset', data_root=dense_data_root, metainfo=dense_metainfo,
                 data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
                 img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False, pipeline=dense_test_pipeline))
# digits are ~15% of the pixels: plain cross-entropy settled on all-background for a while (loss flat from iteration
# 80 to 200), and background at class weight 0.1 buys recall with false positives round every digit (EfficientMod-xxs
# FPN: background accuracy 95.6%, mIoU 54.7 at 1500 iterations). Online hard pixel mining keeps the loss unbiased:
# each image's 2000 least confident pixels (at least those below p = 0.7) carry it.
dense_loss_decode = dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True)
dense_aux_loss_decode = dict(dense_loss_decode, loss_weight=0.4)
dense_sampler = dict(type='OHEMPixelSampler', thresh=0.7, min_kept=2000)
dense_evaluator = dict(_delete_=True, type='IoUMetric', iou_metrics=['mIoU'])
# a short from-scratch schedule: AdamW, 50 warm-up iterations, poly decay; one evaluation at the end. On 1500 training
# canvases (on 600, EfficientMod-xxs FPN reached 67.5 at 2000 iterations at lr 1e-3, train pixel accuracy 98.4%
# against val 94.6%: the canvases were learnt by heart)
dense_max_iters = 2000
dense_train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=dense_max_iters,
                       val_interval=dense_max_iters)
dense_optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.5e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
dense_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=50, end=dense_max_iters),
]
# (a config with a shorter schedule still gets its final checkpoint: the hook's save_last)
dense_default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=dense_max_iters, max_keep_ckpts=1))
# a fixed seed, so that a run repeats (the figures moved by 2-4 points from run to run without it); deterministic=False
# keeps the fast CPU kernels
randomness = dict(seed=0, deterministic=False)
