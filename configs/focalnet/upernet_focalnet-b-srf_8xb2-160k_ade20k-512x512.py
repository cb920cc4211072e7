# UperNet + FocalNet-B (srf: focal levels 2, kernels 9/11) on ADE20K, 512x512, 160k iterations.
# Source: Yang et al., "Focal Modulation Networks", NeurIPS 2022; recipe from microsoft/FocalNet
#   segmentation/configs/focalnet/upernet_focalnet_base_patch4_512x512_160k_ade20k_srf.py: focal window 9 in every
#   stage, drop path 0.3, per-stage output LayerNorms, AdamW 6e-5 / wd 0.01 / no decay on norms, 1500 warm-up
#   iterations + poly, 8 GPUs x 2 images (the official configs trained with fp16; add --amp).
# Reported (README): mIoU 50.2 / 51.1 (single / multi-scale), 124M params, 1180 GFLOPs at 512x2048.
_base_ = ['../_base_/upernet_ade20k-512x512_160k.py']
model = dict(
    backbone=dict(
        model_name='zoo_focalnet_base_srf',
        focal_windows=(9, 9, 9, 9),  # ImageNet weights have window 3: kernels are zero-padded on load
        out_norms=True,
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_focalnet_base_srf.ms_in1k')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
