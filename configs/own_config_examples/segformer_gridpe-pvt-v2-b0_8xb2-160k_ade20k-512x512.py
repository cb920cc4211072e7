# mmseg's own SegFormer-B0 ADE20K config with only the backbone swapped: MiT-B0 -> GridPE-PVTv2-b0.
# Same stage widths (32, 64, 160, 256), so the decode head keeps its in_channels.
# Train / test with mmseg's stock tools (tools/train.py, tools/test.py) or mmengine's Runner.
_base_ = ['mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,  # drop the MixVisionTransformer keys of the base config
        type='ModzooBackbone',
        model_name='zoo_gridpe_pvt_v2_b0',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_gridpe_pvt_v2_b0.in1k')))
