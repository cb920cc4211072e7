# UperNet on ADE20K (150 classes), 512x512 crops, 160k iterations with the AdamW recipe, 8 GPUs x 2 images.
_base_ = [
    './models/upernet_modzoo.py', 'mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/default_runtime.py',
    './schedules/upernet_adamw_160k.py',
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
