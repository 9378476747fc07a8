"""vitlab predict over files, folders and globs, with a run folder and with its ONNX export; the rows, the counts of
unreadable files, CSV / JSON lines; and the ten-line onnxruntime snippet of docs/deploy.md (which must not import
vitlab) classifying a PNG as `vitlab predict` does."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.deploy.conftest import write_test_pngs
from vitlab.cli import main
from vitlab.deploy.export import export_run
from vitlab.deploy.predict import Predictor, expand_inputs, predict_files
from vitlab.deploy.preprocessing import preprocess_file
from vitlab.errors import ConfigError
from vitlab.train.tasks.image import load_run, run_transform

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(deploy_runs, tmp_path_factory) -> dict[str, Path]:
    """The ONNX export of the memory run (mnist, conv stem) and of the streamed photos run."""
    folder = tmp_path_factory.mktemp("exports")
    return {kind: export_run(deploy_runs[kind], "onnx", folder / f"{kind}.onnx") and folder / f"{kind}.onnx"
            for kind in ("mnist-conv-avg", "photos-stream")}


def _rows(source: Path, inputs: list[str], tmp_path: Path, name: str) -> list[dict]:
    out = tmp_path / f"{name}.jsonl"
    assert main(["predict", str(source), *inputs, "--topk", "3", "--batch-size", "4", "--out", str(out)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_expand_inputs_walks_folders_in_order_and_expands_globs(tmp_path) -> None:
    for name in ("b/2.png", "b/1.jpg", "a/x.png", "a/notes.txt", "top.webp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in expand_inputs([str(tmp_path)])] == [
        "top.webp", "a/x.png", "b/1.jpg", "b/2.png"]
    assert [p.name for p in expand_inputs([str(tmp_path / "**" / "*.png")])] == ["x.png", "2.png"]
    assert [p.name for p in expand_inputs([str(tmp_path / "missing.png")])] == ["missing.png"]  # reported in its row
    with pytest.raises(ConfigError, match=r"nothing\*\.png matches no file"):
        list(expand_inputs([str(tmp_path / "nothing*.png")]))


@pytest.mark.parametrize("kind", ["mnist-conv-avg", "photos-stream"])
def test_a_run_and_its_onnx_export_give_the_same_rows(deploy_runs, exported, tmp_path, kind) -> None:
    run = deploy_runs[kind]
    if kind == "photos-stream":  # photos of any size and mode, resized and cropped by the run's evaluation pipeline
        _, cfg, _ = load_run(run)
        images = tmp_path / "images"
        for i, photo in enumerate(sorted(Path(cfg.data_root).rglob("*.*"))[:9]):
            target = images / ("sub" if i % 2 else "") / photo.name.replace(".", f"_{i}.")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(photo.read_bytes())
    else:
        images = tmp_path / "images"
        write_test_pngs(run, images, 9)
    (images / "broken.png").write_text("not a png")
    mine, theirs = _rows(run, [str(images)], tmp_path, "run"), _rows(exported[kind], [str(images)], tmp_path, "onnx")
    assert [r["path"] for r in mine] == [r["path"] for r in theirs] and len(mine) == 10
    for a, b in zip(mine, theirs):
        if "error" in a:
            assert a == b and "broken.png: not an image Pillow can read" in a["error"]
            continue
        assert [c for c, _ in a["top"]] == [c for c, _ in b["top"]], (a, b)
        assert [p for _, p in a["top"]] == pytest.approx([p for _, p in b["top"]], abs=1e-5)


def test_the_rows_are_the_runs_own_evaluation_of_the_image(deploy_runs, tmp_path) -> None:
    # Reference: the run's model on read_image + run_transform, as `vitlab eval` feeds it.
    run = deploy_runs["mnist-conv-avg"]
    paths = write_test_pngs(run, tmp_path / "png", 5)
    model, cfg, info = load_run(run)
    rows: list[dict] = []
    summary = predict_files(Predictor.from_run(run), paths, rows.append, topk=2, batch_size=2)
    assert summary.images == 5 and summary.failed == 0
    for row, path in zip(rows, paths):
        with torch.no_grad():
            probs = model(run_transform(cfg, info)(preprocess_file(path, Predictor.from_run(run).spec)[None], None,
                                                   train=False)).softmax(1)[0]
        top = probs.topk(2)
        assert [c for c, _ in row["top"]] == [info["classes"][i] for i in top.indices.tolist()]
        assert [p for _, p in row["top"]] == pytest.approx(top.values.tolist(), abs=1e-6)


def test_csv_rows_count_unreadable_files_and_the_batch_goes_on(deploy_runs, tmp_path, capsys) -> None:
    run = deploy_runs["mnist-conv-avg"]
    paths = write_test_pngs(run, tmp_path / "png", 3)
    Image.new("L", (30, 30)).save(tmp_path / "png" / "big.png")
    (tmp_path / "png" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "preds.csv"
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "png"), "--out", str(out), "--topk", "2"]) == 0
    with out.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [Path(r["path"]).name for r in table] == ["big.png", "empty.jpg", "img000.png", "img002.png", "img001.png"]
    errors = {Path(r["path"]).name: r["error"] for r in table if r["error"]}
    assert set(errors) == {"big.png", "empty.jpg"} and "30x30 but the model expects 28x28" in errors["big.png"]
    assert all(r["class_1"] and float(r["prob_1"]) >= float(r["prob_2"]) for r in table if not r["error"])
    err = capsys.readouterr().err
    assert re.search(r"predicted 5 images in .* s \(\d+ images/s\), 2 unreadable; rows in .*preds\.csv", err)
    assert len(paths) == 3


def test_printing_mode_keeps_one_line_per_image_and_reports_skips_on_stderr(deploy_runs, tmp_path, capsys) -> None:
    run = deploy_runs["mnist-conv-avg"]
    paths = write_test_pngs(run, tmp_path / "png", 2)
    (tmp_path / "png" / "bad.png").write_text("x")
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "png" / "*.png"), "--topk", "1"]) == 0
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == [str(paths[0])]  # img001 sits in sub/
    assert "vitlab: skipped: " in err and "bad.png" in err


def test_the_onnx_path_does_not_run_vitlabs_model_code(deploy_runs, exported, tmp_path, monkeypatch) -> None:
    from vitlab.models.vit import VisionTransformer

    paths = write_test_pngs(deploy_runs["mnist-conv-avg"], tmp_path / "png", 2)
    monkeypatch.setattr(VisionTransformer, "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError("eager")))
    rows: list[dict] = []
    predict_files(Predictor.load(exported["mnist-conv-avg"]), paths, rows.append)
    assert all("top" in row for row in rows)


def test_the_docs_snippet_classifies_a_png_as_vitlab_predict_does(deploy_runs, exported, tmp_path, capsys) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    snippet = re.search(r"<!-- snippet -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 10 and "vitlab" not in snippet
    png = write_test_pngs(deploy_runs["mnist-conv-avg"], tmp_path, 1)[0]
    code = snippet + "\nimport sys\nassert 'vitlab' not in sys.modules\n"
    result = subprocess.run([sys.executable, "-c", code, str(exported["mnist-conv-avg"]), str(png)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    capsys.readouterr()
    assert main(["predict", str(deploy_runs["mnist-conv-avg"]), str(png), "--topk", "1"]) == 0
    predicted = capsys.readouterr().out.split(": ", 1)[1].split()[0]
    assert result.stdout.strip() == predicted
