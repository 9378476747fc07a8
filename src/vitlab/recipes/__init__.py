"""The shipped YAML recipes, package data read with :mod:`importlib.resources`.

``vitlab/recipes/<name>.yaml`` are training recipes (``vitlab train --config <name>``);
``vitlab/recipes/reproduce/*.yaml`` are the papers' comparisons (``vitlab reproduce``). Each file's first
comment line is its one-line description (``vitlab recipes``). They travel inside the wheel, so an installed
vitlab finds them without a checkout.
"""

from __future__ import annotations

import difflib
from importlib.resources import files
from pathlib import Path
from typing import Any

from vitlab.errors import ConfigError, unknown_name_message
from vitlab.io import load_yaml

_SUFFIXES = (".yaml", ".yml")
DEFAULT_RECIPE = "mnist5k_vit"  # what `vitlab train` runs with no --config


def recipe_dir() -> Path:
    """The folder of the shipped training recipes (inside the installed package)."""
    # pip installs a wheel unpacked, so the package's resources are plain files on disk.
    return Path(str(files(__name__)))


def reproduce_dir() -> Path:
    """The folder of the shipped reproduction recipes (``vitlab reproduce``)."""
    return recipe_dir() / "reproduce"


def list_recipes() -> list[str]:
    """The names of the shipped training recipes, sorted (``transformer_reverse``, ...)."""
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def describe(path: Path) -> str:
    """The first comment line of a YAML file, without its ``#`` (``""`` if it starts with no comment)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                return line.strip()[1:].strip() if line.lstrip().startswith("#") else ""
    return ""


def recipe_path(name_or_path: str | Path) -> Path:
    """The YAML file for ``--config``: an existing file, else the shipped recipe of that name.

    Args:
        name_or_path: a path to a YAML file, or a shipped recipe name (``transformer_reverse``; a
            ``.yaml`` suffix is allowed).

    Raises:
        ConfigError: neither an existing file nor a shipped recipe (one line naming the nearest recipe).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    names = list_recipes()
    stem = path.stem if path.suffix in _SUFFIXES else path.name
    has_folder = "/" in text or "\\" in text
    if stem in names and not has_folder:
        return recipe_dir() / f"{stem}.yaml"
    if has_folder or path.suffix in _SUFFIXES:
        near = [stem] if stem in names else difflib.get_close_matches(stem, names, n=1, cutoff=0.5)
        hint = f"did you mean the shipped recipe --config {near[0]}?" if near else "pass a YAML file or a recipe name"
        raise ConfigError(f"config file {text} does not exist; {hint} (see `vitlab recipes`)")
    raise ConfigError(unknown_name_message("recipe", text, names) + "; or pass the path of a YAML file")


def load_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """The mapping of a recipe file or shipped recipe name (:func:`recipe_path`, read with ``yaml.safe_load``)."""
    return load_yaml(recipe_path(name_or_path))
