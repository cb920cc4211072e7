# mmdet's own RetinaNet PVTv2-b0 COCO config with only the backbone swapped: mmdet's PyramidVisionTransformerV2 ->
# GridPE-PVTv2-b0. Same stage widths (32, 64, 160, 256), so the FPN keeps its in_channels.
# Train / test with mmdet's stock tools (tools/train.py, tools/test.py) or mmengine's Runner.
_base_ = ['mmdet::pvt/retinanet_pvtv2-b0_fpn_1x_coco.py']
custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,  # drop the PyramidVisionTransformerV2 keys of the base config
        type='ModzooBackbone',
        model_name='zoo_gridpe_pvt_v2_b0',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_gridpe_pvt_v2_b0.in1k')))
