"""Tests of vitlab.models.registry: names, patterns, overrides and errors."""

import pytest
import torch

import vitlab
from vitlab.errors import ConfigError
from vitlab.models.registry import register_model

PAPER_AND_SMALL_SIZES = [
    "vit_tiny_patch4_32",
    "vit_small_patch4_32",
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_digits_patch2_8",
]


def test_list_models_lists_the_named_sizes():
    names = vitlab.list_models()
    for name in PAPER_AND_SMALL_SIZES:
        assert name in names
    assert vitlab.list_models("vit_tiny*") == ["vit_tiny_patch16_224", "vit_tiny_patch4_32"]


def test_create_model_applies_overrides():
    model = vitlab.create_model("vit_tiny_patch4_32", num_classes=7, depth=2)
    assert len(model.blocks) == 2
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_unknown_model_suggests_nearest_name():
    with pytest.raises(ConfigError, match="unknown model 'vit_tiny_patch4'; did you mean 'vit_tiny_patch4_32'"):
        vitlab.create_model("vit_tiny_patch4")


def test_unknown_override_names_the_argument():
    with pytest.raises(ConfigError, match="embed_dims"):
        vitlab.create_model("vit_tiny_patch4_32", embed_dims=3)


def test_duplicate_registration_is_refused():
    def vit_tiny_patch4_32():  # same name as a registered model
        return None

    with pytest.raises(ValueError, match="already registered"):
        register_model(vit_tiny_patch4_32)
