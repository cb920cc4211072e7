# UperNet + GridPE-PVTv2-b2 on ADE20K, 512x512, 160k iterations.
# Source: GridPE (arXiv 2406.07049) on PVT v2 (Wang et al., CVM 2022). Neither paper has an UperNet recipe for PVTv2
#   (PVTv2's ADE20K results are Semantic FPN); this config uses the Swin / FocalNet / SMT UperNet recipe (AdamW 6e-5 /
#   wd 0.01 / no decay on norms, 1500 warm-up iterations + poly, 8 GPUs x 2 images) with PVTv2-b2's drop path 0.1.
#   GridPE adds no trainable parameters, so the PVTv2-b2 ImageNet weights load unchanged; the GridPE paper publishes
#   no PVT dense-task results, so the recipes are those of PVTv2. Features are the stage outputs after PVTv2's own
#   (pretrained) stage norms.
# Reported: none for this setting.
_base_ = ['../_base_/upernet_ade20k-512x512_160k.py']
model = dict(
    backbone=dict(
        model_name='zoo_gridpe_pvt_v2_b2',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_gridpe_pvt_v2_b2.in1k')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
