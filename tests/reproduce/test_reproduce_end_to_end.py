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
    assert md.count("| **held** |") == 6  # three claims, in the summary table and in the section
    (result,) = json.loads((out / "results.json").read_text())
    assert result["metrics"]["b"] == pytest.approx(-2.208526849746704, rel=1e-6)
    assert (out / "legendre_fit.png").is_file() and "data:image/png;base64," in (out / "report.html").read_text()
    # a second call reuses the finished run (same result file, untouched)
    stamp = (out / "runs" / "legendre" / "tutorial" / "seed0.json").stat().st_mtime_ns
    assert main(["reproduce", "legendre", "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    assert (out / "runs" / "legendre" / "tutorial" / "seed0.json").stat().st_mtime_ns == stamp


def test_cli_reproduce_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "cutmx", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitlab: error: unknown reproduce recipe 'cutmx'; did you mean 'cutmix'") and err.count("\n") == 1
    assert main(["reproduce", "legendre", "--seeds", "0", "--out", str(tmp_path / "y")]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_quick_label_smoothing_recipe_end_to_end(tmp_path: Path) -> None:
    from vitlab.reproduce.stats import mean_interval

    out = tmp_path / "ls"
    assert main(["reproduce", "label_smoothing", "--quick", "--seeds", "2", "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert sorted((r["variant"], r["seed"]) for r in results) == [
        ("no_smoothing", 0), ("no_smoothing", 1), ("smoothing", 0), ("smoothing", 1)]
    assert all(r["error"] is None and r["config"]["epochs"] == 4 for r in results)
    md = (out / "report.md").read_text()
    accs = [r["metrics"]["test_acc1"] for r in results if r["variant"] == "smoothing"]
    iv = mean_interval(accs)
    assert f"{iv.mean:.2f} ± {iv.half_width:.2f}" in md
    assert (out / "label_smoothing_penultimate.png").is_file()
    assert "(label_smoothing_penultimate.png)" in md


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
