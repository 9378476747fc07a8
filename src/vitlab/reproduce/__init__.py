"""``vitlab reproduce``: rerun each paper's comparison at small scale, with several seeds, and write the evidence.

:func:`reproduce` loads the recipes (:mod:`vitlab.reproduce.recipes`), runs every (recipe, variant, seed)
resumably (:mod:`vitlab.reproduce.runner`), and writes ``report.md``, ``report.html`` (self-contained) and
``results.json`` (every run's raw numbers) into the output folder (:mod:`vitlab.reproduce.report`), with the
statistics of :mod:`vitlab.reproduce.stats`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from vitlab.reproduce.recipes import Recipe, load_recipes
from vitlab.reproduce.report import RecipeResult, summarize, write_report
from vitlab.reproduce.runner import default_jobs, machine_info, plan, run_all
from vitlab.train.checkpoint import atomic_write_text

__all__ = ["load_recipes", "penultimate_figure", "reproduce"]


def penultimate_figure(run_dirs: dict[str, Path], classes: list[int], out: Path) -> Path:
    """Müller et al. Fig. 1 for each run (rows) on the training and test images (columns) of three classes."""
    import torch

    from vitlab.data.registry import load_splits
    from vitlab.reproduce.penultimate import head_templates, penultimate_features, project_onto_template_plane
    from vitlab.train.loop import load_run, run_transform
    from vitlab.viz import plot_penultimate_projection

    panels = []
    for label, run_dir in run_dirs.items():
        model, cfg, info = load_run(run_dir)
        transform = run_transform(cfg, info)
        splits = load_splits(cfg.dataset, cfg.data_root, val_fraction=cfg.val_fraction, seed=0, download=False)
        templates = head_templates(model, classes)
        names = [info["classes"][k] for k in classes]
        for split in ("train", "test"):
            data = splits[split]
            keep = torch.isin(data.labels, torch.tensor(classes))
            images = transform(data.images[keep], None, train=False)
            features = penultimate_features(model, images)
            coords = project_onto_template_plane(features, templates)
            labels = torch.tensor([classes.index(int(k)) for k in data.labels[keep]])
            panels.append({
                "title": f"{label}: {split}",
                "coords": coords.numpy(),
                "labels": labels.numpy(),
                "names": names,
                "templates": project_onto_template_plane(templates, templates).numpy(),
            })
    return plot_penultimate_projection(panels, out, ncols=2)


def _extra_images(recipes: list[Recipe], results: list[dict[str, Any]], out: Path) -> dict[str, list[tuple[str, Path]]]:
    extras: dict[str, list[tuple[str, Path]]] = {}
    for recipe in recipes:
        ok = {(r["variant"], r["seed"]) for r in results if r["recipe"] == recipe.name and not r.get("error")}
        if recipe.figure.get("kind") == "penultimate":
            variants = recipe.figure.get("variants", list(recipe.variants))
            classes = [int(k) for k in recipe.figure.get("classes", [0, 1, 2])]
            if all((v, 0) in ok for v in variants):
                path = penultimate_figure({v: out / "runs" / recipe.name / v / "seed0" for v in variants}, classes,
                                          out / f"{recipe.name}_penultimate.png")
                extras.setdefault(recipe.name, []).append((
                    f"Penultimate-layer activations (seed 0) of classes {classes} projected onto the plane through "
                    "their three templates (rows of the head's weight; Müller et al. 2019, Fig. 1); origin at the "
                    "first template, axes in the plane's orthonormal basis.", path))
        if recipe.kind == "legendre" and ok:
            variant = next(iter(recipe.variants))
            src = out / "runs" / recipe.name / variant / "seed0" / "legendre_fit.png"
            if src.is_file():
                dst = out / f"{recipe.name}_fit.png"
                shutil.copyfile(src, dst)
                extras.setdefault(recipe.name, []).append(("The fitted a + b·P3(c + d·x) beside sin(x).", dst))
    return extras


def reproduce(
    names: list[str] | None = None,
    out_dir: str | Path = "runs/reproduce",
    seeds: int | None = None,
    quick: bool = False,
    jobs: int | None = None,
    recipe_dir: str | Path | None = None,
    progress: bool = True,
    command: str = "vitlab reproduce",
) -> tuple[Path, Path]:
    """Run the recipes (all, or ``names``) into ``out_dir`` and write the report; returns (report.md, report.html).

    Args:
        names: recipe names (None: all of ``configs/reproduce``).
        out_dir: output folder; finished runs already in it are reused.
        seeds: seeds per recipe (None: each recipe's default, 3).
        quick: apply each recipe's ``quick`` overrides (a few minutes in all on 2 CPU cores).
        jobs: parallel runs (None: one per CPU core on the CPU, one on a GPU).
        recipe_dir: folder of recipe YAMLs (None: the checkout's ``configs/reproduce``).
        progress: show a progress bar and one line per finished run.
        command: the command line, written into the report.
    """
    recipes = load_recipes(names, recipe_dir)
    out = Path(out_dir)
    jobs = default_jobs() if jobs is None or jobs < 1 else jobs
    start = time.perf_counter()
    load_before = machine_info().get("load_average")
    specs = plan(recipes, out, seeds, quick)
    results = run_all(specs, jobs=jobs, progress=progress)
    wall = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    summaries: list[RecipeResult] = [summarize(r, results) for r in recipes]
    header = {
        "command": command,
        "quick": quick,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": {**machine_info(), "load_before": load_before},
        "wall_seconds": wall,
        "jobs": jobs,
    }
    return write_report(summaries, out, header, _extra_images(recipes, results, out))
