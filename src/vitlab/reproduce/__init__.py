"""``vitlab reproduce``: rerun each paper's comparison at small scale, with several seeds, and write the evidence.

:func:`reproduce` loads the recipes (:mod:`vitlab.reproduce.recipes`), runs every (recipe, variant, seed)
resumably (:mod:`vitlab.reproduce.runner`), and writes ``report.md``, ``report.html`` (self-contained) and
``results.json`` (every run's raw numbers) into the output folder (:mod:`vitlab.reproduce.report`), with the
statistics of :mod:`vitlab.reproduce.stats`. When a run starts it records the protocol's hash and the start time in
``run_info.json`` (:mod:`vitlab.reproduce.protocol`), so that the report can say whether the rules were committed
before the run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vitlab.io import atomic_write_text
from vitlab.reproduce.penultimate import head_templates, penultimate_features, project_onto_template_plane
from vitlab.reproduce.protocol import now_iso, preregistration, protocol_digest, protocol_state
from vitlab.reproduce.recipes import Recipe, arm_name, default_recipe_dir, load_recipes
from vitlab.reproduce.report import RecipeResult, shared_results, summarize, write_report
from vitlab.reproduce.runner import default_jobs, machine_info, pending_runs, plan, run_all
from vitlab.train.tasks.image import load_image_data, load_run, run_transform
from vitlab.viz.training import plot_penultimate_projection

if TYPE_CHECKING:
    import torch

__all__ = ["load_recipes", "penultimate_figure", "reproduce"]


def penultimate_figure(run_dirs: dict[str, Path], classes: list[int], out: Path) -> Path:
    """Müller et al. Fig. 1 for each run (rows) on the training and test images (columns) of three classes."""
    panels = []
    for label, run_dir in run_dirs.items():
        model, cfg, info = load_run(run_dir)
        transform = run_transform(cfg, info)
        splits = load_image_data(cfg)  # the run's own splits (its train_per_class subset included)
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
                "title": f"{label}: {split} (spread ratio {cluster_spread_ratio(coords, labels):.2f})",
                "coords": coords.numpy(),
                "labels": labels.numpy(),
                "names": names,
                "templates": project_onto_template_plane(templates, templates).numpy(),
            })
    return plot_penultimate_projection(panels, out, ncols=2)


def cluster_spread_ratio(coords: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean distance of points to their class centroid over the mean distance between class centroids.

    Smaller means tighter, better separated clusters (the effect Müller et al. 2019 describe for smoothing).
    coords: (N, 2); labels: (N,) in 0..K−1, every class present.
    """
    classes = sorted(int(k) for k in labels.unique())
    centroids = torch.stack([coords[labels == k].mean(0) for k in classes])
    within = torch.cat([(coords[labels == k] - centroids[i]).norm(dim=1) for i, k in enumerate(classes)]).mean()
    between = torch.pdist(centroids).mean()
    return float(within / between)


def _extra_images(
    recipes: list[Recipe], results: list[dict[str, Any]], out: Path, run_dirs: dict[tuple[str, str, int], Path]
) -> dict[str, list[tuple[str, Path]]]:
    """The recipes' own figures; ``run_dirs``: (recipe, arm, seed) -> its run folder (a shared run's may be
    another recipe's)."""
    extras: dict[str, list[tuple[str, Path]]] = {}
    for recipe in recipes:
        ok = {(arm_name(r.get("family", ""), r["variant"]), r["seed"]) for r in results
              if r["recipe"] == recipe.name and not r.get("error")}
        if recipe.figure.get("kind") == "penultimate":
            variants = recipe.figure.get("variants", recipe.arm_names())  # arm names: family/variant
            classes = [int(k) for k in recipe.figure.get("classes", [0, 1, 2])]
            if all((v, 0) in ok for v in variants):
                path = penultimate_figure({v: run_dirs[recipe.name, v, 0] for v in variants}, classes,
                                          out / f"{recipe.name}_penultimate.png")
                extras.setdefault(recipe.name, []).append((
                    f"Penultimate-layer activations (seed 0) of classes {classes} projected onto the plane through "
                    "their three templates (rows of the head's weight; Müller et al. 2019, Fig. 1); origin at the "
                    "first template, axes in the plane's orthonormal basis. Spread ratio: mean distance to the class "
                    "centroid over mean distance between centroids (smaller = tighter clusters).", path))
        if recipe.kind == "legendre" and ok:
            variant = next(iter(recipe.variants))
            src = run_dirs[recipe.name, variant, 0] / "legendre_fit.png"
            if src.is_file():
                dst = out / f"{recipe.name}_fit.png"
                shutil.copyfile(src, dst)
                extras.setdefault(recipe.name, []).append(("The fitted a + b·P3(c + d·x) beside sin(x).", dst))
    return extras


def record_protocol_start(info_path: Path, info: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``info`` with the protocol's hash and the start time (:mod:`vitlab.reproduce.protocol`), written to
    ``info_path`` at once.

    Called only by the first invocation that trains in an output folder (no ``run_info.json`` yet): a run resumed
    later is judged against the protocol it began under, so changing the rules between invocations shows as a
    change after the start; a folder whose first invocation recorded nothing (an older vitlab) stays unrecorded.
    """
    if "protocol_sha256" in info and "started_at" in info:
        return info
    info = {**info, "protocol_sha256": protocol_digest(folder), "protocol_folder": str(folder), "started_at": now_iso()}
    info_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(info_path, json.dumps(info, indent=1))
    return info


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
        names: recipe names (None: all of the shipped ``vitlab/recipes/reproduce``).
        out_dir: output folder; finished runs already in it are reused.
        seeds: seeds per recipe (None: each recipe's default; at most 2 with ``quick``).
        quick: apply each recipe's ``quick`` overrides (a few minutes in all on 2 CPU cores).
        jobs: parallel runs (None: one per CPU core on the CPU, one on a GPU).
        recipe_dir: folder of recipe YAMLs (None: the shipped ``vitlab/recipes/reproduce``).
        progress: show a progress bar and one line per finished run.
        command: the command line, written into the report.
    """
    recipes = load_recipes(names, recipe_dir)
    folder = Path(recipe_dir) if recipe_dir is not None else default_recipe_dir()
    out = Path(out_dir)
    jobs = default_jobs() if jobs is None or jobs < 1 else jobs
    start = time.perf_counter()
    load_before = machine_info().get("load_average")
    specs = plan(recipes, out, seeds, quick)
    todo = len(pending_runs(specs))
    info_path = out / "run_info.json"
    previous = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    if todo and not previous:  # a run starts in this folder: its protocol is recorded now, before any training
        previous = record_protocol_start(info_path, previous, folder)
    results = run_all(specs, jobs=jobs, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    # How the runs ran (wall time over all invocations that did runs, load, jobs), kept in run_info.json so
    # that a later call which only rewrites the report still states it.
    if todo or "wall_seconds" not in previous:
        info = {
            **previous,
            "wall_seconds": previous.get("wall_seconds", 0.0) + time.perf_counter() - start,
            "invocations": previous.get("invocations", 0) + 1,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "jobs": jobs,
            "machine": {**machine_info(), "load_before": load_before},
        }
        atomic_write_text(info_path, json.dumps(info, indent=1))
    else:
        info = previous
    summaries: list[RecipeResult] = [summarize(r, results) for r in recipes]
    lines = preregistration(protocol_state(folder), info.get("protocol_sha256"), info.get("started_at"))
    header = {"command": command, "quick": quick, **info, "protocol": lines, "shared_runs": shared_results(results)}
    run_dirs = {(spec.recipe, spec.arm, spec.seed): Path(spec.run_dir) for spec in specs}
    return write_report(summaries, out, header, _extra_images(recipes, results, out, run_dirs))
