"""Running the recipes, resumably: one result JSON per (recipe, variant, seed).

Layout under the output folder ``OUT`` (``<arm>`` is the variant, or ``<family>/<variant>`` in a recipe
with model families)::

    OUT/runs/<recipe>/<arm>/seed<k>/        the run folder (vitlab.train.engine.train, without plots)
    OUT/runs/<recipe>/<arm>/seed<k>.json    its result: config, metrics, seconds, device (written last,
                                            atomically)

A result is reused when its JSON exists and holds the same run key (:func:`vitlab.reproduce.runkey.run_key`; a
result written before runs had keys: the same config), so a killed ``vitlab reproduce`` picks up where it
stopped, and a changed recipe or ``--quick`` redoes the runs it changes. An image or sequence run killed in the
middle continues from its last checkpoint (``train(resume=True)``); the Legendre fit restarts.

**Teacher arms** (DeiT). An arm distilled from another arm of its recipe (``distill: {teacher: ARM}``,
:meth:`vitlab.reproduce.recipes.Recipe.teacher_of`) is planned, per seed, with the folder of that arm's run *of
the same seed* in ``distill.teacher``, the teacher's result path in :attr:`RunSpec.needs`, and a key that hashes
the teacher's key instead of its folder (:func:`vitlab.reproduce.runkey.run_key`). :func:`run_all` starts a run
only once every run it needs has a result, in one process or in several; when a needed run failed, the student is
not trained and its result (kept in memory, not written, so that a rerun after the teacher is fixed trains it) is
an error of one line naming the teacher.

**Shared runs** (issue 29). Runs whose keys are equal (the same normalised config and seed: e.g. the cutmix
recipe's baseline and the label-smoothing recipe's ``no_smoothing`` arm) are trained once. They share one run
folder and one result file: where a finished result of that key already lies (a member's own place first, then
anywhere under ``OUT/runs``: a shared run stays where it was first finished, whichever recipes a later call
names), else the place of the first of them in plan order. The result file records every ``{recipe, arm}``
that shares it (``shared_by``); :func:`run_all` hands each spec the result under its own recipe, arm, seed and
config.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import multiprocessing
import os
import platform
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from vitlab.autograd import fit_legendre_p3
from vitlab.data.sequence import Vocab, iterate_batches, make_task
from vitlab.errors import CheckpointError, ConfigError, VitlabError
from vitlab.io import atomic_write_text, sha256_file
from vitlab.reproduce.recipes import DISTILL, PRETRAIN, Recipe, arm_name
from vitlab.reproduce.runkey import run_key
from vitlab.train import engine  # engine.train looked up per run: tests wrap it to watch resumes
from vitlab.train.checkpoint import latest_checkpoint
from vitlab.train.config import EngineConfig
from vitlab.train.distributed import DistContext
from vitlab.train.runs import RUN_INFO_FILE, WEIGHTS_FILE
from vitlab.train.tasks import config_of_run
from vitlab.train.tasks.image import evaluate, load_image_data, load_run, run_amp, run_transform
from vitlab.train.tasks.image_config import config_from_dict
from vitlab.train.tasks.seq2seq import Seq2SeqConfig, load_seq2seq
from vitlab.viz.techniques import plot_legendre_fit


@dataclass(frozen=True)
class RunSpec:
    """One run of a recipe: which variant and seed, its full config, where it writes."""

    recipe: str
    variant: str
    seed: int
    kind: str
    config: dict[str, Any]
    run_dir: str
    result_path: str
    quick: bool = False
    family: str = ""  # the model family in a recipe with families ("" otherwise)
    stage: int = 0  # runs of stage 0 (a shared pre-training) finish before those of stage 1 start
    key: str = ""  # run_key of the normalised config: specs with equal keys share one run ("" : not keyed)
    shared_by: tuple[tuple[str, str], ...] = ()  # (recipe, arm) of every spec sharing this run, when several
    needs: tuple[str, ...] = ()  # result paths of the runs that must finish first (a distilled arm's teacher)

    @property
    def arm(self) -> str:
        """``family/variant`` (or the variant alone): the name the report groups seeds by."""
        return arm_name(self.family, self.variant)


QUICK_SEEDS = 2  # --quick without --seeds: two seeds, the fewest that give a (paired) interval


def plan(recipes: list[Recipe], out_dir: str | Path, seeds: int | None = None, quick: bool = False) -> list[RunSpec]:
    """All runs of ``recipes`` (seeds 0..n−1; ``seeds=None``: each recipe's own default, or at most
    :data:`QUICK_SEEDS` with ``quick``), seed-major per recipe, each keyed by :func:`run_key`.

    Seed-major order (every arm of seed 0, then of seed 1, ...) gives a complete first comparison early. Specs
    with equal keys get one run folder and result file (:func:`share_runs`, the module docstring says where).
    """
    out = Path(out_dir)
    specs: list[RunSpec] = []
    for recipe in recipes:
        specs += _recipe_specs(recipe, out, seeds, quick)
    return share_runs(specs, finished_results(out))


def _recipe_specs(recipe: Recipe, out: Path, seeds: int | None, quick: bool) -> list[RunSpec]:
    """The runs of one recipe, each in its own folder: the shared pre-training (if any), then every arm per seed
    (listed in the recipe's arm order; each seed's teachers are keyed first, as their students' keys hash theirs)."""
    specs = []
    pretrain_dir, run_keys = None, {}  # run_keys: run folder -> key, for the runs another run may name
    if recipe.pretrain:  # run once, before the variants that start from it
        base = out / "runs" / recipe.name / PRETRAIN
        pretrain_dir = str(base / "seed0")
        config = {**recipe.pretrain_config(quick), "seed": 0}
        run_keys[pretrain_dir] = key = run_key(recipe.kind, 0, config)
        specs.append(RunSpec(recipe=recipe.name, variant=PRETRAIN, seed=0, kind=recipe.kind, config=config,
                             run_dir=pretrain_dir, result_path=str(base / "seed0.json"), quick=quick, stage=0, key=key))
    count = seeds if seeds is not None else (min(recipe.seeds, QUICK_SEEDS) if quick else recipe.seeds)
    for seed in recipe.seeds_for(count):
        teachers = {arm_name(f, v): recipe.teacher_of(v, quick, f) for f, v in recipe.arms()}
        made: dict[str, RunSpec] = {}
        for family, variant in sorted(recipe.arms(), key=lambda arm: teachers[arm_name(*arm)] is not None):
            teacher = teachers[arm_name(family, variant)]
            made[arm_name(family, variant)] = _arm_spec(recipe, family, variant, seed, quick, out, pretrain_dir,
                                                        run_keys, made[teacher] if teacher else None)
        specs += [made[name] for name in recipe.arm_names()]
    return specs


def _arm_spec(
    recipe: Recipe, family: str, variant: str, seed: int, quick: bool, out: Path, pretrain_dir: str | None,
    run_keys: dict[str, str], teacher: RunSpec | None,
) -> RunSpec:
    """One arm's run of ``seed``: ``init: pretrain`` and the teacher arm resolved to those runs' folders, keyed with
    ``run_keys`` (where its own key is then recorded, for its students)."""
    base = out / "runs" / recipe.name / arm_name(family, variant)
    config = recipe.config(variant, seed, quick, family)
    if config.get("init") == PRETRAIN and pretrain_dir is not None:
        config["init"] = pretrain_dir
    if teacher is not None:  # the teacher arm's run of this seed
        config[DISTILL] = {**config[DISTILL], "teacher": teacher.run_dir}
    run_dir = str(base / f"seed{seed}")
    run_keys[run_dir] = key = run_key(recipe.kind, seed, config, run_keys)  # init, teacher: their keys, not paths
    return RunSpec(recipe=recipe.name, variant=variant, seed=seed, kind=recipe.kind, config=config, run_dir=run_dir,
                   result_path=str(base / f"seed{seed}.json"), quick=quick, family=family,
                   stage=1 if recipe.pretrain else 0, key=key,
                   needs=(teacher.result_path,) if teacher is not None else ())


def share_runs(specs: list[RunSpec], finished: dict[str, dict[str, Any]] | None = None) -> list[RunSpec]:
    """``specs`` with every group of equal keys moved to one run folder and result file, and ``shared_by`` set.

    Args:
        specs: the plan, each spec in its own folder (plan order decides a new group's place: its first spec's).
        finished: result path -> result of the finished runs already in the output folder
            (:func:`finished_results`); a group whose run is among them stays where it is.
    """
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.key or spec.result_path, []).append(spec)  # unkeyed specs stay alone
    own = {spec.result_path for spec in specs}  # a spec's own place is never another run's home
    others = {path: result for path, result in (finished or {}).items() if path not in own}
    home = {group: _home(members, finished or {}, others) for group, members in groups.items()}
    moved = {spec.result_path: home[spec.key or spec.result_path] for spec in specs}
    run_dirs = {spec.run_dir: str(Path(moved[spec.result_path]).with_suffix("")) for spec in specs}
    shared = []
    for spec in specs:
        members = groups[spec.key or spec.result_path]
        result_path = moved[spec.result_path]
        shared.append(replace(
            spec, config=_moved_config(spec.config, run_dirs), result_path=result_path,
            run_dir=str(Path(result_path).with_suffix("")), needs=tuple(moved.get(p, p) for p in spec.needs),
            shared_by=tuple((m.recipe, m.arm) for m in members) if len(members) > 1 else (),
        ))
    return shared


def _moved_config(config: dict[str, Any], run_dirs: dict[str, str]) -> dict[str, Any]:
    """``config`` with ``init`` (a pre-training) and ``distill.teacher`` (a teacher arm's run) pointing at the run
    folders those runs now share (``run_dirs``: a spec's own folder -> the shared one)."""
    init, distill = config.get("init"), config.get(DISTILL)
    if isinstance(init, str) and init in run_dirs:
        config = {**config, "init": run_dirs[init]}
    if isinstance(distill, dict) and isinstance(distill.get("teacher"), str) and distill["teacher"] in run_dirs:
        config = {**config, DISTILL: {**distill, "teacher": run_dirs[distill["teacher"]]}}
    return config


def _home(members: list[RunSpec], finished: dict[str, dict[str, Any]], others: dict[str, dict[str, Any]]) -> str:
    """The result path of a group of specs sharing one run: a member's own result file that already holds the
    run, else a finished result with the group's key in ``others`` (the files that are no spec's own), else the
    first member's own."""
    for member in members:
        result = finished.get(member.result_path)
        if result is not None and result_matches(result, member):
            return member.result_path
    key = members[0].key
    for path, result in others.items():
        if key and result.get("key") == key:
            return path
    return members[0].result_path


def finished_results(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every readable result file under ``out_dir/runs`` (path -> result), in path order."""
    found = {}
    for path in sorted((Path(out_dir) / "runs").rglob("seed*.json")):
        try:
            result = _read_result(path)
        except OSError:
            continue
        if result is not None:
            found[str(path)] = result
    return found


def _read_result(path: Path) -> dict[str, Any] | None:
    """The result a file holds: its JSON object, or None when it is not valid JSON or not an object (a damaged
    file is a run to redo, not an error)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


def result_matches(result: dict[str, Any], spec: RunSpec) -> bool:
    """Whether a finished ``result`` is the run ``spec`` asks for: the same key; for a result written before
    runs had keys (or a spec without one), the same config."""
    if spec.key and "key" in result:
        return result["key"] == spec.key
    return result.get("config") == _jsonable(spec.config)


def load_result(spec: RunSpec) -> dict[str, Any] | None:
    """The finished result at ``spec``'s result path, or None when there is none (or it is another run's)."""
    path = Path(spec.result_path)
    result = _read_result(path) if path.is_file() else None
    return result if result is not None and result_matches(result, spec) else None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


# ------------------------------------------------------------------------------------------ executors
def _train_or_resume(cfg: EngineConfig, run_dir: Path) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` without plots; a folder left by a killed run of the same recipe continues
    from its last checkpoint, any other folder there is replaced."""
    resume = False
    if run_dir.exists():
        try:
            same = config_of_run(run_dir).to_dict() == cfg.to_dict()
        except (CheckpointError, ConfigError):
            same = False
        resume = same and _same_teacher(cfg, run_dir) and latest_checkpoint(run_dir) is not None
        if not resume:
            shutil.rmtree(run_dir)
    return engine.train(None if resume else cfg, run_dir, resume=resume, quiet=True, plots=False)


def _same_teacher(cfg: EngineConfig, run_dir: Path) -> bool:
    """Whether a killed distilled run's teacher still has the weights it started with (True without a teacher).

    A teacher arm retrained under a changed recipe lies in the same folder, so the student's config is unchanged;
    its run starts over rather than fail on resume (the engine refuses a changed teacher).
    """
    distill = getattr(cfg, DISTILL, None)
    if not isinstance(distill, dict):
        return True
    try:
        recorded = json.loads((run_dir / RUN_INFO_FILE).read_text(encoding="utf-8"))["teacher"]["sha256"]
        return bool(recorded == sha256_file(Path(distill["teacher"]) / WEIGHTS_FILE))
    except (OSError, ValueError, KeyError, TypeError):  # no record, or no such teacher: start over
        return False


def _run_image(spec: RunSpec) -> dict[str, float]:
    run_dir = Path(spec.run_dir)
    summary = _train_or_resume(config_from_dict(spec.config, f"recipe {spec.recipe}/{spec.variant}"), run_dir)
    train_acc1 = 100.0 * training_accuracy(run_dir)
    return {
        "test_acc1": 100.0 * summary["test_acc1"],
        "train_acc1": train_acc1,
        "val_acc1": 100.0 * summary["val_acc1"],
        "train_val_gap": train_acc1 - 100.0 * summary["val_acc1"],  # the regime: how far the run overfits
        "test_error": 100.0 * (1.0 - summary["test_acc1"]),
        "test_ece": summary["test_ece"],
        "test_ece_ts": summary["test_ece_temperature_scaled"],
        "temperature": summary["temperature"],
        "test_nll": summary["test_loss"],
        "train_seconds": summary["train_seconds"],
        "device": summary.get("device", "cpu"),
    }


def training_accuracy(run_dir: str | Path) -> float:
    """Top-1 accuracy of a finished image run on its own training split, without augmentation (in [0, 1]).

    With the validation accuracy it gives the train/validation gap, the regime a regulariser acts in. The
    split is rebuilt from the run's config (``train_per_class`` included), scored on the CPU.
    """
    model, cfg, info = load_run(run_dir)
    model = model.cpu()
    amp = run_amp(info, "cpu")
    return evaluate(model, load_image_data(cfg)["train"], run_transform(cfg, info), DistContext(), amp=amp).acc1


@torch.no_grad()
def seq2seq_teacher_forced(run_dir: str | Path, batch_size: int = 500) -> dict[str, float]:
    """Token accuracy and perplexity exp(mean NLL per target token, EOS included, padding excluded) on the test split.

    The test split is rebuilt from the run's config.yaml (same task, sizes and seed as in training).
    """
    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
    config.pop("task", None)
    cfg = Seq2SeqConfig.from_dict(config)
    model, _ = load_seq2seq(run_dir)
    task = make_task(cfg.dataset, cfg.num_train, cfg.num_test, cfg.min_len, cfg.max_len, cfg.seed)
    nll, correct, count = 0.0, 0, 0
    for src, tgt in iterate_batches(task.test, batch_size):
        logits = model(src, tgt[:, :-1]).float()  # (B, T-1, V)
        target = tgt[:, 1:]
        mask = target != Vocab.PAD
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        nll += float(losses[mask].sum())
        correct += int((logits.argmax(-1) == target)[mask].sum())
        count += int(mask.sum())
    return {"token_accuracy": 100.0 * correct / max(count, 1), "perplexity": math.exp(nll / max(count, 1))}


def _run_seq2seq(spec: RunSpec) -> dict[str, float]:
    run_dir = Path(spec.run_dir)
    summary = _train_or_resume(Seq2SeqConfig.from_dict(dict(spec.config)), run_dir)
    return {
        "seq_accuracy": 100.0 * summary["test_accuracy"],
        **seq2seq_teacher_forced(run_dir),
        "train_seconds": summary["train_seconds"],
        "device": summary.get("device", "cpu"),
    }


def _run_legendre(spec: RunSpec) -> dict[str, float]:
    start = time.perf_counter()
    fit = fit_legendre_p3(**spec.config, verbose=False)
    seconds = time.perf_counter() - start
    plot_legendre_fit(fit["x"], fit["y"], fit["y_pred"], Path(spec.run_dir) / "legendre_fit.png", fit)
    return {"final_loss": fit["loss"], "a": fit["a"], "b": fit["b"], "c": fit["c"], "d": fit["d"],
            "train_seconds": seconds, "device": "cpu"}


EXECUTORS: dict[str, Callable[[RunSpec], dict[str, Any]]] = {
    "image": _run_image,
    "seq2seq": _run_seq2seq,
    "legendre": _run_legendre,
}


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Do one run and write its result JSON atomically (a run that fails with a VitlabError is recorded as failed)."""
    start = time.perf_counter()
    error = None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the training loop's per-epoch lines; the runner reports
            metrics = EXECUTORS[spec.kind](spec)
    except VitlabError as exc:  # e.g. a non-finite loss: record it, the report names it
        metrics, error = {}, f"{type(exc).__name__}: {exc}"
    device = metrics.pop("device", "cpu") if metrics else "cpu"
    result = _result(spec, metrics, error, time.perf_counter() - start, device)
    atomic_write_text(Path(spec.result_path), json.dumps(result, indent=1))
    return result


def _result(spec: RunSpec, metrics: dict[str, Any], error: str | None, seconds: float, device: str) -> dict[str, Any]:
    """The result record of a run of ``spec``: what :func:`run_one` writes."""
    return {
        "recipe": spec.recipe,
        "family": spec.family,
        "variant": spec.variant,
        "seed": spec.seed,
        "quick": spec.quick,
        "config": _jsonable(spec.config),
        "metrics": metrics,
        "error": error,
        "seconds": seconds,
        "device": device,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"key": spec.key} if spec.key else {}),
        **({"shared_by": [{"recipe": r, "arm": a} for r, a in spec.shared_by]} if spec.shared_by else {}),
    }


def _run_one_in_worker(spec_dict: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - runs in a subprocess
    return run_one(RunSpec(**spec_dict))


def _runs(specs: list[RunSpec]) -> dict[str, list[int]]:
    """The distinct runs of ``specs``: result path -> the indices of the specs sharing it, in plan order."""
    runs: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        runs.setdefault(spec.result_path, []).append(i)
    return runs


def _done_runs(specs: list[RunSpec]) -> dict[str, dict[str, Any]]:
    """Result path -> finished result, for each run of ``specs`` whose result one of its specs accepts."""
    done = {}
    for path, members in _runs(specs).items():
        found = next((r for r in (load_result(specs[i]) for i in members) if r is not None), None)
        if found is not None:
            done[path] = found
    return done


def pending_runs(specs: list[RunSpec]) -> list[RunSpec]:
    """The runs :func:`run_all` would train: one spec (the first) of each run without a finished result."""
    done = _done_runs(specs)
    return [specs[members[0]] for path, members in _runs(specs).items() if path not in done]


def as_result_of(result: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
    """A finished (maybe shared) ``result`` as ``spec``'s: its recipe, arm, seed and config, and, when the run is
    shared, ``shared_by``: every ``{recipe, arm}`` using it (this plan's, then those the file records)."""
    view = {**result, "recipe": spec.recipe, "family": spec.family, "variant": spec.variant, "seed": spec.seed,
            "quick": spec.quick, "config": _jsonable(spec.config)}
    pairs = list(spec.shared_by or [(spec.recipe, spec.arm)])
    trained_as = arm_name(str(result.get("family", "")), str(result.get("variant", spec.variant)))
    pairs.append((str(result.get("recipe", spec.recipe)), trained_as))
    pairs += [(str(p["recipe"]), str(p["arm"])) for p in result.get("shared_by") or []]
    unique = list(dict.fromkeys(pairs))
    view.pop("shared_by", None)
    if len(unique) > 1:
        view["shared_by"] = [{"recipe": r, "arm": a} for r, a in unique]
    return view


def default_jobs() -> int:
    """Parallel runs: one per CPU core (each run uses one thread) on the CPU, one on a GPU."""
    if torch.cuda.is_available():
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def run_all(
    specs: list[RunSpec],
    jobs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every run of ``specs`` without a finished result, once however many specs share it (``jobs`` > 1: in
    that many worker processes); return each spec's result (:func:`as_result_of`), in ``specs`` order.

    An interrupted call leaves every finished run's JSON in place, so calling again redoes only the unfinished ones.
    """
    runs = _runs(specs)
    done = _done_runs(specs)
    todo = [members[0] for path, members in runs.items() if path not in done]
    bar = tqdm(total=len(runs), initial=len(done), desc="reproduce", unit="run", disable=not progress)
    say = log or (lambda line: tqdm.write(line) if progress else print(line, flush=True))
    if len(runs) < len(specs):
        say(f"{len(specs)} runs of the recipes are {len(runs)} distinct runs: identical ones are trained once")
    if done and todo:
        say(f"{len(done)} finished runs reused, {len(todo)} to do")

    def finished(i: int, result: dict[str, Any]) -> None:
        spec = specs[i]
        done[spec.result_path] = result
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(result["metrics"].items())[:3]) or result["error"]
        also = "".join(f" = {r}/{a}" for r, a in spec.shared_by if (r, a) != (spec.recipe, spec.arm))
        say(f"{spec.recipe}/{spec.arm}/seed{spec.seed}{also}: {shown} ({result['seconds']:.0f} s)")
        bar.update(1)

    try:
        for stage in sorted({specs[i].stage for i in todo}):  # a shared pre-training first, then its users
            stage_todo = [i for i in todo if specs[i].stage == stage]
            _run_stage(specs, stage_todo, done, jobs, finished, bar.set_postfix_str)
    finally:
        bar.close()
    return [as_result_of(done[spec.result_path], spec) for spec in specs if spec.result_path in done]


def _run_stage(
    specs: list[RunSpec], todo: list[int], done: dict[str, dict[str, Any]], jobs: int,
    finished: Callable[[int, dict[str, Any]], None], show: Callable[[str], None],
) -> None:
    """Run the specs ``todo`` (indices into ``specs``), each only once every run it ``needs`` has a result in
    ``done``: in plan order, in this process (``jobs`` <= 1) or in up to ``jobs`` worker processes, a waiting run
    starting as soon as its teacher's result is in.

    A run whose teacher failed, or whose teacher will never run (nothing left to run or running), is not trained:
    it goes to ``finished`` as failed, with one line naming the teacher (:func:`_need_failure`), and is not written.
    """
    runs = _runs(specs)
    waiting = list(todo)
    parallel = jobs > 1 and len(todo) > 1
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=spawn) if parallel else contextlib.nullcontext() as pool:
        running: dict[Future[dict[str, Any]], int] = {}
        while waiting or running:
            ready = [i for i in waiting if all(path in done for path in specs[i].needs)]
            stuck = not ready and not running  # what still waits needs a run that will not come
            failures = {i: why for i in waiting if (why := _need_failure(specs, i, done, runs, stuck))}
            for i, why in failures.items():
                waiting.remove(i)
                finished(i, _result(specs[i], {}, why, 0.0, "cpu"))
            ready = [i for i in ready if i not in failures]
            for i in ready if parallel else ready[:1]:
                waiting.remove(i)
                if parallel:
                    running[pool.submit(_run_one_in_worker, asdict(specs[i]))] = i
                else:
                    show(f"{specs[i].recipe}/{specs[i].arm}/seed{specs[i].seed}")
                    finished(i, run_one(specs[i]))
            if running:
                complete, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in complete:
                    finished(running.pop(future), future.result())


def _need_failure(specs: list[RunSpec], i: int, done: dict[str, dict[str, Any]], runs: dict[str, list[int]],
                  stuck: bool) -> str:
    """Why spec ``i`` will not be trained, in one line naming its teacher: a run it needs failed, or (``stuck``:
    nothing can start or is running) is not among the runs to come; ``""`` when it can run, or must wait."""
    for path in specs[i].needs:
        error = str((done.get(path) or {}).get("error") or "")
        if error or (stuck and path not in done):
            members = [specs[j] for j in runs.get(path, [])]
            teacher = next((m for m in members if m.recipe == specs[i].recipe), members[0] if members else None)
            name = f"{teacher.recipe}/{teacher.arm}/seed{teacher.seed}" if teacher else path
            why = f"failed ({error.splitlines()[0]})" if error else "is not among the runs of this call"
            return f"teacher {name} {why}, so this run was not trained"
    return ""


def machine_info() -> dict[str, Any]:
    """Where the runs ran: OS, CPU, core count, torch version, GPU name (if any)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["processor"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info
