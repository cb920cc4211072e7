# mmdet's own Mask R-CNN R50-FPN 1x COCO config with only the backbone swapped: ResNet-50 -> FocalNet-T (SRF).
# FocalNet-T's stages are 96/192/384/768 wide (ResNet-50: 256/512/1024/2048), so the FPN's in_channels follow; the
# backbone logs its out_channels and strides when it is built.
# Train / test with mmdet's stock tools (tools/train.py, tools/test.py) or mmengine's Runner.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,  # drop the ResNet keys (depth, frozen_stages, torchvision:// init_cfg, ...) of the base config
        type='ModzooBackbone',
        model_name='zoo_focalnet_tiny_srf',
        out_norms=True,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_focalnet_tiny_srf.ms_in1k')),
    neck=dict(in_channels=[96, 192, 384, 768]))
