"""Loading PyTorch pickle files (``.pt``, ``.pth``, ``.bin``) without running their code.

A PyTorch file is a pickle, and unpickling can call any function the file names. ``torch.load`` with
``weights_only=True`` unpickles only tensors and plain containers and raises on anything else; this module
turns that refusal (and a damaged file) into one :class:`~vitlab.errors.CheckpointError` line in vitlab's
words, and silences torch's own warnings about the pickle (they would add lines to the CLI's one-line
error). torch reports every weights-only failure with the same words (a global it does not allow, or a
pickle opcode it cannot read, e.g. protocol 4 framing in a plain pickle); a file that starts like a pickle or a
torch zip archive is refused for what it holds, any other file is named as damaged or not a PyTorch file.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from vitlab.errors import CheckpointError

__all__ = ["load_torch_file"]


def _looks_like_torch_file(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(2)
    return head[:1] == b"\x80" or head == b"PK"


def load_torch_file(path: str | os.PathLike[str], what: str = "checkpoint file") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with one-line refusals.

    Args:
        path: a file written by ``torch.save`` (zip or legacy format).
        what: how the error message names the file ("checkpoint file", "weights file", ...).

    Returns:
        The loaded object (tensors, dicts, lists, numbers, strings).

    Raises:
        CheckpointError: the file is missing; it holds objects that weights-only loading does not allow
            (code could run: refused, never loaded); or it is truncated or not a PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's "Detected pickle protocol 4" UserWarning
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch words every weights-only failure alike; a file that is a pickle (PROTO opcode 0x80) or a torch
        # zip ("PK") was refused for what it holds, anything else is not a PyTorch file at all
        if "weights only load failed" in str(error).lower() and _looks_like_torch_file(path):
            raise CheckpointError(
                f"{what} {path} refused: it contains code or objects that weights_only loading does not allow; "
                "do not load it unless you trust its source"
            ) from None
        raise CheckpointError(f"{what} {path} is damaged or not a PyTorch file (UnpicklingError); "
                              "restore it from a good copy") from None
    except Exception as error:  # zip reader errors (RuntimeError), EOFError, bad magic number, ...
        raise CheckpointError(
            f"{what} {path} is damaged or not a PyTorch file ({type(error).__name__}); restore it from a good copy"
        ) from None
