# UperNet (Xiao et al., ECCV 2018) on a modzoo backbone, as in the FocalNet / SMT / Swin ADE20K configs: mmseg's
# UperNet-Swin head (512 channels, PPM scales 1/2/3/6) and an auxiliary FCN head on stage 3 (loss weight 0.4).
# The heads keep the papers' SyncBN for multi-GPU training; mmengine's Runner turns it into BN when not distributed
# (and modzoo.mm.tiny.use_batchnorm does it for models built outside a Runner).
_base_ = ['mmseg::_base_/models/upernet_swin.py']
custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ModzooBackbone',
        model_name=None,  # set by each config, e.g. 'zoo_focalnet_tiny_srf'
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))
