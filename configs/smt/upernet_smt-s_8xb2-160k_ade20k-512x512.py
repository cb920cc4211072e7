# UperNet + SMT-S on ADE20K, 512x512, 160k iterations.
# Source: Lin et al., "Scale-Aware Modulation Meet Transformer", ICCV 2023; recipe from AFeng-x/SMT
#   segmentation/configs/upernet_smt_s.py + upernet_smt_512x512_160k_ade20k.py: drop path 0.2, AdamW 6e-5 / wd 0.01,
#   1500 warm-up iterations + poly, 8 GPUs x 2 images. The official optimizer comment promises no weight decay on
#   norms but its dict lacks the paramwise_cfg; this config applies it (the Swin recipe SMT follows). Features are the
#   stage outputs after SMT's own (pretrained) stage norms, as the official backbone returns them.
# Reported (README): mIoU 49.2 / 50.2 (single / multi-scale), 50M params, 935 GFLOPs.
_base_ = ['../_base_/upernet_ade20k-512x512_160k.py']
model = dict(
    backbone=dict(
        model_name='zoo_smt_small',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='timm:zoo_smt_small.in1k')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
