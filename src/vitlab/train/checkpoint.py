"""Crash-safe files: atomic writes, verified safetensors weights, and resumable checkpoints.

Every file is written to a temporary name in the target folder, flushed to disk (``fsync``) and renamed
into place with :func:`os.replace`, which POSIX makes atomic: a reader (or a resumed run) sees the old
file or the new one, never a half-written one.

Weights are safetensors (no code runs when they load). Each weights file carries in its metadata the
SHA-256 of its tensors' bytes (``vitlab.sha256``), so a truncated file (caught by the safetensors header
check) or flipped bytes inside the tensor data (caught by the digest) are refused with
:class:`~vitlab.errors.CheckpointError` instead of loading silently.

A resumable checkpoint is a folder ``checkpoints/step_XXXXXXXX/`` holding ``model.safetensors``,
``state.pt`` (optimizer, schedule, step, RNG states; loadable with ``torch.load(weights_only=True)``) and
``manifest.json`` (the SHA-256 of both). The folder is complete before the pointer file
``checkpoints/latest`` is atomically replaced to name it; older folders are deleted afterwards. A crash at
any moment leaves ``latest`` naming a complete, verified checkpoint (or no checkpoint yet).

Test-only crash points: when the environment variable ``VITLAB_TEST_CHECKPOINT_PAUSE`` is
``STEP:STAGE:MARKER``, :func:`save_checkpoint` for step ``STEP`` appends ``STAGE`` to the file ``MARKER``
on reaching that stage and then sleeps for a minute, so that a test can ``kill -9`` the process at that
exact point (tests/test_crash_safety.py). Stages, in write order: ``partial-model.safetensors``,
``model.safetensors``, ``partial-state.pt``, ``state.pt``, ``partial-manifest.json``, ``manifest.json``
(each file of the staging folder half-written, then complete), ``renamed`` (the folder in place, the
pointer not yet updated), ``partial-latest``, ``latest`` (pointer replaced, old folders not yet removed).
Never set it outside tests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load, save
from torch import Tensor

from vitlab.errors import CheckpointError
from vitlab.io import atomic_open, sha256_file, staging_dir
from vitlab.safeload import load_torch_file

CHECKPOINTS = "checkpoints"
LATEST = "latest"
WEIGHTS = "model.safetensors"
STATE = "state.pt"
MANIFEST = "manifest.json"
DIGEST_KEY = "vitlab.sha256"
TEST_PAUSE_ENV = "VITLAB_TEST_CHECKPOINT_PAUSE"  # test-only crash points, see the module docstring

_writing_step: int | None = None  # the step save_checkpoint is writing (read by the test-only hook)


def _test_pause(stage: str) -> None:
    """Test-only: record ``stage`` in the marker file and sleep if ``VITLAB_TEST_CHECKPOINT_PAUSE`` asks."""
    spec = os.environ.get(TEST_PAUSE_ENV)
    if not spec or _writing_step is None:
        return
    step, want, marker = spec.split(":", 2)
    if int(step) != _writing_step or want != stage:
        return
    with open(marker, "a", encoding="utf-8") as handle:
        handle.write(f"{stage}\n")
    time.sleep(60)  # the test kills the process here


def _write_file(path: Path, data: bytes) -> Path:
    """Write one checkpoint file atomically; the test-only pause can stop it half-way through."""
    with atomic_open(path) as handle:
        if _writing_step is not None and os.environ.get(TEST_PAUSE_ENV):  # test-only: stop half-way
            handle.write(data[: len(data) // 2])
            handle.flush()
            _test_pause(f"partial-{path.name}")
            data = data[len(data) // 2 :]
        handle.write(data)
    return path


def _tensor_digest(tensors: Mapping[str, Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(name.encode("utf-8"))
        digest.update(str(tensor.dtype).encode("utf-8"))
        digest.update(str(tuple(tensor.shape)).encode("utf-8"))
        # reshape(-1): a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes directly
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_weights(
    state_dict: Mapping[str, Tensor], path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
) -> Path:
    """Save tensors as safetensors at ``path`` atomically, with their SHA-256 in the metadata.

    Args:
        state_dict: name -> tensor (copied to CPU, made contiguous; shared storage is fine).
        path: target file.
        metadata: extra string metadata to store in the header.
    """
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state_dict.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[DIGEST_KEY] = _tensor_digest(tensors)
    return _write_file(Path(path), save(tensors, metadata=meta))


def load_weights(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Load a safetensors file written by :func:`save_weights`, verifying its header and digest.

    Raises:
        CheckpointError: the file is missing, not safetensors, truncated or its bytes changed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist; train a model first or check the path")
    data = path.read_bytes()
    try:
        tensors = load(data)
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise CheckpointError(
            f"weights file {path} is damaged or not a safetensors file ({type(error).__name__}); "
            "restore it from a good copy or retrain"
        ) from None
    expected = metadata.get(DIGEST_KEY)
    if expected is not None and _tensor_digest(tensors) != expected:
        raise CheckpointError(f"weights file {path} failed its SHA-256 check (bytes changed); restore it or retrain")
    return {name: t.to(device) for name, t in tensors.items()}


def _save_torch(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load_state(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never arbitrary code.

    Raises:
        CheckpointError: the file is missing, damaged, or holds objects that would need code to load (one
            line in vitlab's words, see :func:`vitlab.safeload.load_torch_file`).
    """
    return load_torch_file(path, what="checkpoint file")


def save_checkpoint(
    run_dir: str | os.PathLike[str], step: int, weights: Mapping[str, Tensor], state: dict, keep: int = 1
) -> Path:
    """Write a resumable checkpoint folder for ``step`` and point ``checkpoints/latest`` at it.

    Args:
        run_dir: the run folder.
        step: the optimizer step the checkpoint was taken after (names the folder).
        weights: the model's state dict (saved as safetensors).
        state: everything else (optimizer and schedule state dicts, counters, RNG states): tensors and
            plain Python containers only, so that it loads with ``weights_only=True``.
        keep: how many checkpoint folders to keep (the newest).

    Returns:
        The checkpoint folder.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = root / name
    global _writing_step
    _writing_step = step
    try:
        with staging_dir(final) as staging:  # the folder appears whole under its name, or not at all
            save_weights(weights, staging / WEIGHTS)
            _test_pause(WEIGHTS)
            _write_file(staging / STATE, _save_torch(state))
            _test_pause(STATE)
            manifest = {"step": step, "files": {f: sha256_file(staging / f) for f in (WEIGHTS, STATE)}}
            _write_file(staging / MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))
            _test_pause(MANIFEST)
            if final.exists():  # the same step saved again after a resume: retire the old folder first
                _discard(final)
        _test_pause("renamed")
        _write_file(root / LATEST, (name + "\n").encode("utf-8"))
        _test_pause(LATEST)
    finally:
        _writing_step = None
    folders = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in folders[:-keep] if keep > 0 else []:
        if old.name != name:
            _discard(old)
    for stale in root.glob(".step_*"):  # staging folders of a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder so that no partly deleted ``step_*`` folder can ever be seen.

    The folder is first renamed (atomically) to a hidden ``.step_*`` name, which no reader looks at and the
    next :func:`save_checkpoint` sweeps away; only then are its files removed. A kill in the middle leaves
    a hidden folder, never a visible ``step_*`` folder with some of its files missing.
    """
    hidden = folder.parent / f".{folder.name}.discarded-{os.getpid()}"
    try:
        os.replace(folder, hidden)
    except OSError:
        return
    shutil.rmtree(hidden, ignore_errors=True)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The folder ``checkpoints/latest`` names, or ``None`` when the run has no checkpoint yet."""
    pointer = Path(run_dir) / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    folder = Path(run_dir) / CHECKPOINTS / name
    if not name.startswith("step_") or not folder.is_dir():
        raise CheckpointError(f"{pointer} names '{name}', which is not a checkpoint folder; the run folder is damaged")
    return folder


def load_checkpoint(folder: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict]:
    """Verify a checkpoint folder against its manifest and load ``(weights, state)``.

    The weights come back in the names they were saved with; a ViT's after-pooling norm from before it was named
    ``pooled_norm`` is renamed where they are loaded into the model (:func:`vitlab.models.vit.migrate_vit_state_dict`;
    the engine's ``restore`` does it for a resumed run).

    Raises:
        CheckpointError: a file is missing, changed since it was written, or unsafe.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"checkpoint {folder} has no readable {MANIFEST}; it is damaged") from None
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {folder} is missing {name}")
        if sha256_file(path) != digest:
            raise CheckpointError(
                f"checkpoint file {path} failed its SHA-256 check (truncated or changed); it is damaged"
            )
    return load_weights(folder / WEIGHTS), load_state(folder / STATE)
