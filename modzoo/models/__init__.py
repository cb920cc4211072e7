"""Model families. Importing a family module registers its ``zoo_<family>_<variant>`` models with timm."""
from ._checkpoint import (
    CLASSIFIER_POLICIES, Checkpoint, CheckpointFileError, CheckpointMismatchError, CheckpointValueError, LoadReport,
    RECORD_KEY, check_model_record, checkpoint_num_classes, classifier_names, convert_state_dict, fit_checkpoint,
    load_checkpoint, load_torch_file, match_state_dict, model_record, open_checkpoint, read_checkpoint,
    recorded_kwargs,
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
    'CLASSIFIER_POLICIES', 'Checkpoint', 'CheckpointFileError', 'CheckpointMismatchError', 'CheckpointValueError',
    'LoadReport', 'RECORD_KEY',
    'check_model_record', 'checkpoint_num_classes', 'classifier_names', 'convert_state_dict', 'fit_checkpoint',
    'load_checkpoint', 'load_torch_file', 'match_state_dict', 'model_record', 'open_checkpoint', 'read_checkpoint',
    'recorded_kwargs',
    'ZOO_PREFIX', 'UnknownModelError', 'create_model', 'family_module', 'list_models',
    'model_family', 'suggest_model_names',
    'focalnet', 'efficientmod', 'smt', 'gridpe_pvt_v1', 'gridpe_pvt_v2',
]
