"""vitlab export: ONNX (onnxruntime as the reference runtime) and torch.export programs (torch.export.load) of every
kind of image run, verified against the eager float32 model; the gate; the int8 export; refusals by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.deploy.conftest import RUNS
from vitlab.cli import main
from vitlab.deploy import export as export_module
from vitlab.deploy.export import ExportError, export_run, preprocessing_path
from vitlab.deploy.preprocessing import Preprocessing
from vitlab.errors import ConfigError
from vitlab.train.tasks.image import load_run

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow


def _eager(run: Path, x: torch.Tensor) -> np.ndarray:
    model, _, _ = load_run(run)
    with torch.no_grad():
        return model.float().eval()(x).numpy()


def _inputs(run: Path, batch: int) -> torch.Tensor:
    spec = Preprocessing.from_run(*load_run(run)[1:])
    return torch.randn(batch, spec.channels, *spec.required_size, generator=torch.Generator().manual_seed(batch))


@pytest.mark.parametrize("kind", list(RUNS))
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_every_run_kind_exports_verified_with_a_dynamic_batch(deploy_runs, tmp_path, kind, fmt) -> None:
    run = deploy_runs[kind]
    out = tmp_path / f"model.{fmt}"
    report = export_run(run, fmt, out)
    assert report.top1_agreement == 1.0 and report.max_abs_logit_diff <= 1e-4
    assert report.images == json.loads((run / "run.json").read_text())["splits"]["test"]
    record = json.loads(preprocessing_path(out).read_text())
    assert record["verification"]["top1_agreement"] == 1.0 and record["export"]["format"] == fmt
    assert Preprocessing.from_dict(record).classes == json.loads((run / "run.json").read_text())["classes"]
    # Reference: the eager float32 model, at batch sizes the export never saw (1, 7, 64)
    if fmt == "onnx":
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert json.loads(meta["vitlab.preprocessing"]) == Preprocessing.from_dict(record).to_dict()
        run_exported = lambda x: session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]  # noqa: E731
    else:
        program = torch.export.load(str(out)).module()
        run_exported = lambda x: program(x).detach().numpy()  # noqa: E731
    for batch in (1, 7, 64):
        x = _inputs(run, batch)
        np.testing.assert_allclose(run_exported(x), _eager(run, x), rtol=0, atol=1e-4)


def test_a_pt2_program_loads_and_runs_without_vitlab(deploy_runs, tmp_path) -> None:
    out = tmp_path / "model.pt2"
    export_run(deploy_runs["digits-linear-token"], "pt2", out)
    code = ("import sys, torch; p = torch.export.load(sys.argv[1]).module(); "
            "y = p(torch.zeros(3, 1, 8, 8)); print(tuple(y.shape), 'vitlab' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["(3,", "10)", "False"]


def test_an_export_that_disagrees_is_refused_and_leaves_nothing(deploy_runs, tmp_path, monkeypatch) -> None:
    real = export_module._runner

    def off_by_a_little(fmt, path):  # noqa: ANN001, ANN202
        run = real(fmt, path)
        return lambda x: run(x) + 1e-3  # every logit moved by more than atol

    monkeypatch.setattr(export_module, "_runner", off_by_a_little)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError, match=r"max \|Δlogit\| 1\.00e-03 > atol 0\.0001.*nothing was written"):
        export_run(deploy_runs["digits-resnet"], "onnx", out)
    assert not out.exists() and not preprocessing_path(out).exists()


def test_int8_reports_accuracy_agreement_and_speed_without_the_gate(deploy_runs, tmp_path) -> None:
    run = deploy_runs["mnist-conv-avg"]
    report = export_run(run, "onnx", tmp_path / "model.int8.onnx", quantize="int8")
    assert report.quantize == "int8" and 0.0 <= report.top1_agreement <= 1.0
    assert report.float32_images_per_s > 0 and report.exported_images_per_s > 0
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.int8.onnx")).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul"}, ops
    record = json.loads(preprocessing_path(tmp_path / "model.int8.onnx").read_text())
    assert record["verification"]["accuracy_exported"] == report.accuracy_exported


def test_bad_requests_are_one_line_refusals(deploy_runs, tmp_path, capsys) -> None:
    run = deploy_runs["digits-resnet"]
    with pytest.raises(ConfigError, match="unknown export format 'tflite'; choose one of onnx, pt2"):
        export_run(run, "tflite")
    with pytest.raises(ConfigError, match="only --quantize int8 with --format onnx"):
        export_run(run, "pt2", quantize="int8")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nowhere"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a vitlab run folder" in err


def test_a_missing_onnx_dependency_names_the_extra(deploy_runs, tmp_path, monkeypatch, capsys) -> None:
    import importlib

    real = importlib.import_module

    def without_onnxscript(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if name == "onnxscript":
            raise ImportError("No module named 'onnxscript'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without_onnxscript)
    assert main(["export", str(deploy_runs["digits-resnet"]), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'vitlab[export]'" in err and "onnxscript" in err
    assert list(tmp_path.iterdir()) == []


def test_a_seq2seq_run_is_refused_by_name(tmp_path, capsys) -> None:
    from vitlab.train import engine
    from vitlab.train.tasks.seq2seq import Seq2SeqConfig

    run = tmp_path / "reverse"
    engine.train(Seq2SeqConfig(dataset="copy", min_len=1, max_len=4, num_train=64, num_test=8, d_model=16, num_heads=2,
                               num_encoder_layers=1, num_decoder_layers=1, dim_ff=32, batch_size=16, steps=2, warmup=1,
                               eval_every=2, amp="off"), run, quiet=True, plots=False)
    capsys.readouterr()
    assert main(["export", str(run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seq2seq Transformer run" in err and "vitlab translate" in err
    assert not list(run.glob("model.onnx*"))


def test_the_cli_prints_the_verification(deploy_runs, tmp_path, capsys) -> None:
    capsys.readouterr()
    out = tmp_path / "m.pt2"
    assert main(["export", str(deploy_runs["digits-linear-token"]), "--format", "pt2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "top-1 agreement 100.00%" in text and f"preprocessing: {out}.json" in text
