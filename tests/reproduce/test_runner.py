"""vitlab.reproduce.runner: the run plan, one atomic result per run, resuming without redoing finished runs.

A fake executor (a function of the config that counts its calls) stands in for training, so these tests
take milliseconds; the real executors run in test_reproduce_end_to_end.py.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vitlab.reproduce import runner
from vitlab.reproduce.recipes import recipe_from_dict
from vitlab.reproduce.runner import load_result, plan, run_all


def _recipe(epochs: int = 5):
    return recipe_from_dict({
        "name": "fake",
        "kind": "image",
        "base": {"epochs": epochs, "lr": 0.01},
        "quick": {"epochs": 1},
        "variants": {"a": {}, "b": {"lr": 0.02}},
        "metrics": ["test_acc1"],
        "claims": [{"text": "b beats a", "metric": "test_acc1", "variant": "b", "against": "a", "expect": "higher"}],
    })


class FakeTraining:
    """Counts calls; raises KeyboardInterrupt (a person pressing Ctrl-C) on call number ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.stop_at = stop_at

    def __call__(self, spec: runner.RunSpec) -> dict[str, float]:
        self.calls.append((spec.variant, spec.seed))
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        return {"test_acc1": 100.0 * spec.config["lr"] + spec.seed, "device": "cpu"}


def test_plan_is_seed_major_with_merged_configs(tmp_path: Path) -> None:
    specs = plan([_recipe()], tmp_path, seeds=2)
    assert [(s.variant, s.seed) for s in specs] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    # amp pinned to float32 (auto would time this machine), unless a recipe names a precision
    assert specs[1].config == {"amp": "off", "epochs": 5, "lr": 0.02, "seed": 0}
    assert specs[3].result_path == str(tmp_path / "runs" / "fake" / "b" / "seed1.json")
    quick = plan([_recipe()], tmp_path, seeds=1, quick=True)
    assert quick[0].config == {"amp": "off", "epochs": 1, "lr": 0.01, "seed": 0}


def test_a_recipe_that_names_a_precision_keeps_it(tmp_path: Path) -> None:
    recipe = recipe_from_dict({
        "name": "bf", "kind": "image", "base": {"epochs": 5, "amp": "bf16"}, "variants": {"a": {}, "b": {"amp": "auto"}},
        "metrics": ["test_acc1"],
        "claims": [{"text": "b beats a", "metric": "test_acc1", "variant": "b", "against": "a", "expect": "higher"}],
    })
    specs = plan([recipe], tmp_path, seeds=1)
    assert [s.config["amp"] for s in specs] == ["bf16", "auto"]


def test_plan_runs_every_family_and_quick_defaults_to_two_seeds(tmp_path: Path) -> None:
    recipe = recipe_from_dict({
        "name": "fam", "kind": "image", "seeds": 5, "base": {"epochs": 5, "model_args": {"depth": 2}},
        "quick": {"epochs": 1}, "families": {"vit": {"model": "v", "model_args": {"depth": 4}}, "cnn": {"model": "c", "model_args": {}}},
        "variants": {"a": {}, "b": {"model_args": {"act": "mish"}}}, "metrics": ["test_acc1"],
    })
    specs = plan([recipe], tmp_path)
    assert len(specs) == 5 * 4
    assert [(s.family, s.variant, s.seed) for s in specs[:4]] == [("vit", "a", 0), ("vit", "b", 0), ("cnn", "a", 0), ("cnn", "b", 0)]
    assert specs[1].config == {"amp": "off", "epochs": 5, "model": "v", "model_args": {"depth": 4, "act": "mish"}, "seed": 0}
    assert specs[3].config == {"amp": "off", "epochs": 5, "model": "c", "model_args": {"act": "mish"}, "seed": 0}
    assert specs[3].result_path == str(tmp_path / "runs" / "fam" / "cnn" / "b" / "seed0.json") and specs[3].arm == "cnn/b"
    quick = plan([recipe], tmp_path, quick=True)
    assert sorted({s.seed for s in quick}) == [0, 1] and all(s.config["epochs"] == 1 for s in quick)


def test_killed_run_resumes_without_redoing_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = plan([_recipe()], tmp_path, seeds=3)
    first = FakeTraining(stop_at=3)  # killed while doing the third run
    monkeypatch.setitem(runner.EXECUTORS, "image", first)
    with pytest.raises(KeyboardInterrupt):
        run_all(specs, jobs=1, progress=False)
    assert first.calls == [("a", 0), ("b", 0), ("a", 1)]
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert written == ["runs/fake/a/seed0.json", "runs/fake/b/seed0.json"]

    second = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", second)
    results = run_all(specs, jobs=1, progress=False)
    assert second.calls == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]  # the two finished runs were not redone
    assert [(r["variant"], r["seed"]) for r in results] == [(s.variant, s.seed) for s in specs]
    assert results[1]["metrics"] == {"test_acc1": 2.0}

    third = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", third)
    run_all(specs, jobs=1, progress=False)
    assert third.calls == []


def test_a_changed_config_redoes_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    run_all(plan([_recipe(epochs=5)], tmp_path, seeds=1), progress=False)
    run_all(plan([_recipe(epochs=5)], tmp_path, seeds=1, quick=True), progress=False)  # --quick: other config
    assert len(fake.calls) == 4
    assert load_result(plan([_recipe(epochs=5)], tmp_path, seeds=1)[0]) is None  # overwritten by the quick run


def test_damaged_result_file_is_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    specs = plan([_recipe()], tmp_path, seeds=1)
    run_all(specs, progress=False)
    Path(specs[0].result_path).write_text("{not json")
    run_all(specs, progress=False)
    assert fake.calls == [("a", 0), ("b", 0), ("a", 0)]
    assert json.loads(Path(specs[0].result_path).read_text())["metrics"] == {"test_acc1": 1.0}


def test_a_run_that_fails_with_a_vitlab_error_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vitlab.train.engine import NonFiniteLossError

    def diverges(spec: runner.RunSpec) -> dict[str, float]:
        raise NonFiniteLossError("loss became nan at step 3")

    monkeypatch.setitem(runner.EXECUTORS, "image", diverges)
    result = runner.run_one(plan([_recipe()], tmp_path, seeds=1)[0])
    assert result["metrics"] == {} and "nan at step 3" in result["error"]


_TRANSFER = {
    "name": "transfer",
    "kind": "image",
    "pretrain": {"config": {"dataset": "mnist5k", "epochs": 9, "lr": 0.03}, "quick": {"epochs": 1}},
    "base": {"epochs": 5, "lr": 0.01},
    "variants": {"finetuned": {"init": "pretrain"}, "scratch": {}},
    "metrics": ["test_acc1"],
}


def _transfer_recipe():
    return recipe_from_dict(_TRANSFER)


def test_a_shared_pretraining_is_planned_once_first_and_fills_init(tmp_path: Path) -> None:
    specs = plan([_transfer_recipe()], tmp_path, seeds=2)
    assert [(s.variant, s.seed, s.stage) for s in specs] == [
        ("pretrain", 0, 0), ("finetuned", 0, 1), ("scratch", 0, 1), ("finetuned", 1, 1), ("scratch", 1, 1)]
    pretrain_dir = str(tmp_path / "runs" / "transfer" / "pretrain" / "seed0")
    assert specs[0].run_dir == pretrain_dir and specs[0].config == {"amp": "off", "dataset": "mnist5k", "epochs": 9, "lr": 0.03, "seed": 0}
    assert specs[1].config["init"] == specs[3].config["init"] == pretrain_dir and "init" not in specs[2].config
    assert plan([_transfer_recipe()], tmp_path, seeds=1, quick=True)[0].config["epochs"] == 1


def test_the_pretraining_stage_finishes_before_its_users_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    specs = plan([_transfer_recipe()], tmp_path, seeds=2)
    specs = specs[1:3] + specs[:1] + specs[3:]  # even listed later, stage 0 runs first
    run_all(specs, jobs=1, progress=False)
    assert fake.calls[0] == ("pretrain", 0) and len(fake.calls) == 5
    run_all(specs, jobs=1, progress=False)  # everything reused, the pre-training included
    assert len(fake.calls) == 5


def test_init_pretrain_without_a_pretraining_is_refused() -> None:
    from vitlab.errors import ConfigError

    with pytest.raises(ConfigError, match="says init: pretrain but the recipe has no 'pretrain'"):
        recipe_from_dict({"name": "x", "kind": "image", "variants": {"a": {"init": "pretrain"}}, "metrics": ["test_acc1"]})
    with pytest.raises(ConfigError, match="unknown pretrain key 'confg'"):
        recipe_from_dict({"name": "x", "kind": "image", "pretrain": {"config": {}, "confg": {}}, "variants": {"a": {}},
                          "metrics": ["test_acc1"]})


# ------------------------------------------------------------------------------------------ shared runs (issue 29)
def _pair(second_variants: dict, name: str = "two"):
    """Recipe "one" (a: the base, b: lr 0.02) and a second recipe on the same base with ``second_variants``."""
    def recipe(recipe_name: str, variants: dict):
        return recipe_from_dict({"name": recipe_name, "kind": "image", "base": {"epochs": 5, "lr": 0.01},
                                 "variants": variants, "metrics": ["test_acc1"]})
    return [recipe("one", {"a": {}, "b": {"lr": 0.02}}), recipe(name, second_variants)]


def test_identical_arms_of_two_recipes_are_trained_once_and_both_recipes_get_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: the issue's rule. two/same is one/a as written; two/b_default is one/b plus mix_prob: 1.0 (its
    ImageConfig default) and eval_every: 3 (a key that cannot change the result): 4 specs, 2 trainings."""
    from vitlab.reproduce.report import shared_results

    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    specs = plan(_pair({"same": {}, "b_default": {"lr": 0.02, "mix_prob": 1.0, "eval_every": 3}}), tmp_path, seeds=1)
    assert len(specs) == 4 and len({s.key for s in specs}) == 2
    results = run_all(specs, progress=False)
    assert fake.calls == [("a", 0), ("b", 0)]
    assert [(r["recipe"], r["variant"], r["metrics"]["test_acc1"]) for r in results] == [
        ("one", "a", 1.0), ("one", "b", 2.0), ("two", "same", 1.0), ("two", "b_default", 2.0)]
    assert results[3]["config"]["mix_prob"] == 1.0  # each recipe gets the result under its own config
    # one run folder and one result file, under the first recipe's name; the file says who shares it
    assert specs[2].run_dir == str(tmp_path / "runs" / "one" / "a" / "seed0") and specs[2].result_path == specs[0].result_path
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")) == [
        "runs/one/a/seed0.json", "runs/one/b/seed0.json"]
    stored = json.loads(Path(specs[1].result_path).read_text())
    assert stored["shared_by"] == [{"recipe": "one", "arm": "b"}, {"recipe": "two", "arm": "b_default"}]
    assert stored["key"] == specs[1].key == specs[3].key
    assert shared_results(results) == ["one a = two same (seed 0)", "one b = two b_default (seed 0)"]
    run_all(specs, progress=False)  # resuming: everything finished, nothing trained again
    assert len(fake.calls) == 2


def test_a_key_that_changes_results_keeps_runs_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reference: lr 0.03 is not one/b's 0.02, and label_smoothing 0.0 is not the default 0.1: trained apart."""
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    specs = plan(_pair({"lr3": {"lr": 0.03}, "no_ls": {"label_smoothing": 0.0}}), tmp_path, seeds=2)
    results = run_all(specs, progress=False)
    assert len(fake.calls) == len(specs) == 8 and len({s.result_path for s in specs}) == 8
    assert not any("shared_by" in r for r in results)
    assert [r["metrics"]["test_acc1"] for r in results if r["variant"] == "lr3"] == [3.0, 4.0]


def test_a_shared_run_is_found_whichever_recipes_a_later_call_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: the runs of the first call. A later call naming more recipes, or fewer, trains nothing again."""
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    one, two = _pair({"same": {}})
    run_all(plan([two], tmp_path / "fewer_first", seeds=1), progress=False)  # two/same lives in two's folder
    specs = plan([one, two], tmp_path / "fewer_first", seeds=1)
    assert specs[0].run_dir == str(tmp_path / "fewer_first" / "runs" / "two" / "same" / "seed0")
    results = run_all(specs, progress=False)
    assert fake.calls == [("same", 0), ("b", 0)] and results[0]["metrics"] == {"test_acc1": 1.0}
    assert results[0]["shared_by"] == [{"recipe": "one", "arm": "a"}, {"recipe": "two", "arm": "same"}]

    run_all(plan([one, two], tmp_path / "all_first", seeds=1), progress=False)
    (alone,) = plan([two], tmp_path / "all_first", seeds=1)  # two/same alone: its run is one/a's
    assert alone.run_dir == str(tmp_path / "all_first" / "runs" / "one" / "a" / "seed0")
    (result,) = run_all([alone], progress=False)
    assert len(fake.calls) == 4 and result["recipe"] == "two" and result["metrics"] == {"test_acc1": 1.0}
    assert result["shared_by"] == [{"recipe": "two", "arm": "same"}, {"recipe": "one", "arm": "a"}]


def test_a_result_written_before_runs_had_keys_is_reused_by_its_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: the runner before issue 29, whose result files have no key and were matched by config."""
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    specs = plan([_recipe()], tmp_path, seeds=1)
    run_all(specs, progress=False)
    for spec in specs:
        path = Path(spec.result_path)
        old = {k: v for k, v in json.loads(path.read_text()).items() if k != "key"}
        path.write_text(json.dumps(old))
    run_all(plan([_recipe()], tmp_path, seeds=1), progress=False)
    assert len(fake.calls) == 2
    Path(specs[0].result_path).write_text(json.dumps({**old, "config": {"lr": 0.5}}))  # another run's config
    run_all(plan([_recipe()], tmp_path, seeds=1), progress=False)
    assert fake.calls[2:] == [("a", 0)]


def test_two_recipes_with_one_pretraining_share_it_and_their_fine_tuning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: a fine-tuning run is keyed by the pre-training's key, not by the pre-training's folder."""
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    second = recipe_from_dict({**_TRANSFER, "name": "transfer2"})
    specs = plan([_transfer_recipe(), second], tmp_path, seeds=1)
    pretrain_dir = str(tmp_path / "runs" / "transfer" / "pretrain" / "seed0")
    assert [s.config.get("init") for s in specs if s.variant == "finetuned"] == [pretrain_dir, pretrain_dir]
    run_all(specs, progress=False)
    assert fake.calls == [("pretrain", 0), ("finetuned", 0), ("scratch", 0)]
    longer = recipe_from_dict({**_TRANSFER, "name": "transfer2",
                               "pretrain": {"config": {**_TRANSFER["pretrain"]["config"], "epochs": 10}}})
    specs = plan([_transfer_recipe(), longer], tmp_path, seeds=1)
    assert len({s.key for s in specs if s.variant == "finetuned"}) == 2
    run_all(specs, progress=False)  # its own pre-training, then a fine-tuning from it; scratch is still shared
    assert fake.calls[3:] == [("pretrain", 0), ("finetuned", 0)]


def test_a_changed_pretraining_redoes_the_fine_tuning_that_starts_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: the same folder path (``init``) now holds another pre-training, so the fine-tuning is redone."""
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    run_all(plan([_transfer_recipe()], tmp_path, seeds=1), progress=False)
    changed = recipe_from_dict({**_TRANSFER, "pretrain": {"config": {**_TRANSFER["pretrain"]["config"], "lr": 0.01}}})
    run_all(plan([changed], tmp_path, seeds=1), progress=False)
    assert fake.calls == [("pretrain", 0), ("finetuned", 0), ("scratch", 0), ("pretrain", 0), ("finetuned", 0)]


def test_a_finished_run_in_a_place_that_now_asks_for_another_run_is_not_shared_from_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: one/a's folder holds the run two/same asks for, but one/a now asks for lr 0.05: each is trained in
    its own place (sharing the folder would hand one of them the other's result)."""
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    one, two = _pair({"same": {}})
    run_all(plan([one], tmp_path, seeds=1), progress=False)
    changed = recipe_from_dict({"name": "one", "kind": "image", "base": {"epochs": 5, "lr": 0.01},
                                "variants": {"a": {"lr": 0.05}, "b": {"lr": 0.02}}, "metrics": ["test_acc1"]})
    specs = plan([changed, two], tmp_path, seeds=1)
    assert len({s.result_path for s in specs}) == 3
    results = run_all(specs, progress=False)
    assert fake.calls[2:] == [("a", 0), ("same", 0)]
    assert [r["metrics"]["test_acc1"] for r in results] == [5.0, 2.0, 1.0]


# ------------------------------------------------------------------------------------------ teacher arms (DeiT, issue 29)
_DEIT = {
    "name": "deit", "kind": "image", "base": {"epochs": 5, "lr": 0.01},
    # the student is listed before its teacher: the order of the YAML must not matter
    "variants": {"student": {"lr": 0.03, "distill": {"teacher": "teacher", "kind": "hard"}}, "teacher": {"lr": 0.02},
                 "plain": {}},
    "metrics": ["test_acc1"],
}


class ThreadPool(ThreadPoolExecutor):
    """ProcessPoolExecutor's signature on threads: the parallel path of run_all, with the fake training patched in."""

    def __init__(self, max_workers: int, mp_context: object = None) -> None:
        super().__init__(max_workers)


class TeacherWatch(FakeTraining):
    """FakeTraining that records, when a student starts, whether its teacher's result file exists; a teacher is
    slow (so that a student started early would be seen) and fails on the seeds of ``failing``."""

    def __init__(self, failing: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.failing = failing
        self.teacher_ready: dict[int, bool] = {}

    def __call__(self, spec: runner.RunSpec) -> dict[str, float]:
        if "distill" in spec.config:
            self.teacher_ready[spec.seed] = Path(spec.config["distill"]["teacher"] + ".json").is_file()
        if spec.variant == "teacher":
            time.sleep(0.05)
            if spec.seed in self.failing:
                from vitlab.train.engine import NonFiniteLossError

                self.calls.append((spec.variant, spec.seed))
                raise NonFiniteLossError("loss became nan at step 3")
        return super().__call__(spec)


def test_each_seeds_student_is_planned_with_the_teacher_of_its_own_seed(tmp_path: Path) -> None:
    """Reference: the issue's pairing (seed s distils from the teacher trained with seed s); two seeds, two teachers."""
    specs = plan([recipe_from_dict(_DEIT)], tmp_path, seeds=2)
    assert [(s.variant, s.seed) for s in specs] == [(v, k) for k in (0, 1) for v in ("student", "teacher", "plain")]
    by = {(s.variant, s.seed): s for s in specs}
    for seed in (0, 1):
        student, teacher = by["student", seed], by["teacher", seed]
        assert teacher.run_dir == str(tmp_path / "runs" / "deit" / "teacher" / f"seed{seed}")
        assert student.config["distill"] == {"teacher": teacher.run_dir, "kind": "hard"}
        assert student.needs == (teacher.result_path,) and teacher.needs == () == by["plain", seed].needs
        assert teacher.config == {"amp": "off", "epochs": 5, "lr": 0.02, "seed": seed}  # an ordinary arm
    assert by["teacher", 0].run_dir != by["teacher", 1].run_dir


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_student_starts_only_after_the_teacher_of_its_seed_has_a_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """Reference: the teacher's result file, looked for when each student starts (jobs=2: the parallel scheduler,
    on threads, with every teacher slower than the plain arms)."""
    fake = TeacherWatch()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    monkeypatch.setattr(runner, "ProcessPoolExecutor", ThreadPool)
    specs = plan([recipe_from_dict(_DEIT)], tmp_path, seeds=2)
    results = run_all(specs, jobs=jobs, progress=False)
    assert sorted(fake.calls) == sorted((s.variant, s.seed) for s in specs) and fake.teacher_ready == {0: True, 1: True}
    for seed in (0, 1):
        assert fake.calls.index(("teacher", seed)) < fake.calls.index(("student", seed))
    if jobs == 1:  # in plan order otherwise: the student waits for the teacher listed after it, no longer
        assert fake.calls[:3] == [("teacher", 0), ("student", 0), ("plain", 0)]
    assert [r["metrics"]["test_acc1"] for r in results if r["variant"] == "teacher"] == [2.0, 3.0]  # reported


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_teacher_fails_its_student_in_one_line_naming_the_teacher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """Reference: the issue's rule. Seed 1's teacher diverges: its student is not trained and fails in one line; seed 0
    is untouched. The student's failure is not written, so once the teacher's run is redone the student trains."""
    fake = TeacherWatch(failing=(1,))
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    monkeypatch.setattr(runner, "ProcessPoolExecutor", ThreadPool)
    specs = plan([recipe_from_dict(_DEIT)], tmp_path, seeds=2)
    results = {(r["variant"], r["seed"]): r for r in run_all(specs, jobs=jobs, progress=False)}
    error = results["student", 1]["error"]
    assert error == ("teacher deit/teacher/seed1 failed (NonFiniteLossError: loss became nan at step 3), so this run "
                     "was not trained")
    assert results["student", 1]["metrics"] == {} and ("student", 1) not in fake.calls
    assert results["student", 0]["error"] is None and results["plain", 1]["error"] is None
    student1 = next(s for s in specs if (s.variant, s.seed) == ("student", 1))
    assert not Path(student1.result_path).exists()
    Path(student1.needs[0]).unlink()  # the teacher's failed result removed: both are redone
    again = TeacherWatch()
    monkeypatch.setitem(runner.EXECUTORS, "image", again)
    results = {(r["variant"], r["seed"]): r for r in run_all(specs, jobs=jobs, progress=False)}
    assert again.calls == [("teacher", 1), ("student", 1)] and results["student", 1]["error"] is None


def test_a_student_whose_teacher_is_not_in_the_call_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: specs filtered by hand (the student without its teacher): nothing could ever give it a result."""
    fake = FakeTraining()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    student = plan([recipe_from_dict(_DEIT)], tmp_path, seeds=1)[0]
    (result,) = run_all([student], progress=False)
    assert fake.calls == [] and result["error"] == (
        "teacher " + student.needs[0] + " is not among the runs of this call, so this run was not trained")


def test_a_students_key_follows_its_teachers_config_not_its_folder(tmp_path: Path) -> None:
    """Reference: the issue's rule for ``init``, applied to ``distill.teacher``."""
    def keys(recipe: dict, out: Path) -> dict[str, str]:
        return {s.variant: s.key for s in plan([recipe_from_dict(recipe)], out, seeds=1)}

    first = keys(_DEIT, tmp_path / "a")
    assert keys(_DEIT, tmp_path / "b") == first  # another folder, the same runs
    longer = keys({**_DEIT, "variants": {**_DEIT["variants"], "teacher": {"lr": 0.02, "epochs": 6}}}, tmp_path / "a")
    assert longer["student"] != first["student"] and longer["teacher"] != first["teacher"]
    assert longer["plain"] == first["plain"]


def test_a_teacher_shared_with_another_recipe_teaches_from_the_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: the shipped deit recipe beside a recipe (planned first) whose arm ``copy`` has the deit teacher's
    config: that run is trained once, and the student is pointed at, and waits for, the other recipe's folder."""
    from vitlab.reproduce.recipes import load_recipes

    (deit,) = load_recipes(["deit"])
    teacher_config = {k: v for k, v in deit.config("teacher", seed=0, quick=False).items() if k != "seed"}
    other = recipe_from_dict({
        "name": "other", "kind": "image", "seeds": 1, "metrics": ["test_acc1"], "base": teacher_config,
        "variants": {"copy": {}, "unsmoothed": {"label_smoothing": 0.0}},
        "claims": [{"text": "t", "metric": "test_acc1", "variant": "copy", "against": "unsmoothed", "expect": "higher"}],
    })
    specs = plan([other, deit], tmp_path, seeds=1)
    by = {(s.recipe, s.arm): s for s in specs}
    teacher, copy, student = by["deit", "teacher"], by["other", "copy"], by["deit", "deit"]
    assert teacher.key == copy.key and teacher.run_dir == copy.run_dir
    assert teacher.run_dir == str(tmp_path / "runs" / "other" / "copy" / "seed0")
    assert student.config["distill"]["teacher"] == teacher.run_dir and student.needs == (copy.result_path,)
    fake = TeacherWatch()
    monkeypatch.setitem(runner.EXECUTORS, "image", fake)
    run_all(specs, progress=False)
    assert len(fake.calls) == 4 and ("teacher", 0) not in fake.calls and fake.teacher_ready == {0: True}


def test_a_killed_student_whose_teacher_changed_starts_over(tmp_path: Path) -> None:
    """Reference: the teacher's weights' SHA-256 recorded in the student's run.json (vitlab.train.tasks.teacher)."""
    from vitlab.io import sha256_file
    from vitlab.train.runs import RUN_INFO_FILE, WEIGHTS_FILE
    from vitlab.train.tasks.image_config import config_from_dict

    teacher, student = tmp_path / "teacher", tmp_path / "student"
    teacher.mkdir()
    student.mkdir()
    (teacher / WEIGHTS_FILE).write_bytes(b"weights")
    (student / RUN_INFO_FILE).write_text(json.dumps({"teacher": {"sha256": sha256_file(teacher / WEIGHTS_FILE)}}))
    cfg = config_from_dict({"distill": {"teacher": str(teacher)}})
    assert runner._same_teacher(cfg, student) and runner._same_teacher(config_from_dict({}), student)
    (teacher / WEIGHTS_FILE).write_bytes(b"retrained")
    assert not runner._same_teacher(cfg, student)
    (student / RUN_INFO_FILE).write_text("{}")
    assert not runner._same_teacher(cfg, student)
