# MACMD decoder (Maurya et al., arXiv 2511.05803; lalitmaurya47/MACMD) on a modzoo backbone, as an mmseg
# EncoderDecoder with the MACMDHead decode head: main output + two auxiliary outputs with equal loss weights (deep
# supervision, engine.py: loss1 + loss2 + loss3), each trained with the released Synapse loss CeDiceLoss =
# 0.4 cross-entropy + 0.6 class-wise soft Dice (utils.py, configs/config_setting.py loss_weight=[0.4, 0.6]).
# The decoder's BatchNorms are plain BN as released (single GPU, batch 16).
custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],  # the ImageNet statistics of the pretrained encoder
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='ModzooBackbone',
        model_name=None,  # set by each config
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(
        type='MACMDHead',
        in_channels=[64, 128, 320, 512],
        in_index=[0, 1, 2, 3],
        num_classes=9,
        drop_path_rate=0.05,  # CCMix's DropPath(0.05) in the released decoder
        aux_loss_weights=(1.0, 1.0),
        align_corners=False,
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4, avg_non_ignore=True),
            dict(type='ClasswiseDiceLoss', loss_weight=0.6, smooth=1e-5),
        ]),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
