"""Building blocks shared by more than one modzoo family."""
from .arg_check import check_model_args, check_out_indices
from .bn_fold import fold_conv_bn, linear_as_conv1x1
from .drop_path import drop_path_rates
from .input_check import check_image_input, pad_for_patches, pad_to_min_size
from .pooling import MatmulAdaptiveAvgPool2d, adaptive_avg_pool2d_traceable
from .sfm import SFM, AdaptiveResampler, AdaptiveUpsampler, SeparableWarp, demodulate, find_stage_transitions
from .grid_pe import GridPE
from .grid_pe_attention import GridPEAttention

__all__ = [
    'check_model_args', 'check_out_indices',
    'fold_conv_bn', 'linear_as_conv1x1', 'drop_path_rates', 'check_image_input', 'pad_for_patches', 'pad_to_min_size',
    'MatmulAdaptiveAvgPool2d', 'adaptive_avg_pool2d_traceable', 'SFM', 'AdaptiveResampler', 'AdaptiveUpsampler',
    'SeparableWarp', 'demodulate', 'find_stage_transitions', 'GridPE', 'GridPEAttention',
]
