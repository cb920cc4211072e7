# Semantic FPN (Kirillov et al., CVPR 2019) on a modzoo backbone: mmseg's FPN neck (4 levels, 256 channels) and
# FPN head (128 channels), as in the PVT / PoolFormer / EfficientMod ADE20K configs. SyncBN in the head as in the
# papers' multi-GPU runs (reverted to BN by the Runner when not distributed).
_base_ = ['mmseg::_base_/models/fpn_r50.py']
custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ModzooBackbone',
        model_name=None,  # set by each config
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=None),  # the backbone's stage widths, set by each config
    decode_head=dict(num_classes=150))
