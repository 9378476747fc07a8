"""`vitlab reproduce` end to end: the CLI runs real recipes and writes report.md / report.html / results.json.

Reference: the Legendre recipe's published tutorial numbers (docs/autograd.md) for the fast test; for the slow
one, the report's numbers are recomputed from results.json with the stats module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitlab.cli import main


def test_cli_legendre_recipe_writes_a_report_with_held_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    assert main(["reproduce", "legendre", "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    assert "report.md" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert md.count("| **held** |") == 6  # three checks, in the deterministic-checks table and in the section
    assert "No testable statistical claim in this run." in md and "3 deterministic checks" in md
    # pre-registration: the protocol's hash recorded when the run started, and judged in the report
    from vitlab.reproduce.protocol import protocol_digest
    from vitlab.reproduce.recipes import default_recipe_dir

    info = json.loads((out / "run_info.json").read_text())
    assert info["protocol_sha256"] == protocol_digest(default_recipe_dir()) and info["started_at"]
    assert f"sha256 `{info['protocol_sha256']}`" in md
    assert sum(line.startswith(("**pre-registered**: ", "**not pre-registered**: ")) for line in md.splitlines()) == 1
    (result,) = json.loads((out / "results.json").read_text())
    assert result["metrics"]["b"] == pytest.approx(-2.208526849746704, rel=1e-6)
    assert (out / "legendre_fit.png").is_file() and "data:image/png;base64," in (out / "report.html").read_text()
    # a second call reuses the finished run (same result file, untouched)
    stamp = (out / "runs" / "legendre" / "tutorial" / "seed0.json").stat().st_mtime_ns
    assert main(["reproduce", "legendre", "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    assert (out / "runs" / "legendre" / "tutorial" / "seed0.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "run_info.json").read_text())["started_at"] == info["started_at"]  # the first start kept


def test_cli_reproduce_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "cutmx", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitlab: error: unknown reproduce recipe 'cutmx'; did you mean 'cutmix'") and err.count("\n") == 1
    assert main(["reproduce", "legendre", "--seeds", "0", "--out", str(tmp_path / "y")]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_quick_label_smoothing_recipe_end_to_end_on_both_families(tmp_path: Path) -> None:
    from vitlab.reproduce.stats import mean_interval, paired_interval

    out = tmp_path / "ls"
    assert main(["reproduce", "label_smoothing", "--quick", "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert sorted((r["family"], r["variant"], r["seed"]) for r in results) == [
        (f, v, k) for f in ("cnn", "vit") for v in ("no_smoothing", "smoothing") for k in (0, 1)]  # --quick: 2 seeds
    assert all(r["error"] is None and r["config"]["epochs"] == 2 for r in results)
    for r in results:  # the regime: clean training accuracy minus validation accuracy
        m = r["metrics"]
        assert m["train_val_gap"] == pytest.approx(m["train_acc1"] - m["val_acc1"]) and m["temperature"] > 0
    md = (out / "report.md").read_text()
    def accs(family: str, variant: str) -> list[float]:
        return [r["metrics"]["test_acc1"] for r in sorted(results, key=lambda r: r["seed"])
                if r["family"] == family and r["variant"] == variant]
    iv = mean_interval(accs("cnn", "smoothing"))
    assert f"{iv.mean:.2f} ± {iv.half_width:.2f}" in md
    diff = paired_interval(accs("vit", "smoothing"), accs("vit", "no_smoothing"), 0.90)  # TOST: the 90% interval
    assert f"{diff.mean:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}] (90%)" in md  # the claim's paired interval
    assert "| [vit] Smoothing lowers the ECE (before temperature scaling) | overconfident: " in md  # regime table
    assert (out / "forest.png").is_file()
    assert "Do the model families agree?" in md
    assert (out / "label_smoothing_penultimate.png").is_file()
    assert "(label_smoothing_penultimate.png)" in md


@pytest.mark.slow
def test_quick_data_size_recipe_uses_train_per_class_and_cross_family_claims(tmp_path: Path) -> None:
    from vitlab.reproduce.stats import mean_interval

    out = tmp_path / "size"
    assert main(["reproduce", "data_size", "--quick", "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 2 * 2 * 2 and all(r["error"] is None for r in results)  # families × sizes × seeds
    value = {(r["family"], r["variant"], r["seed"]): r["metrics"]["test_acc1"] for r in results}
    # the contrast claim by hand: (vit − cnn at 100 %) − (vit − cnn at 10 %), per seed
    per_seed = [(value["vit", "frac100", k] - value["cnn", "frac100", k]) - (value["vit", "frac10", k] - value["cnn", "frac10", k])
                for k in (0, 1)]
    iv = mean_interval(per_seed)
    md = (out / "report.md").read_text()
    assert f"{iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}] (95%)" in md
    frac10 = json.loads((out / "runs" / "data_size" / "cnn" / "frac10" / "seed0" / "run.json").read_text())
    assert frac10["splits"]["train"] == 35 * 10  # train_per_class 35 of each of the 10 digit classes


def test_a_shared_pretraining_is_fine_tuned_from_end_to_end(tmp_path: Path) -> None:
    """Real runs: a 1-epoch pre-training on the digits, then one fine-tuning run that starts from it."""
    import json

    import yaml

    from vitlab.reproduce import reproduce

    tiny = {"model_args": {"depth": 1, "embed_dim": 32, "num_heads": 2}, "epochs": 1, "threads": 1}
    recipe = {
        "name": "tiny_transfer", "kind": "image", "seeds": 1, "metrics": ["test_acc1"],
        "pretrain": {"config": {"dataset": "digits", "model": "vit_digits_patch2_8", **tiny}},
        "base": {"dataset": "digits", "train_per_class": 10, "batch_size": 20, "epochs": 1, "threads": 1},
        "variants": {"finetuned": {"init": "pretrain", "model_args": {"patch_size": 4}}},
    }
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    reproduce(None, tmp_path / "out", recipe_dir=folder, progress=False, jobs=1)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["variant"], r["error"]) for r in results] == [("pretrain", None), ("finetuned", None)]
    info = json.loads((tmp_path / "out" / "runs" / "tiny_transfer" / "finetuned" / "seed0" / "run.json").read_text())
    assert info["init"]["path"] == str(tmp_path / "out" / "runs" / "tiny_transfer" / "pretrain" / "seed0")
    assert info["init"]["report"]["resampled"] == ["patch_embed.proj.weight", "pos_embed.weight"]
    assert info["splits"]["train"] == 100


def test_a_killed_sequence_run_continues_from_its_checkpoint_and_matches_a_straight_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference: the same spec run straight through in another folder; the resumed run must give the same
    metrics (seeded data, init and dropout), and must have resumed rather than started over."""
    from vitlab.reproduce import runner
    from vitlab.train import engine

    config = {"dataset": "reverse", "min_len": 1, "max_len": 5, "num_train": 200, "num_test": 20, "d_model": 16,
              "num_heads": 2, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_ff": 32, "batch_size": 16,
              "steps": 12, "warmup": 4, "eval_every": 6, "checkpoint_every": 1, "threads": 1, "seed": 0}

    def spec(folder: str) -> runner.RunSpec:
        return runner.RunSpec(recipe="r", variant="v", seed=0, kind="seq2seq", config=config, run_dir=str(tmp_path / folder),
                              result_path=str(tmp_path / f"{folder}.json"))

    straight = runner.run_one(spec("straight"))
    real_save, real_train = engine.save_checkpoint, engine.train
    resumes: list[bool] = []

    def crash_after_first_checkpoint(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - save_checkpoint's signature
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    def spy_train(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - train's signature
        resumes.append(kwargs["resume"])
        assert kwargs["plots"] is False  # reproduce runs want numbers, not per-run figures
        return real_train(*args, **kwargs)

    monkeypatch.setattr(engine, "save_checkpoint", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        runner.run_one(spec("killed"))
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    monkeypatch.setattr(engine, "train", spy_train)
    resumed = runner.run_one(spec("killed"))
    assert resumes == [True]
    for name in ("seq_accuracy", "perplexity", "token_accuracy"):
        assert resumed["metrics"][name] == pytest.approx(straight["metrics"][name], rel=1e-6), name
    assert not list((tmp_path / "killed").glob("*.png"))  # no plots in a reproduce run


def test_quick_deit_recipe_distils_each_seed_from_the_teacher_of_that_seed(tmp_path: Path) -> None:
    """Real runs, two at a time: `--quick deit` (2 seeds of 2 epochs on the 8×8 digits). Reference: each student's
    run.json records its teacher (vitlab.train.tasks.teacher): the teacher arm's run of the same seed, with the
    SHA-256 of that run's weights; the report tests both claims."""
    from vitlab.io import sha256_file
    from vitlab.reproduce.recipes import load_recipes
    from vitlab.train.runs import WEIGHTS_FILE

    out = tmp_path / "deit"
    assert main(["reproduce", "deit", "--quick", "--out", str(out), "--no-progress", "--jobs", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert sorted((r["variant"], r["seed"]) for r in results) == [(v, k) for v in ("deit", "teacher", "vit") for k in (0, 1)]
    assert all(r["error"] is None for r in results)
    for seed in (0, 1):
        teacher = out / "runs" / "deit" / "teacher" / f"seed{seed}"
        record = json.loads((out / "runs" / "deit" / "deit" / f"seed{seed}" / "run.json").read_text())["teacher"]
        assert record["path"] == str(teacher) and record["sha256"] == sha256_file(teacher / WEIGHTS_FILE)
        assert record["distill"] == {"teacher": str(teacher), "kind": "hard", "alpha": 0.5, "tau": 1.0}
    md = (out / "report.md").read_text()
    (deit,) = load_recipes(["deit"])
    assert all(f"| {claim.text} |" in md for claim in deit.claims)
