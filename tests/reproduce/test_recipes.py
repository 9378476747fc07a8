"""vitlab.reproduce.recipes: the shipped recipes load and every run's config is valid; bad recipes raise ConfigError."""

from __future__ import annotations

import pytest

from vitlab.errors import ConfigError
from vitlab.reproduce.recipes import load_recipes, recipe_from_dict

SHIPPED = {"cutmix", "label_smoothing", "mish", "data_size", "posenc", "transformer_label_smoothing", "legendre",
           "vit_transfer"}


def test_shipped_recipes_load_and_every_variant_config_is_valid() -> None:
    from vitlab.train.tasks.image_config import config_from_dict
    from vitlab.train.tasks.seq2seq import Seq2SeqConfig

    recipes = load_recipes()
    assert {r.name for r in recipes} == SHIPPED
    for recipe in recipes:
        assert recipe.claims, recipe.name
        for family, variant in recipe.arms():
            for quick in (False, True):
                cfg = recipe.config(variant, seed=1, quick=quick, family=family)
                if recipe.kind == "image":
                    assert config_from_dict(cfg).seed == 1
                    if recipe.pretrain:
                        assert config_from_dict(recipe.pretrain_config(quick)).init is None
                elif recipe.kind == "seq2seq":
                    assert Seq2SeqConfig.from_dict(cfg).seed == 1


def test_variant_overrides_merge_into_the_family_model_args() -> None:
    (mish,) = load_recipes(["mish"])
    vit = mish.config("mish", seed=0, quick=False, family="vit")
    assert vit["model_args"]["act"] == "mish" and vit["model_args"]["depth"] == mish.families["vit"]["model_args"]["depth"]
    cnn = mish.config("mish", seed=0, quick=False, family="cnn")
    assert cnn["model"] == "resnet8" and cnn["model_args"] == {"act": "mish"}  # the ViT's model_args do not leak in
    assert "act" not in mish.families["vit"]["model_args"]  # the recipe is not modified
    with pytest.raises(ConfigError, match="name one"):
        mish.config("mish", seed=0, quick=False)
    with pytest.raises(ConfigError, match="unknown family"):
        mish.config("mish", seed=0, quick=False, family="vitt")


def test_image_claims_run_on_a_vit_and_a_cnn_on_mnist5k() -> None:
    # issue 15: every image claim on both model families, on the 28×28 MNIST set
    for recipe in load_recipes(["cutmix", "label_smoothing", "mish", "data_size"]):
        assert set(recipe.families) == {"vit", "cnn"}, recipe.name
        assert recipe.families["cnn"]["model"] == "resnet8" and recipe.base["dataset"] == "mnist5k"
    (posenc,) = load_recipes(["posenc"])
    assert posenc.base["dataset"] == "mnist5k" and posenc.base["model_args"]["stem"] == "conv"


def test_quick_overrides_come_last_and_cap_every_variant() -> None:
    (size,) = load_recipes(["data_size"])
    full = size.config("frac10", seed=0, quick=False, family="cnn")
    quick = size.config("frac10", seed=0, quick=True, family="cnn")
    assert (full["epochs"], full["train_per_class"]) == (100, 35)
    assert (quick["epochs"], quick["train_per_class"], quick["dataset"]) == (2, 35, "digits")


def test_claims_are_evaluated_per_family_unless_they_name_arms() -> None:
    recipe = recipe_from_dict({
        "name": "x", "kind": "image", "families": {"vit": {"model": "v"}, "cnn": {"model": "c"}},
        "variants": {"a": {}, "b": {}}, "metrics": ["test_acc1"],
        "claims": [
            {"text": "b beats a", "metric": "test_acc1", "variant": "b", "against": "a", "expect": "higher"},
            {"text": "cnn beats vit on a", "metric": "test_acc1", "variant": "cnn/a", "against": "vit/a", "expect": "higher",
             "minus": ["cnn/b", "vit/b"]},
        ],
    })
    assert recipe.arm_names() == ["vit/a", "vit/b", "cnn/a", "cnn/b"]
    got = [(i, f, c.variant, c.against, c.minus) for i, f, c in recipe.evaluated_claims()]
    assert got == [(0, "vit", "vit/b", "vit/a", None), (0, "cnn", "cnn/b", "cnn/a", None),
                   (1, "", "cnn/a", "vit/a", ("cnn/b", "vit/b"))]


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
        ({"kind": "seq2seq", "families": {"f": {}}}, "needs kind 'image'"),
        ({"families": {"f": 3}}, "mapping of base overrides"),
        ({"variants": {"a/b": {}}}, "may not contain '/'"),
        ({"families": {"f": {}}, "claims": [{"text": "t", "metric": "test_acc1", "variant": "f/a", "against": "a",
                                              "expect": "higher"}]}, "or none of them"),
        ({"families": {"f": {}}, "claims": [{"text": "t", "metric": "test_acc1", "variant": "g/a", "against": "f/a",
                                              "expect": "higher"}]}, "unknown variant"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "f/a", "against": "f/a", "expect": "higher"}]},
         "no 'families'"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "against": "a", "expect": "higher",
                      "minus": ["a"]}]}, "list of two"),
        ({"claims": [{"text": "t", "metric": "test_acc1", "variant": "a", "against": "a", "expect": "equal", "margin": 1,
                      "minus": ["a", "a"]}]}, "needs expect"),
    ],
)
def test_bad_recipes_raise_config_errors(change: dict, message: str) -> None:
    data = {"name": "x", "kind": "image", "variants": {"a": {}}, "metrics": ["test_acc1"], **change}
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(data)


def test_every_image_arm_builds_its_model_and_gives_logits_for_its_data() -> None:
    # reference: the data's image shape (mnist5k 1×28×28; the quick digits 1×8×8) and 10 classes
    import torch

    from vitlab.train.tasks.image import build_model
    from vitlab.train.tasks.image_config import config_from_dict

    shapes = {"mnist5k": (1, 28, 28), "digits": (1, 8, 8)}
    for recipe in load_recipes():
        if recipe.kind != "image":
            continue
        for family, variant in recipe.arms():
            for quick in (False, True):
                cfg = config_from_dict(recipe.config(variant, seed=0, quick=quick, family=family))
                if cfg.init is not None:  # starts from a pre-training run (tested in test_reproduce_end_to_end.py)
                    continue
                model = build_model(cfg, shapes[cfg.dataset], 10).eval()
                with torch.no_grad():
                    assert model(torch.zeros(2, *shapes[cfg.dataset])).shape == (2, 10), (recipe.name, family, variant)
