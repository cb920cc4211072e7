# COCO instances with the DETR / Sparse R-CNN multi-scale + crop augmentation that the Swin, FocalNet, SMT and PVTv2
# Mask R-CNN "3x" configs use (FocalNet uses it for 1x too): random flip, then either a resize with the short side in
# 480..800 (step 32, long side <= 1333), or a resize to 400/500/600, an absolute-range crop of 384..600 and the
# 480..800 resize. Test: single scale 1333x800. (mmdet 3.x form of the official mmdet 2.x AutoAugment pipeline.)
_base_ = ['mmdet::_base_/datasets/coco_instance.py']
_scales = [(1333, 480), (1333, 512), (1333, 544), (1333, 576), (1333, 608), (1333, 640), (1333, 672), (1333, 704),
           (1333, 736), (1333, 768), (1333, 800)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
