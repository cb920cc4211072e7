# Semantic FPN on ADE20K (150 classes), 512x512 crops, 40k iterations (mmseg's schedule_40k; each config sets the
# optimizer and lr schedule of its paper), 4 images per GPU.
_base_ = [
    './models/fpn_modzoo.py', 'mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
