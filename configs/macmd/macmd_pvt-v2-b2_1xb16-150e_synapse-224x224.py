# MACMD + PVT v2 b2 on Synapse, 224x224, 150 epochs, 1 GPU x 16: the paper's main setting.
# Source: Maurya et al., "Multi-dilated Contextual Attention and Channel Mixer Decoding" (arXiv 2511.05803);
#   recipe from lalitmaurya47/MACMD @86df544 (configs/config_setting.py, network.py, utils.py, engine.py): see the
#   _base_ files. Encoder: PVT v2 b2 with ImageNet-1k weights and drop path 0.1 (the lib/pvtv2.py pvt_v2_b2 the
#   repo builds). Here it is modzoo's GridPE-PVT family with gridpe=False, which computes exactly timm's pvt_v2_b2
#   (tests/test_gridpe_pvt.py) and loads timm's pvt_v2_b2 weights strictly; stage outputs after PVT v2's own norms,
#   as the released encoder returns them. Deviation: the slices come as mmseg's 3-channel grey JPEGs straight into
#   the encoder; the released network puts a learned 1x1 conv-BN-ReLU (1 -> 3 channels) in front.
# Reported (log/test.info.txt): mean Dice 83.27 %, mean HD95 14.92 (8 organs, 12 test volumes).
_base_ = ['../_base_/macmd_synapse-224x224_150e.py']
model = dict(
    backbone=dict(
        model_name='zoo_gridpe_pvt_v2_b2',
        gridpe=False,  # plain PVT v2 b2
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='timm:pvt_v2_b2.in1k')),
    decode_head=dict(in_channels=[64, 128, 320, 512]))
