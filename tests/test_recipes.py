"""vitlab.recipes: the shipped YAML recipes are package data, found by name or path; bad names raise ConfigError.

References: the recipe files themselves (listed with a plain ``os.listdir`` of the package folder), the
``[tool.setuptools.package-data]`` globs of pyproject.toml (what a wheel carries), and the config
dataclasses that must accept every shipped recipe.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest
import tomllib

from vitlab import recipes
from vitlab.cli import main
from vitlab.errors import ConfigError
from vitlab.recipes import describe, list_recipes, load_recipe, recipe_dir, recipe_path, reproduce_dir

PACKAGE = Path(recipes.__file__).resolve().parent


def test_list_recipes_is_every_yaml_of_the_package_folder() -> None:
    expected = sorted(name[:-5] for name in os.listdir(PACKAGE) if name.endswith(".yaml"))
    assert list_recipes() == expected
    assert {"digits_vit", "transformer_reverse"} <= set(expected)
    assert recipe_dir().resolve() == PACKAGE
    assert reproduce_dir().resolve() == PACKAGE / "reproduce"


def test_every_shipped_training_recipe_is_a_valid_config() -> None:
    from vitlab.train.tasks.image_config import config_from_dict
    from vitlab.train.tasks.seq2seq import Seq2SeqConfig

    for name in list_recipes():
        data = load_recipe(name)
        task = data.pop("task", "image")
        if task == "seq2seq":
            Seq2SeqConfig.from_dict(data)
        else:
            config_from_dict(data, name)


def test_every_shipped_yaml_has_a_one_line_description() -> None:
    for path in [*PACKAGE.glob("*.yaml"), *PACKAGE.glob("reproduce/*.yaml")]:
        text = describe(path)
        assert text and "\n" not in text, path.name


def test_describe_reads_the_first_comment_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("\n#  A tiny recipe.\n# more detail\nepochs: 1\n", encoding="utf-8")
    assert describe(path) == "A tiny recipe."
    path.write_text("epochs: 1\n# late comment\n", encoding="utf-8")
    assert describe(path) == ""


def test_wheel_package_data_globs_cover_every_recipe_file() -> None:
    """A recipe added in a new folder, or with another suffix, would be missing from the wheel."""
    pyproject = PACKAGE.parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("installed from a wheel: no pyproject.toml next to the package")
    globs = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["vitlab.recipes"]
    files = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml")]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert not missing, f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"


def test_recipe_path_resolves_names_with_or_without_suffix() -> None:
    assert recipe_path("transformer_reverse") == recipe_dir() / "transformer_reverse.yaml"
    assert recipe_path("transformer_reverse.yaml") == recipe_dir() / "transformer_reverse.yaml"
    assert recipe_path("transformer_reverse").is_file()


def test_an_existing_file_wins_over_a_recipe_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("transformer_reverse.yaml").write_text("epochs: 1\n", encoding="utf-8")
    assert recipe_path("transformer_reverse.yaml") == Path("transformer_reverse.yaml")
    mine = tmp_path / "sub" / "mine.yaml"
    mine.parent.mkdir()
    mine.write_text("epochs: 2\n", encoding="utf-8")
    assert load_recipe(str(mine)) == {"epochs": 2}


def test_unknown_name_is_one_line_naming_the_nearest_recipe() -> None:
    with pytest.raises(ConfigError) as info:
        recipe_path("transformer_revers")
    message = str(info.value)
    assert "\n" not in message
    assert "unknown recipe 'transformer_revers'; did you mean 'transformer_reverse'?" in message
    assert "YAML file" in message


@pytest.mark.parametrize(
    "arg,expected",
    [
        ("configs/transformer_reverse.yaml", "config file configs/transformer_reverse.yaml does not exist; did you mean "
                                             "the shipped recipe --config transformer_reverse?"),
        ("somewhere/digits_vt.yml", "did you mean the shipped recipe --config digits_vit?"),
        ("nothing_like_it.yaml", "pass a YAML file or a recipe name"),
    ],
)
def test_a_missing_file_path_names_the_fix(arg: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="does not exist") as info:
        recipe_path(arg)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_cli_recipes_lists_every_shipped_recipe_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    from vitlab.reproduce.recipes import load_recipes

    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    entries = {line.split()[0]: line for line in lines if line.startswith("  ")}
    shipped = list_recipes() + [r.name for r in load_recipes()]
    assert sorted(entries) == sorted(shipped) and len(entries) == len(shipped)
    assert "Encoder-decoder Transformer" in entries["transformer_reverse"]
    assert entries["cutmix"].split(None, 1)[1].startswith("CutMix vs Mixup")


def test_cli_train_unknown_recipe_is_one_stderr_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "--config", "digits_vitt", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'digits_vit'" in err
    assert not (tmp_path / "run").exists()


def test_cli_train_runs_a_shipped_recipe_by_name(tmp_path: Path) -> None:
    run = tmp_path / "rev"
    sets = ["steps=3", "warmup=1", "d_model=16", "dim_ff=32", "num_encoder_layers=1", "num_decoder_layers=1",
            "eval_every=3", "num_train=64", "num_test=16", "max_len=5", "batch_size=16"]
    argv = ["train", "--config", "transformer_reverse", "--out", str(run), "--quiet"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    assert (run / "model.safetensors").is_file() and (run / "config.yaml").is_file()
