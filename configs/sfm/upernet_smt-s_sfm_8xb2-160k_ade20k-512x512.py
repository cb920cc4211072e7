# UperNet + SMT-S + SFM on ADE20K, 512x512, 160k iterations: ../smt/upernet_smt-s_8xb2-160k_ade20k-512x512.py (its
# base, the comparison partner) changed only by SFM.
# Source: Chen et al., "Spatial Frequency Modulation for Semantic Segmentation", TPAMI 2025 (arXiv 2507.11893):
#   ARS before SMT's three stride-2 downsamples (they take NCHW input) and MSAU demodulation in the decoder; modzoo's
#   design from the paper's principle (the official code is not public). Recipe: the base config's (SMT's UperNet
#   recipe, drop path 0.2, AdamW 6e-5 / wd 0.01); the SFM paper gives none for this pairing.
# Reported: none for this setting.
_base_ = ['../smt/upernet_smt-s_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(sfm=dict(min_density=0.125)),
    decode_head=dict(type='SFMUPerHead', msau_kernel_size=3))
