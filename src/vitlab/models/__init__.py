"""Models and the registry that names their sizes."""

from vitlab.models import deit as _deit  # noqa: F401  (registers the distilled DeiT sizes)
from vitlab.models import resnet as _resnet  # noqa: F401  (registers the CNN baseline)
from vitlab.models import vit as _vit  # noqa: F401  (registers the ViT sizes)
from vitlab.models.registry import create_model, list_models, register_model
from vitlab.models.transformer import Transformer
from vitlab.models.vit import VisionTransformer, migrate_vit_state_dict

__all__ = [
    "Transformer", "VisionTransformer", "create_model", "list_models", "migrate_vit_state_dict", "register_model",
]
