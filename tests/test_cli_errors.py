"""Every bad input to the `vitlab` command is answered with exit code 2 and one clear line.

A table of cases (bad names, bad values, bad types, bad config files, bad data files, bad run folders,
a full disk, an unwritable output folder, damaged or unsafe checkpoints, bad files to `predict`) runs
through :func:`vitlab.cli.main` in this process. For each case the test asserts: exit code 2; exactly one
line on stderr, starting ``vitlab: error:``, that matches the case's pattern (the problem, and the fix
where there is one); no traceback; nothing written to stdout; and no partial output: the files under the
test's folder are exactly those that were there before (no run folder, no temporary file). A few cases run
end to end as ``python -m vitlab`` subprocesses to show the same holds for the real process.

Reference: the expected message of each case, written down here from the issue's list.
Library-level equivalents (wrong shapes and dtypes to the public functions) are at the end.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from vitlab.cli import main
from vitlab.errors import ConfigError, DataError, VitlabError

TINY = ["--config", "digits_vit", "--set", "model_args.depth=1", "--set", "model_args.embed_dim=32", "--set", "model_args.num_heads=2",
        "--set", "epochs=1", "--set", "threads=1"]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished one-epoch tiny run on the digits (with its checkpoint), shared read-only by the cases."""
    from vitlab.train import engine
    from vitlab.train.tasks.image_config import ImageConfig

    run = tmp_path_factory.mktemp("trained") / "run"
    threads = torch.get_num_threads()
    try:
        engine.train(ImageConfig(epochs=1, threads=1, model_args={"depth": 1, "embed_dim": 32, "num_heads": 2}), run,
                   quiet=True)
    finally:
        torch.set_num_threads(threads)
    return run


class _Evil:
    """Unpickling this calls ``open(path, 'w')``: code that runs on load, which safe loading must refuse."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.sentinel), "w"))


def _png(path: Path, size: tuple[int, int] = (8, 8), mode: str = "L", seed: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(2) if channels == 1 else pixels, mode).save(path)
    return path


def _image_folder(root: Path, bad: str | None = None, mode: str = "L") -> Path:
    """Two classes of three 8x8 images each; ``bad`` puts one bad file into class 'b'."""
    for c in ("a", "b"):
        for i in range(3):
            _png(root / c / f"{i}.png", mode=mode, seed=i + 10 * (c == "b"))
    target = root / "b" / "bad.png"
    if bad == "corrupt":
        target.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    elif bad == "truncated":
        full = _png(root / "b" / "big.png", size=(8, 8), seed=99).read_bytes()
        (root / "b" / "big.png").unlink()
        target.write_bytes(full[: len(full) // 2])
    elif bad == "not_image":
        target.write_text("this is a text file, not a PNG\n")
    elif bad == "mixed_sizes":
        _png(target, size=(9, 7))
    elif bad == "empty_class":
        shutil.rmtree(root / "b")
        (root / "b").mkdir()
    return root


def _small_folder(root: Path) -> Path:
    """Two classes of ten 8x8 images: 14 training images after the 70/15/15 split."""
    for c in ("a", "b"):
        for i in range(10):
            _png(root / c / f"{i}.png", seed=i + 10 * (c == "b"))
    return root


def _idx(path: Path, array: np.ndarray, type_code: int) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def _mnist(root: Path, bad: str) -> Path:
    """The four MNIST IDX files (20 train / 10 test images); ``bad`` breaks one of them."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        if split == "train" and bad == "labels_out_of_range":
            labels[3] = 12
        if split == "train" and bad == "nan_images":
            floats = images.astype(np.float32) / 255
            floats[0, 0, 0], floats[1, 5, 5] = np.nan, np.inf
            _idx(root / f"{split}-images-idx3-ubyte", floats, 0x0D)
        else:
            _idx(root / f"{split}-images-idx3-ubyte", images, 0x08)
        _idx(root / f"{split}-labels-idx1-ubyte", labels, 0x08)
    if bad == "truncated":
        path = root / "train-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:1000])
    return root


@dataclass
class Workspace:
    """Where a case builds its inputs: ``root`` (the test's tmp_path) and the shared trained run."""

    root: Path
    trained: Path

    def run_copy(self) -> Path:
        copy = self.root / "run"
        shutil.copytree(self.trained, copy)
        return copy

    def file(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        return path


def _flip_byte(path: Path, offset_from_end: int = 20) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def _unsafe_state(ws: Workspace) -> list[str]:
    import hashlib
    import json

    run = ws.run_copy()
    folder = next((run / "checkpoints").glob("step_*"))
    buffer = io.BytesIO()
    torch.save({"step": 1, "payload": _Evil(ws.root / "pwned")}, buffer)
    (folder / "state.pt").write_bytes(buffer.getvalue())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["state.pt"] = hashlib.sha256(buffer.getvalue()).hexdigest()  # digest matches: only safety stops it
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return ["train", "--resume", str(run)]


def _bad_init(kind: str) -> Callable[[Workspace], list[str]]:
    """``train --set init=FILE`` with a missing, non-ViT, unsafe or truncated checkpoint (fine-tuning)."""

    def argv(ws: Workspace) -> list[str]:
        from safetensors.torch import save_file

        if kind == "missing":
            path = ws.root / "nowhere.safetensors"
        elif kind == "not-vit":
            path = ws.root / "resnet.safetensors"
            save_file({"conv1.weight": torch.zeros(8, 1, 3, 3), "fc.weight": torch.zeros(10, 8)}, str(path))
        elif kind == "unsafe":
            path = ws.root / "evil.pth"
            torch.save({"patch_embed.proj.weight": torch.zeros(4, 1, 2, 2), "payload": _Evil(ws.root / "pwned")}, path)
        else:  # truncated
            path = ws.root / "cut.safetensors"
            save_file({"patch_embed.proj.weight": torch.zeros(32, 1, 2, 2), "pos_embed.weight": torch.zeros(17, 32)},
                      str(path))
            path.write_bytes(path.read_bytes()[:100])
        return _train(f"init={path}")(ws)

    return argv


def _unsafe_cifar(ws: Workspace) -> list[str]:
    folder = ws.root / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": _Evil(ws.root / "pwned")}, protocol=2))
    return ["train", *TINY, "--set", "dataset=cifar10", "--set", f"data_root={ws.root / 'cifar'}", "--out", str(ws.root / "out")]


def _train(*sets: str, out: str = "out") -> Callable[[Workspace], list[str]]:
    def argv(ws: Workspace) -> list[str]:
        return ["train", *TINY, *[a for s in sets for a in ("--set", s)], "--out", str(ws.root / out)]

    return argv


def _train_data(setup: Callable[[Path], Path], *sets: str) -> Callable[[Workspace], list[str]]:
    def argv(ws: Workspace) -> list[str]:
        root = setup(ws.root / "data")
        return _train(f"data_root={root}", *sets)(ws)

    return argv


def _with_config(text: str) -> Callable[[Workspace], list[str]]:
    def argv(ws: Workspace) -> list[str]:
        return ["train", "--config", str(ws.file("recipe.yaml", text)), "--out", str(ws.root / "out")]

    return argv


def _run_folder_without_checkpoint(ws: Workspace) -> list[str]:
    run = ws.root / "half"
    run.mkdir()
    (run / "config.yaml").write_text("epochs: 1\n")
    return ["train", "--resume", str(run)]


def _damaged_checkpoint(ws: Workspace) -> list[str]:
    run = ws.run_copy()
    _flip_byte(next((run / "checkpoints").glob("step_*")) / "state.pt")
    return ["train", "--resume", str(run)]


def _damaged_weights(how: str) -> Callable[[Workspace], list[str]]:
    def argv(ws: Workspace) -> list[str]:
        run = ws.run_copy()
        path = run / "model.safetensors"
        if how == "flipped":
            _flip_byte(path)
        else:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return ["eval", str(run)]

    return argv


def _eval_rgb_folder(ws: Workspace) -> list[str]:
    root = ws.root / "rgb"
    for split in ("train", "test"):  # the folder layout with its own test split, 10 RGB images per class
        for c in ("a", "b"):
            for i in range(10):
                _png(root / split / c / f"{i}.png", mode="RGB", seed=i)
    return ["eval", str(ws.trained), "--data", "folder", "--data-root", str(root)]


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _predict(make: Callable[[Path], Path | None]) -> Callable[[Workspace], list[str]]:
    def argv(ws: Workspace) -> list[str]:
        path = make(ws.root)
        return ["predict", str(ws.trained), str(path if path is not None else ws.root / "missing.png")]

    return argv


def _run_json_without(key: str, command: str) -> Callable[[Workspace], list[str]]:
    def argv(ws: Workspace) -> list[str]:
        run = ws.run_copy()
        info = json.loads((run / "run.json").read_text())
        del info[key]
        (run / "run.json").write_text(json.dumps(info))
        return [command, str(run)] + ([str(_png(ws.root / "ok.png"))] if command == "predict" else [])

    return argv


def _out_is_file(ws: Workspace) -> list[str]:
    ws.file("afile", "x")
    return _train(out="afile")(ws)


def _out_under_file(ws: Workspace) -> list[str]:
    ws.file("afile", "x")
    return _train(out="afile/run")(ws)


def _existing_run(ws: Workspace) -> list[str]:
    (ws.root / "out").mkdir()
    (ws.root / "out" / "config.yaml").write_text("epochs: 1\n")
    return _train()(ws)


def _disk_full(ws: Workspace, monkeypatch) -> list[str]:  # noqa: ANN001
    """The first file write of the run fails as on a full disk (ENOSPC from write(), which names no file)."""
    import vitlab.train.checkpoint as checkpoint

    real_fdopen = os.fdopen

    class FullDisk(io.RawIOBase):
        def __init__(self, fd: int) -> None:
            self.inner = real_fdopen(fd, "wb")

        def write(self, data) -> int:  # noqa: ANN001
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            self.inner.close()
            super().close()

    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode="r", *a, **k: FullDisk(fd))
    return _train()(ws)


def _read_only_out(ws: Workspace, monkeypatch) -> list[str]:  # noqa: ANN001
    """--out inside a folder nobody may write to (chmod 555; simulated when running as root, who ignores it)."""
    locked = ws.root / "locked"
    locked.mkdir()
    if os.geteuid() == 0:
        real_mkdir = os.mkdir

        def mkdir(path, *args, **kwargs):  # noqa: ANN001, ANN202
            if Path(path).parent == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", mkdir)
    else:
        locked.chmod(0o555)
    return _train(out="locked/run")(ws)


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[..., list[str]]
    pattern: str  # regex the one stderr line must match (after "vitlab: error: ")
    needs_monkeypatch: bool = False


CASES = [
    # unknown names (each suggests the nearest valid one, or lists the choices)
    Case("unknown-model", _train("model=vit_nope"), r"unknown model 'vit_nope'.*choices: .*vit_digits_patch2_8"),
    Case("unknown-model-near", _train("model=vit_tiny_patch4"), r"unknown model 'vit_tiny_patch4'; did you mean 'vit_tiny_patch4_32'"),
    Case("unknown-dataset", _train("dataset=cifar11"), r"unknown dataset 'cifar11'; did you mean 'cifar10'"),
    Case("unknown-activation", _train("model_args.act=mishh"), r"unknown activation 'mishh'; did you mean 'mish'"),
    Case("unknown-config-key", _train("lrr=0.1"), r"unknown config key 'lrr'; did you mean 'lr'"),
    Case("unknown-model-arg", _train("model_args.depthh=2"), r"unexpected keyword argument 'depthh'"),
    Case("unknown-mix-mode", _train("mix_mode=blend"), r"unknown mix mode 'blend'.*choices: batch, elem, pair"),
    Case("unknown-device", _train("device=tpu"), r"unknown device 'tpu'.*choices: .*cpu"),
    Case("unknown-nonfinite-policy", _train("nonfinite=ignore"), r"unknown nonfinite policy 'ignore'.*skip"),
    Case("unknown-task", _train("task=detection"), r"unknown task 'detection'; use task: image"),
    # model geometry against the data
    Case("patch-not-dividing-image", _train("model_args.patch_size=3"), r"patch size 3 does not divide image size 8x8"),
    Case("wrong-channel-count", _train("model_args.in_chans=3"), r"model_args.in_chans=3 but the data gives in_chans=1; remove"),
    Case("heads-not-dividing-width", _train("model_args.num_heads=5"), r"not divisible by num_heads 5"),
    # values out of range
    Case("lr-zero", _train("lr=0"), r"lr must be a positive finite number, got 0.0; e.g. --set lr=1e-3"),
    Case("lr-negative", _train("lr=-0.001"), r"lr must be a positive finite number, got -0.001"),
    Case("lr-nan", _train("lr=.nan"), r"lr must be a positive finite number, got nan"),
    Case("batch-size-zero", _train("batch_size=0"), r"batch_size must be a positive integer, got 0; e.g. --set batch_size=1"),
    Case("batch-size-negative", _train("batch_size=-8"), r"batch_size must be a positive integer, got -8"),
    Case("epochs-zero", _train("epochs=0"), r"epochs must be a positive integer, got 0"),
    Case("epochs-negative", _train("epochs=-3"), r"epochs must be a positive integer, got -3"),
    Case("batch-larger-than-data", _train("batch_size=4096"), r"batch_size 4096 is larger than the training set \(1258 images\); lower batch_size, at most 1258 here: --set batch_size=1258"),
    Case("small-folder-default-batch", _train_data(lambda r: _small_folder(r), "dataset=folder"), r"batch_size 64 is larger than the training set \(14 images\); lower batch_size, at most 14 here: --set batch_size=14"),
    Case("unknown-amp", _train("amp=fp8"), r"amp: unknown precision 'fp8'.*choices: auto, bf16, fp16, off"),
    Case("fp16-without-cuda", _train("amp=fp16", "device=cpu"), r"amp: fp16 needs a CUDA device, got cpu; use amp: bf16 or auto"),
    Case("device-mps-refused", _train("device=mps"), r"device 'mps' is not supported: .*use --set device=cpu"),
    Case("models-no-match", lambda ws: ["models", "nomatch*"], r"no model matches 'nomatch\*'; run `vitlab models`"),
    Case("plot-not-png", lambda ws: ["plot", "mixing", "--out", str(ws.root / "p.jpg")], r"vitlab plot writes PNG files; give --out a .png name"),
    Case("accum-not-dividing-batch", _train("batch_size=64", "accum_steps=5"), r"batch_size 64 is not divisible by accum_steps 5"),
    Case("min-lr-above-lr", _train("lr=1e-3", "min_lr=0.1"), r"min_lr 0.1 is larger than lr 0.001; lower min_lr"),
    Case("label-smoothing-out-of-range", _train("label_smoothing=1.5"), r"label_smoothing must be in \[0, 1\), got 1.5"),
    # wrong types
    Case("type-int-given-text", _train("epochs=abc"), r"epochs must be int, got 'abc' \(str\)"),
    Case("type-int-given-float", _train("epochs=1.5"), r"epochs must be int, got 1.5 \(float\)"),
    Case("type-bool-given-text", _train("hflip=maybe"), r"hflip must be bool, got 'maybe'"),
    Case("type-float-given-list", _train("lr=[1, 2]"), r"lr must be float, got \[1, 2\] \(list\)"),
    Case("type-dict-given-int", _train("model_args=5"), r"model_args must be dict"),
    Case("set-without-equals", lambda ws: ["train", "--set", "lr", "--out", str(ws.root / "out")], r"--set expects key=value, got 'lr'"),
    # config files
    Case("config-missing", lambda ws: ["train", "--config", str(ws.root / "nope.yaml")], r"config file .*nope.yaml does not exist"),
    Case("config-invalid-yaml", _with_config("lr: [1, 2\nepochs: 3\n"), r"is not valid YAML at line \d+; fix its syntax"),
    Case("config-not-a-mapping", _with_config("- lr\n- epochs\n"), r"must hold a mapping of keys to values, got list"),
    Case("config-unknown-key", _with_config("epochz: 3\n"), r"unknown config key 'epochz'; did you mean 'epochs'"),
    Case("config-python-object", _with_config("lr: !!python/object/apply:os.system ['true']\n"), r"is not valid YAML"),
    Case("config-wrong-type", _with_config("batch_size: '64'\n"), r"batch_size must be int, got '64' \(str\)"),
    Case("config-not-utf8", lambda ws: ["train", "--config", str(_binary(ws.root / "bin.yaml"))], r"is not UTF-8 text"),
    # data
    Case("folder-without-root", _train("dataset=folder"), r"the folder dataset needs a root: pass --set data_root=PATH"),
    Case("folder-missing", _train("dataset=folder", "data_root=/nonexistent/vitlab-data"), r"image folder /nonexistent/vitlab-data does not exist"),
    Case("folder-empty", _train_data(lambda r: (r.mkdir(), r)[1], "dataset=folder"), r"has no class sub-folders; put the images in"),
    Case("folder-empty-class", _train_data(lambda r: _image_folder(r, "empty_class"), "dataset=folder"), r"class folder .*b has no images"),
    Case("image-corrupt", _train_data(lambda r: _image_folder(r, "corrupt"), "dataset=folder"), r"bad.png: (not an image|corrupt or truncated)"),
    Case("image-truncated", _train_data(lambda r: _image_folder(r, "truncated"), "dataset=folder"), r"bad.png: corrupt or truncated image"),
    Case("image-not-an-image", _train_data(lambda r: _image_folder(r, "not_image"), "dataset=folder"), r"bad.png: not an image Pillow can read; remove it"),
    Case("image-mixed-sizes", _train_data(lambda r: _image_folder(r, "mixed_sizes"), "dataset=folder"), r"images differ in size: .* is 8x8 but .*bad.png is 9x7; resize"),
    Case("mnist-files-missing", _train("dataset=mnist", "data_root=/nonexistent/mnist"), r"not found; pass --set download=true"),
    Case("mnist-labels-out-of-range", _train_data(lambda r: _mnist(r, "labels_out_of_range"), "dataset=mnist"), r"label 12 is out of range \[0, 10\)"),
    Case("mnist-nan-float-images", _train_data(lambda r: _mnist(r, "nan_images"), "dataset=mnist"), r"expected \(N, H, W\) uint8 images, got .*float32"),
    Case("mnist-truncated", _train_data(lambda r: _mnist(r, "truncated"), "dataset=mnist"), r"truncated or corrupt, download it again"),
    Case("cifar-unsafe-pickle", _unsafe_cifar, r"batches.meta: refusing to unpickle global (builtins|io).open .*download it again"),
    # run folders and checkpoints
    Case("run-folder-exists", _existing_run, r"run folder .*out already exists; pass --resume .*out to continue it or choose another --out"),
    Case("out-is-a-file", _out_is_file, r"Not a directory: .*afile; a part of the path is a file"),
    Case("out-under-a-file", _out_under_file, r"Not a directory: .*afile/run; a part of the path is a file"),
    Case("resume-missing-folder", lambda ws: ["train", "--resume", str(ws.root / "gone")], r"cannot resume: run folder .*gone does not exist"),
    Case("resume-without-checkpoint", _run_folder_without_checkpoint, r"cannot resume: .*half has no checkpoint yet"),
    Case("resume-with-set", lambda ws: ["train", "--resume", str(ws.root), "--set", "lr=1"], r"--resume continues a run with its saved config; drop --config/--set"),
    Case("resume-damaged-checkpoint", _damaged_checkpoint, r"state.pt failed its SHA-256 check \(truncated or changed\)"),
    Case("resume-unsafe-checkpoint", _unsafe_state, r"state.pt refused: it contains code or objects that weights_only loading does not allow; do not load it unless you trust its source$"),
    # fine-tuning from a bad checkpoint (issue 14)
    Case("init-missing", _bad_init("missing"), r"nowhere.safetensors does not exist; check the path$"),
    Case("init-not-a-vit", _bad_init("not-vit"), r"resnet.safetensors: not a ViT checkpoint .*no patch-embedding weights"),
    Case("init-unsafe-pickle", _bad_init("unsafe"), r"evil.pth refused: it contains code .*do not load it unless you trust its source$"),
    Case("init-truncated", _bad_init("truncated"), r"cut.safetensors is truncated or not a safetensors file"),
    Case("init-bad-arg", _train("init=x.pth", "init_args.heads=2"), r"unknown init argument 'heads'; did you mean 'num_heads'"),
    Case("layer-decay-out-of-range", _train("layer_decay=0"), r"layer_decay must be in \(0, 1\] \(1 = off\), got 0"),
    Case("train-per-class-too-many", _train("train_per_class=500"), r"fewer than the 500 per class asked for; lower train_per_class"),
    Case("disk-full", _disk_full, r"No space left on device: .*config.yaml; free disk space or choose another --out", True),
    Case("read-only-output-folder", _read_only_out, r"Permission denied: .*locked/run; choose a folder you can write to", True),
    # using a run
    Case("eval-not-a-run", lambda ws: ["eval", str(ws.root)], r"is not a vitlab run folder"),
    Case("eval-unfinished-run", lambda ws: ["eval", str(_unfinished(ws))], r"has no model.safetensors: the run has not finished; resume it"),
    Case("eval-flipped-weights", _damaged_weights("flipped"), r"model.safetensors failed its SHA-256 check"),
    Case("eval-truncated-weights", _damaged_weights("truncated"), r"model.safetensors is damaged or not a safetensors file"),
    Case("eval-run-json-without-classes", _run_json_without("classes", "eval"),
         r"run.json has no 'classes' entry \(damaged or edited\); restore the run.json that `vitlab train` wrote, or "
         r"train the run again$"),
    Case("predict-run-json-without-image-shape", _run_json_without("image_shape", "predict"),
         r"run.json has no 'image_shape' entry .*train the run again$"),
    Case("eval-unknown-split", lambda ws: ["eval", str(ws.trained), "--split", "dev"], r"unknown split 'dev'; choose one of"),
    Case("eval-wrong-channels", _eval_rgb_folder, r"folder images are \(3, 8, 8\) but the model expects \(1, 8, 8\)"),
    Case("predict-missing-image", _predict(lambda root: None), r"image file .*missing.png does not exist"),
    Case("predict-a-folder-without-images", _predict(lambda root: _folder(root / "pictures")),
         r"no image files among the inputs; pass files, folders or globs of images"),
    Case("predict-not-an-image", _predict(lambda root: _text_file(root / "x.png")), r"x.png: not an image Pillow can read"),
    Case("predict-wrong-size", _predict(lambda root: _png(root / "big.png", size=(12, 10))), r"big.png is 12x10 but the model expects 8x8; resize it first"),
    Case("predict-topk-zero", lambda ws: ["predict", str(ws.trained), str(_png(ws.root / "ok.png")), "--topk", "0"], r"--topk must be >= 1, got 0"),
]


def _text_file(path: Path) -> Path:
    path.write_text("hello\n")
    return path


def _binary(path: Path) -> Path:
    path.write_bytes(b"lr: \xff\xfe\x00\x01\n")
    return path


def _unfinished(ws: Workspace) -> Path:
    run = ws.run_copy()
    (run / "model.safetensors").unlink()
    return run


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _assert_one_clear_line(code: int, out: str, err: str, pattern: str) -> None:
    assert code == 2, (code, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("vitlab: error: "), lines[0]
    assert re.search(pattern, lines[0]), f"{lines[0]!r} does not match {pattern!r}"
    assert out == "", f"unexpected stdout: {out!r}"


def test_the_table_has_at_least_30_distinct_cases() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_exit_2_one_line_and_leaves_nothing_behind(case: Case, trained_run, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    ws = Workspace(tmp_path / "ws", trained_run)
    ws.root.mkdir()
    argv = case.argv(ws, monkeypatch) if case.needs_monkeypatch else case.argv(ws)
    before = _snapshot(ws.root)
    trained_before = _snapshot(trained_run)
    threads = torch.get_num_threads()
    try:
        code = main(argv)
    finally:
        torch.set_num_threads(threads)
        monkeypatch.undo()
    out, err = capsys.readouterr()
    _assert_one_clear_line(code, out, err, case.pattern)
    assert _snapshot(ws.root) == before, "files were added, removed or changed"
    assert _snapshot(trained_run) == trained_before
    assert not (ws.root / "pwned").exists(), "an unsafe pickle ran code"
    assert not list(tmp_path.glob("runs")), "a default run folder was made"


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [["train", "--set", "model=vit_nope", "--out", "run"], ["train", "--set", "epochs=0", "--out", "run"]],
    ids=["unknown-model", "epochs-zero"],
)
def test_the_real_process_exits_2_with_one_line_and_no_traceback(argv, tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "vitlab", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    _assert_one_clear_line(proc.returncode, proc.stdout, proc.stderr, r"unknown model|epochs must be a positive integer")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ library level
def _vit():
    from vitlab.models import create_model

    return create_model("vit_digits_patch2_8", depth=1, embed_dim=32, num_heads=2)


def _mixer():
    from vitlab.mixing import Mixer

    return Mixer(num_classes=10, mixup_alpha=1.0, generator=torch.Generator().manual_seed(0))


def _labels(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.long)


LIBRARY_CASES: list[tuple[str, Callable[[], object], type[ValueError], str]] = [
    ("vit-wrong-channels", lambda: _vit()(torch.zeros(2, 3, 8, 8)), ValueError, r"expected 1 input channels, got 3"),
    ("vit-wrong-size", lambda: _vit()(torch.zeros(2, 1, 9, 9)), ValueError, r"expected images of size 8x8, got 9x9"),
    ("vit-wrong-rank", lambda: _vit()(torch.zeros(1, 8, 8)), ValueError, r"expected images of shape \(B, C, H, W\)"),
    ("loss-int-logits", lambda: _loss()(torch.zeros(2, 10, dtype=torch.long), _labels(2)), DataError, r"logits must be floating point"),
    ("loss-label-out-of-range", lambda: _loss()(torch.zeros(2, 10), torch.tensor([0, 10])), DataError, r"outside \[0, 10\)"),
    ("loss-float-target", lambda: _loss()(torch.zeros(2, 10), torch.zeros(2)), DataError, r"integer"),
    ("soft-loss-shape", lambda: _soft_loss()(torch.zeros(2, 10), torch.zeros(2, 9)), DataError, r"must both be \(N, K\)"),
    ("topk-1d-logits", lambda: _metrics().topk_correct(torch.zeros(10), _labels(10)), DataError, r"must be a 2-D tensor \(N, C\)"),
    ("topk-onehot-labels", lambda: _metrics().topk_correct(torch.zeros(4, 10), torch.zeros(4, 10)), DataError, r"labels must be a 1-D tensor"),
    ("ece-empty", lambda: _metrics().expected_calibration_error(torch.zeros(0, 10), _labels(0)), DataError, r"empty"),
    ("confusion-float-pred", lambda: _metrics().confusion_matrix(torch.zeros(3), _labels(3), 10), DataError, r"integer"),
    ("mixer-int-images", lambda: _mixer()(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), _labels(4)), VitlabError, r"float|dtype"),
    ("mixer-labels-mismatch", lambda: _mixer()(torch.zeros(4, 1, 8, 8), _labels(3)), VitlabError, r"4|3"),
    ("crop-3d-images", lambda: _transforms().random_crop(torch.zeros(1, 8, 8), 1, torch.Generator()), DataError, r"\(B, C, H, W\)"),
    ("normalize-wrong-channels", lambda: _transforms().normalize(torch.zeros(2, 3, 8, 8), [0.5, 0.5], [0.2]), ConfigError, r"2 values but the images have 3 channels"),
    ("scatter-index-out-of-range", lambda: _scatter().scatter_sum(torch.ones(4), torch.tensor([0, 1, 5, 2]), dim_size=3), DataError, r"5"),
    ("scatter-float-index", lambda: _scatter().scatter_sum(torch.ones(4), torch.zeros(4)), VitlabError, r"index"),
    ("dataset-nan-images", lambda: _dataset(torch.full((2, 1, 8, 8), float("nan"))), DataError, r"NaN or inf"),
    ("dataset-inf-images", lambda: _dataset(torch.full((2, 1, 8, 8), float("inf"))), DataError, r"NaN or inf"),
    ("dataset-label-out-of-range", lambda: _dataset(torch.zeros(2, 1, 8, 8), torch.tensor([0, 4])), DataError, r"label 4 is out of range \[0, 2\)"),
    ("dataset-empty", lambda: _dataset(torch.zeros(0, 1, 8, 8), _labels(0)), DataError, r"empty"),
    ("fit-temperature-nan", lambda: _metrics().fit_temperature(torch.full((4, 3), float("nan")), _labels(4)), DataError, r"NaN or inf"),
]


def _loss():
    from vitlab.losses import LabelSmoothingCrossEntropy

    return LabelSmoothingCrossEntropy(0.1)


def _soft_loss():
    from vitlab.losses import SoftTargetCrossEntropy

    return SoftTargetCrossEntropy()


def _metrics():
    import vitlab.metrics

    return vitlab.metrics


def _transforms():
    import vitlab.data.transforms

    return vitlab.data.transforms


def _scatter():
    import vitlab.scatter

    return vitlab.scatter


def _dataset(images: torch.Tensor, labels: torch.Tensor | None = None):
    from vitlab.data.base import ImageDataset

    return ImageDataset(images, labels if labels is not None else _labels(images.shape[0]), ["a", "b"], "toy")


@pytest.mark.parametrize("name, call, error, pattern", LIBRARY_CASES, ids=[c[0] for c in LIBRARY_CASES])
def test_public_functions_refuse_bad_shapes_and_dtypes_with_one_line(name, call, error, pattern) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    assert re.search(pattern, message), f"{name}: {message!r}"
