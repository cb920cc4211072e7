# MACMD + GridPE-PVTv2-b2 on Synapse, 224x224, 150 epochs, 1 GPU x 16: the paper's setting with GridPE in the
# encoder's attention (the GridPE-PVT family, arXiv 2406.07049, on PVT v2).
# Source: the MACMD recipe of ./macmd_pvt-v2-b2_1xb16-150e_synapse-224x224.py (lalitmaurya47/MACMD @86df544), with
#   the encoder swapped: GridPE adds no trainable parameters, so the PVT v2 b2 ImageNet weights load into it
#   (the family's filter fills the fixed GridPE rotations), drop path 0.1 as PVT v2 b2.
# Reported: none for this setting.
_base_ = ['../_base_/macmd_synapse-224x224_150e.py']
model = dict(
    backbone=dict(
        model_name='zoo_gridpe_pvt_v2_b2',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_gridpe_pvt_v2_b2.in1k')),
    decode_head=dict(in_channels=[64, 128, 320, 512]))
