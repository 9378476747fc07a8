"""Tests of vitlab.train.config: YAML loading, --set overrides, type and range checks with clear errors."""

from __future__ import annotations

import pytest

from vitlab.errors import ConfigError
from vitlab.io import load_yaml
from vitlab.train.config import apply_overrides
from vitlab.train.tasks.image_config import ImageConfig, config_from_dict, config_keys


def test_defaults_are_valid_and_roundtrip_through_dict() -> None:
    cfg = ImageConfig()
    assert config_from_dict(cfg.to_dict()) == cfg


def test_overrides_parse_values_as_yaml_and_reach_nested_keys() -> None:
    data = apply_overrides({"lr": 1.0}, ["lr=3e-4", "hflip=true", "model_args.act=mish", "epochs=7"])
    assert data == {"lr": "3e-4", "hflip": True, "model_args": {"act": "mish"}, "epochs": 7}  # YAML 1.1
    cfg = config_from_dict(data)
    assert cfg.lr == 3e-4
    assert cfg.model_args == {"act": "mish"} and cfg.epochs == 7 and cfg.hflip is True


def test_int_is_widened_to_float_but_float_is_not_narrowed_to_int() -> None:
    assert config_from_dict({"lr": 1}).lr == 1.0
    with pytest.raises(ConfigError, match="epochs must be int"):
        config_from_dict({"epochs": 2.5})


def test_unknown_key_names_the_nearest_valid_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rat'.*") as info:
        config_from_dict({"learning_rat": 0.1})
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        config_from_dict({"epoch": 3})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("lr", 0.0, "lr must be a positive"),
        ("lr", -1.0, "lr must be a positive"),
        ("lr", float("nan"), "lr must be a positive"),
        ("batch_size", 0, "batch_size must be a positive"),
        ("epochs", -3, "epochs must be a positive"),
        ("label_smoothing", 1.0, r"label_smoothing must be in \[0, 1\)"),
        ("ema_decay", 1.0, "ema_decay"),
        ("nonfinite", "ignore", "unknown nonfinite policy 'ignore'"),
        ("device", "tpu", "unknown device 'tpu'"),
        ("hflip", "yes", "hflip must be bool"),
        ("model_args", [1], "model_args must be dict"),
    ],
)
def test_bad_values_raise_one_line_naming_the_key(key: str, value: object, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        config_from_dict({key: value})
    assert "\n" not in str(info.value)


def test_accum_steps_must_divide_batch_size() -> None:
    with pytest.raises(ConfigError, match="not divisible by accum_steps"):
        config_from_dict({"batch_size": 10, "accum_steps": 3})


def test_yaml_is_loaded_safely_and_errors_name_the_file(tmp_path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("lr: 0.01\nepochs: 2\n")
    assert load_yaml(good) == {"lr": 0.01, "epochs": 2}
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(evil)
    assert not (tmp_path / "pwned").exists()
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(listing)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    assert load_yaml(_empty(tmp_path)) == {}


def _empty(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    return path


def test_every_key_is_documented_in_the_class_docstring() -> None:
    doc = ImageConfig.__doc__ or ""
    missing = [key for key in config_keys() if key not in doc]
    assert not missing, f"undocumented keys: {missing}"


def test_shipped_default_recipe_equals_the_dataclass_defaults() -> None:
    from vitlab.recipes import recipe_path

    assert config_from_dict(load_yaml(recipe_path("digits_vit"))) == ImageConfig()


def test_dotted_override_keeps_the_sibling_keys_of_the_default_recipe() -> None:
    """Reference: the ImageConfig defaults with one nested key changed by hand."""
    from vitlab.train.tasks import resolve_config

    expected = {**ImageConfig().model_args, "drop_path_rate": 0.2}
    assert resolve_config(None, ["model_args.drop_path_rate=0.2"])["model_args"] == expected
    assert resolve_config(None, ["model_args.act=mish"])["model_args"] == {**ImageConfig().model_args, "act": "mish"}
    # another model: the default model's arguments may not fit it, so they are not carried over
    assert resolve_config(None, ["model=vit_tiny_patch4_32", "model_args.act=mish"])["model_args"] == {"act": "mish"}
    # a whole mapping given with --set replaces the mapping
    assert resolve_config(None, ["model_args={depth: 1}"])["model_args"] == {"depth": 1}


def test_dotted_override_keeps_the_sibling_keys_of_the_recipe_file(tmp_path) -> None:
    from vitlab.train.tasks import resolve_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_args:\n  depth: 2\n  act: gelu\n")
    assert resolve_config(recipe, ["model_args.act=mish"])["model_args"] == {"depth": 2, "act": "mish"}


def test_amp_accepts_the_modes_and_the_old_booleans() -> None:
    assert ImageConfig().amp == "auto"
    assert ImageConfig(amp=True).amp == "bf16" and ImageConfig(amp=False).amp == "off"
    assert config_from_dict({"amp": "fp16"}).amp == "fp16"
    with pytest.raises(ConfigError, match="amp: unknown precision 'bf32'; did you mean 'bf16'"):
        config_from_dict({"amp": "bf32"})
