# MACMD on Synapse (multi-organ CT, 9 classes: background + 8 organs), 224x224 slices, 150 epochs, 1 GPU x 16.
# Data: mmseg's SynapseDataset in the layout of mmseg's tools/dataset_converters/synapse.py (18 training / 12 test
# cases, the TransUNet split the paper uses), its pipeline (resize to 224, random rot90/flip + rotation up to 20
# degrees: TransUNet's RandomGenerator, which the released loader uses) and its IoUMetric with Dice. mmseg's mDice is
# pixel-aggregated over the validation slices and includes the background class; the paper's 83.27 is the mean of
# the 8 organs' per-volume Dice (MedPy), so compare the per-class table's organ rows, not mDice.
_base_ = [
    './models/macmd_modzoo.py', 'mmseg::_base_/datasets/synapse.py', 'mmseg::_base_/default_runtime.py',
    './schedules/macmd_adamw_150e.py',
]
crop_size = (224, 224)
model = dict(data_preprocessor=dict(size=crop_size))
# the epoch loop needs a sampler that ends (the dataset base uses an InfiniteSampler for iteration loops)
train_dataloader = dict(batch_size=16, sampler=dict(type='DefaultSampler', shuffle=True))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU', 'mDice'])
test_evaluator = val_evaluator
