"""Figures written as PNG files with matplotlib's non-interactive Agg backend.

Every plot goes through :func:`save_figure`, which writes through :func:`vitlab.io.atomic_open`, so that an
interrupted run never leaves a half-written image.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.figure import Figure  # noqa: E402

from vitlab.io import atomic_open  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically and close it. Returns the path."""
    path = Path(path)
    try:
        with atomic_open(path, suffix=".png") as handle:
            fig.savefig(handle, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path
