"""vitlab.reproduce.recipes: the shipped recipes load and every run's config is valid; bad recipes raise ConfigError."""

from __future__ import annotations

import pytest

from vitlab.errors import ConfigError
from vitlab.reproduce.recipes import load_recipes, recipe_from_dict

SHIPPED = {"cutmix", "label_smoothing", "mish", "posenc", "transformer_label_smoothing", "legendre", "vit_transfer"}


def test_shipped_recipes_load_and_every_variant_config_is_valid() -> None:
    from vitlab.train.config import config_from_dict
    from vitlab.train.seq2seq import Seq2SeqConfig

    recipes = load_recipes()
    assert {r.name for r in recipes} == SHIPPED
    for recipe in recipes:
        assert recipe.claims, recipe.name
        for variant in recipe.variants:
            for quick in (False, True):
                cfg = recipe.config(variant, seed=1, quick=quick)
                if recipe.kind == "image":
                    assert config_from_dict(cfg).seed == 1
                    if recipe.pretrain:
                        assert config_from_dict(recipe.pretrain_config(quick)).init is None
                elif recipe.kind == "seq2seq":
                    assert Seq2SeqConfig.from_dict(cfg).seed == 1


def test_variant_overrides_merge_into_nested_model_args() -> None:
    (mish,) = load_recipes(["mish"])
    cfg = mish.config("mish", seed=0, quick=False)
    assert cfg["model_args"]["act"] == "mish" and cfg["model_args"]["depth"] == mish.base["model_args"]["depth"]
    assert "act" not in mish.base["model_args"]  # the recipe's base is not modified


def test_unknown_recipe_name_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'cutmix'"):
        load_recipes(["cutmx"])


def test_missing_recipe_folder_names_the_fix(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="--recipes"):
        load_recipes(recipe_dir=tmp_path / "nowhere")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"kind": "video"}, "unknown recipe kind"),
        ({"metrics": ["test_acc2"]}, "did you mean 'test_acc1'"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "z", "against": "a", "expect": "higher"}]}, "unknown variant"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "expect": "higher"}]}, "against"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "against": "a", "expect": "equal"}]}, "margin"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "against": "a", "expect": "bigger"}]}, "expectation"),
        ({"colour": 1}, "unknown recipe key"),
        ({"variants": {}}, "empty"),
    ],
)
def test_bad_recipes_raise_config_errors(change: dict, message: str) -> None:
    data = {"name": "x", "kind": "image", "variants": {"a": {}}, "metrics": ["test_acc1"], **change}
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(data)
