"""Building blocks: attention, positional encodings, activations and transformer blocks."""

from vitlab.nn.activations import (
    Mish,
    MishFunction,
    Swish,
    SwishFunction,
    get_activation,
    list_activations,
)
from vitlab.nn.attention import Attention
from vitlab.nn.blocks import Block, DropPath, LayerScale, Mlp, PatchEmbed
from vitlab.nn.posenc import (
    LearnedPositionEmbedding,
    SinusoidalPositionalEncoding,
    resample_pos_embed,
    sincos_2d,
    sinusoidal_1d,
)

__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "LayerScale",
    "LearnedPositionEmbedding",
    "Mish",
    "MishFunction",
    "Mlp",
    "PatchEmbed",
    "Swish",
    "SwishFunction",
    "get_activation",
    "list_activations",
    "resample_pos_embed",
    "sincos_2d",
    "SinusoidalPositionalEncoding",
    "sinusoidal_1d",
]
