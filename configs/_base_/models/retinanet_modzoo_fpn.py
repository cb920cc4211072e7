# RetinaNet (Lin et al., ICCV 2017) with FPN on a modzoo backbone: mmdet's RetinaNet R50-FPN neck/head (P3-P7,
# extra convs on the input) unchanged.
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py']
custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ModzooBackbone',
        model_name=None,  # set by each config
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=None))  # the backbone's stage widths, set by each config
