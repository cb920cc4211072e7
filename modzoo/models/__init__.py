"""Model families. Importing a family module registers its ``zoo_<family>_<variant>`` models with timm."""
from ._checkpoint import (
    CheckpointFileError, CheckpointMismatchError, checkpoint_num_classes, classifier_names, convert_state_dict,
    load_checkpoint, load_torch_file, read_checkpoint, unwrap_state_dict, verify_state_dict,
)
from ._registry import (
    ZOO_PREFIX, UnknownModelError, create_model, family_module, list_models, model_family, suggest_model_names,
)
from . import focalnet
from . import efficientmod
from . import smt
from . import gridpe_pvt_v1
from . import gridpe_pvt_v2

__all__ = [
    'CheckpointFileError', 'CheckpointMismatchError', 'checkpoint_num_classes', 'classifier_names',
    'convert_state_dict', 'load_checkpoint', 'load_torch_file', 'read_checkpoint', 'unwrap_state_dict',
    'verify_state_dict', 'ZOO_PREFIX', 'UnknownModelError', 'create_model', 'family_module', 'list_models',
    'model_family', 'suggest_model_names',
    'focalnet', 'efficientmod', 'smt', 'gridpe_pvt_v1', 'gridpe_pvt_v2',
]
