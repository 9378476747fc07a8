"""vitlab: Vision Transformers and the techniques that train image classifiers, from the papers."""

from vitlab.errors import CheckpointError, ConfigError, DataError, VitlabError
from vitlab.models import VisionTransformer, create_model, list_models, register_model
from vitlab.models.convert import ConvertError, LoadReport
from vitlab.models.pretrained import export_pretrained, load_pretrained

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvertError",
    "DataError",
    "LoadReport",
    "VisionTransformer",
    "VitlabError",
    "__version__",
    "create_model",
    "export_pretrained",
    "list_models",
    "load_pretrained",
    "register_model",
]
