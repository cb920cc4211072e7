# UperNet + FocalNet-T (srf) + SFM on ADE20K, 512x512, 160k iterations: the comparison partner of
# ../focalnet/upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py (its base), changed only by SFM.
# Source: Chen et al., "Spatial Frequency Modulation for Semantic Segmentation", TPAMI 2025 (arXiv 2507.11893):
#   adaptive resampling (ARS) before the three stride-2 stage transitions (1/4->1/8, 1/8->1/16, 1/16->1/32) and
#   demodulation by multi-scale adaptive up-sampling (MSAU) in the decoder. The official code is not public; ARS/MSAU
#   are modzoo's design from the paper's principle (modzoo/layers/sfm.py, the SFM spec's team decisions). The paper
#   has no UperNet-FocalNet result and no recipe of its own for it, so the recipe is the base config's (FocalNet's
#   UperNet recipe; SFM adds no optimizer settings): ARS/MSAU train with the same AdamW 6e-5 / wd 0.01.
# Reported: none for this setting (the paper reports +1.5 mIoU for Mask2Former-Swin-T on ADE20K).
_base_ = ['../focalnet/upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(sfm=dict(min_density=0.125)),  # ARS: local stretch at most 8x; identity warp at initialisation
    decode_head=dict(type='SFMUPerHead', msau_kernel_size=3))  # MSAU in the FPN top-down path and fusion
