"""vitlab: Vision Transformers and the techniques that train image classifiers, from the papers."""

from vitlab.errors import CheckpointError, ConfigError, DataError, VitlabError
from vitlab.models import VisionTransformer, create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "VisionTransformer",
    "VitlabError",
    "__version__",
    "create_model",
    "list_models",
    "register_model",
]
