"""Model families. Importing a family module registers its ``zoo_<family>_<variant>`` models with timm."""
from ._checkpoint import CheckpointMismatchError, load_checkpoint, read_checkpoint, unwrap_state_dict
from ._registry import ZOO_PREFIX, UnknownModelError, create_model, list_models, model_family
from . import focalnet
from . import efficientmod
from . import smt
from . import gridpe_pvt_v1
from . import gridpe_pvt_v2

__all__ = [
    'CheckpointMismatchError', 'load_checkpoint', 'read_checkpoint', 'unwrap_state_dict', 'ZOO_PREFIX',
    'UnknownModelError', 'create_model', 'list_models', 'model_family',
    'focalnet', 'efficientmod', 'smt', 'gridpe_pvt_v1', 'gridpe_pvt_v2',
]
