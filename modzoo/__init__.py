"""modzoo: a timm-native model zoo of modulation vision backbones.

Importing the package registers every modzoo model with timm under the ``zoo_`` prefix, so
``timm.create_model('zoo_focalnet_tiny_srf', ...)`` works after ``import modzoo``. The OpenMMLab
adapters live in ``modzoo.mm`` and are never imported from here.
"""
from .version import __version__
from . import layers, models
from .models import (
    CheckpointMismatchError,
    create_model,
    list_models,
    load_checkpoint,
    model_family,
)

__all__ = [
    '__version__', 'layers', 'models', 'CheckpointMismatchError', 'create_model', 'list_models', 'load_checkpoint',
    'model_family',
]
