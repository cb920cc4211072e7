# Dense digits (modzoo.dense_digits; `python tools/make_dense_digits.py data/dense_digits`) for mmdet's stock
# CocoDataset with a custom metainfo: annotations/instances_{train,val}.json over img_dir/{train,val}/, categories
# 1..10 = digits 0..9, uncompressed RLE masks (a Mask R-CNN config loads them with with_mask=True and adds
# metric=['bbox', 'segm']); evaluated by the stock CocoMetric.
# A config takes these with `train_dataloader = _base_.dense_train_dataloader` etc. (the names differ from the COCO
# base's so that both bases can be listed); each entry replaces the COCO one whole (`_delete_`).
# Canvases (96-160 px, digits 28-48 px) are resized to fit 128x128: digits 22-64 px. No flips: a mirrored 2 is no 2.
dense_data_root = 'data/dense_digits/'
dense_metainfo = dict(
    classes=('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'),
    palette=[(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
             (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)])
dense_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs'),
]
dense_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
dense_train_dataloader = dict(
    _delete_=True, batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True), batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type='CocoDataset', data_root=dense_data_root, metainfo=dense_metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='img_dir/train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=8), pipeline=dense_train_pipeline))
dense_val_dataloader = dict(
    _delete_=True, batch_size=1, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=dense_data_root, metainfo=dense_metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='img_dir/val/'),
                 test_mode=True, pipeline=dense_test_pipeline))
dense_evaluator = dict(_delete_=True, type='CocoMetric', ann_file=dense_data_root + 'annotations/instances_val.json',
                       metric='bbox', format_only=False)
# a short from-scratch schedule: AdamW, 100 warm-up iterations, lr x0.1 for the last sixth; one evaluation at the end
# (6 epochs of the 1500 training canvases at batch 8: 1128 iterations)
dense_max_epochs = 6
dense_train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=dense_max_epochs,
                       val_interval=dense_max_epochs)
dense_optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=10.0, norm_type=2))
dense_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=dense_max_epochs, milestones=[5], gamma=0.1),
]
# (a config with a shorter schedule (fewer epochs) still gets its final checkpoint: the hook's save_last)
dense_default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=dense_max_epochs, max_keep_ckpts=1))
# a fixed seed, so that a run repeats (the figures moved by 2-4 points from run to run without it); deterministic=False
# keeps the fast CPU kernels
randomness = dict(seed=0, deterministic=False)
