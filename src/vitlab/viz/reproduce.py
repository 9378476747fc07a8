"""The reproduction report's forest plot: one row per claim, its estimate with an interval, the zero line, the
claim's margin band, the verdict by colour (the layout of a meta-analysis forest plot, Lewis & Clarke 2001,
BMJ 322:1479).

Plain data in, a PNG out: this module knows nothing of recipes or tests (``viz`` sits below ``reproduce``).
Rows are grouped into panels by ``panel`` (its title; rows in one unit share an x axis, each panel its own scale),
in the order they first appear.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from vitlab.viz.figure import plt, save_figure

STATUS_COLOURS = {"held": "#1a9850", "went the other way": "#d73027", "not resolved": "#7f7f7f"}
BAND_COLOUR = "#c6dbef"
LABEL_CHARS = 72  # longer labels are cut with an ellipsis


@dataclass(frozen=True)
class ForestRow:
    """One claim in the forest plot.

    ``estimate`` with its interval [``low``, ``high``] (NaN ends: a point alone); ``status`` a key of
    :data:`STATUS_COLOURS` (the verdict); ``hollow`` draws an open marker (out of regime); ``band`` (lo, hi) is the
    claim's margin band, shaded behind its row; ``panel`` is the title of the panel (x axis) the row is drawn on.
    """

    label: str
    panel: str
    estimate: float
    low: float
    high: float
    status: str
    hollow: bool = False
    band: tuple[float, float] | None = None


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _limits(rows: list[ForestRow]) -> tuple[float, float]:
    """x limits holding 0, every finite estimate, interval end and band, with 8 % padding."""
    xs = [0.0] + [v for r in rows for v in (r.estimate, r.low, r.high, *(r.band or ())) if math.isfinite(v)]
    lo, hi = min(xs), max(xs)
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def _forest_panel(ax, rows: list[ForestRow], title: str) -> None:  # noqa: ANN001 - a matplotlib Axes
    """One panel: rows top to bottom, bands behind, intervals as lines, estimates as markers, the zero line."""
    n = len(rows)
    for i, row in enumerate(rows):
        y = n - 1 - i
        colour = STATUS_COLOURS.get(row.status, "black")
        if row.band is not None:
            ax.fill_betweenx([y - 0.42, y + 0.42], row.band[0], row.band[1], color=BAND_COLOUR, zorder=0, lw=0)
        if math.isfinite(row.low) and math.isfinite(row.high):
            ax.hlines(y, row.low, row.high, color=colour, lw=2.0, zorder=2)
        ax.plot([row.estimate], [y], "o", ms=6.5, mew=1.6, mec=colour, mfc="white" if row.hollow else colour,
                zorder=3)
    ax.axvline(0.0, color="black", lw=0.8, zorder=1)
    ax.set_yticks(range(n), [_short(r.label) for r in reversed(rows)], fontsize=7)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(*_limits(rows))
    ax.set_title(title, loc="left", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)


def plot_forest(rows: list[ForestRow], out: str | os.PathLike[str], title: str = "") -> Path:
    """A forest plot of ``rows``, one panel per distinct ``panel`` (heights in proportion to their rows), as a PNG.

    Args:
        rows: the claims, top to bottom; at least one.
        out: PNG path.
        title: figure title.
    """
    if not rows:
        raise ValueError("a forest plot needs at least one row")
    panels = list(dict.fromkeys(r.panel for r in rows))
    counts = [sum(r.panel == p for r in rows) for p in panels]
    heights = [c + 1.2 for c in counts]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9.0, 0.27 * sum(heights) + 1.0), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, panel in zip(axes[:, 0], panels):
        _forest_panel(ax, [r for r in rows if r.panel == panel], panel)
    handles = [Line2D([], [], marker="o", color=c, mfc=c, lw=2, label=s) for s, c in STATUS_COLOURS.items()]
    handles += [Line2D([], [], marker="o", color="0.3", mfc="white", lw=0, label="out of regime (hollow)"),
                Patch(color=BAND_COLOUR, label="margin band")]
    fig.legend(handles=handles, loc="upper center", ncol=5, fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    if title:
        fig.suptitle(title, fontsize=9, y=1.03)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, out)
