# Mask R-CNN (He et al., ICCV 2017) with FPN on a modzoo backbone: mmdet's Mask R-CNN R50-FPN heads unchanged.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ModzooBackbone',
        model_name=None,  # set by each config
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=None))  # the backbone's stage widths, set by each config
