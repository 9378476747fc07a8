"""Tests of vitlab.viz plots: each writes a readable PNG of the expected size, through the CLI where it has a
command. Plot contents are checked where a number is shown (the ECE in the title comes from vitlab.metrics,
itself tested against a NumPy loop in tests/test_metrics.py)."""

from __future__ import annotations

import pytest
import torch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_shape(path):
    """(height, width) of a PNG, read back with matplotlib's reader (independent of how it was written)."""
    import matplotlib.image as mpimg

    return mpimg.imread(path).shape[:2]


# ---------------------------------------------------------------- mixing (issue 4)


def test_cli_plot_mixing_writes_a_png_grid(tmp_path, capsys):
    from vitlab.cli import main

    out = tmp_path / "m.png"
    assert main(["plot", "mixing", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 20_000
    height, width = _png_shape(out)
    assert width > height > 300  # a 4-row × 8-column grid is wider than tall
    assert str(out) in capsys.readouterr().out


def test_plot_mixing_is_reproducible_from_its_seed(tmp_path):
    """Same seed -> byte-identical PNG; another seed -> a different one (the generator drives every draw)."""
    from vitlab.viz.techniques import plot_mixing

    a = plot_mixing(tmp_path / "a.png", n=4, seed=0).read_bytes()
    b = plot_mixing(tmp_path / "b.png", n=4, seed=0).read_bytes()
    c = plot_mixing(tmp_path / "c.png", n=4, seed=5).read_bytes()
    assert a == b and a != c


# ---------------------------------------------------------------- calibration (issue 4)


def test_plot_reliability_diagram_writes_png_and_title_has_the_ece(tmp_path, monkeypatch):
    from vitlab.metrics import expected_calibration_error
    from vitlab.viz import techniques

    g = torch.Generator().manual_seed(0)
    probs = (torch.randn(500, 5, generator=g) * 2).softmax(1)
    labels = torch.randint(0, 5, (500,), generator=g)
    titles = []
    original = techniques._reliability_panel

    def spy(ax, ax_count, p, y, n_bins, title):  # noqa: ANN001, ANN202
        ece = original(ax, ax_count, p, y, n_bins, title)
        titles.append(ax.get_title())
        return ece

    monkeypatch.setattr(techniques, "_reliability_panel", spy)
    out = techniques.plot_reliability_diagram(probs, labels, tmp_path / "r.png", n_bins=10, title="random")
    assert out.read_bytes()[:8] == PNG_MAGIC
    expected = float(expected_calibration_error(probs, labels, 10))
    assert titles == [f"random: ECE = {expected:.4f} (10 bins)"]


def test_plot_temperature_scaling_writes_png_and_rejects_bad_temperature(tmp_path):
    from vitlab.errors import ConfigError
    from vitlab.viz.techniques import plot_temperature_scaling

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(300, 4, generator=g) * 4
    labels = torch.randint(0, 4, (300,), generator=g)
    out = plot_temperature_scaling(logits, labels, 2.0, tmp_path / "t.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ConfigError, match="temperature must be > 0, got 0.0"):
        plot_temperature_scaling(logits, labels, 0.0, tmp_path / "bad.png")


# ---------------------------------------------------------------- positional encoding (issue 7)


def test_cli_plot_posenc_writes_a_png(tmp_path, capsys):
    from vitlab.cli import main

    out = tmp_path / "p.png"
    assert main(["plot", "posenc", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 20_000
    height, width = _png_shape(out)
    assert width > 2 * height * 0.9  # two heatmaps side by side
    assert str(out) in capsys.readouterr().out


# ---------------------------------------------------------------- the reproduce report's forest plot (issue 29)


def test_plot_forest_draws_one_panel_per_unit_with_zero_line_bands_and_hollow_markers(tmp_path, monkeypatch):
    """Reference: the rows given. Each panel holds its rows (top to bottom), a vertical line at 0, a shaded band for
    each row with a margin; a row out of regime has a white (hollow) marker, the others are filled in their colour."""
    import math

    from matplotlib.colors import to_rgba

    from vitlab.viz import reproduce as forest

    rows = [
        forest.ForestRow("[vit] a beats b", "r: pp", 2.0, 1.0, 3.0, "held"),
        forest.ForestRow("[cnn] a beats b", "r: pp", -1.0, -2.0, 0.1, "not resolved", hollow=True),
        forest.ForestRow("a about equals b", "r: pp", 0.2, -0.3, 0.7, "held", band=(-1.0, 1.0)),
        forest.ForestRow("ece drops", "s: ECE", 0.05, float("nan"), float("nan"), "went the other way"),
    ]
    figures = []
    real_save = forest.save_figure
    monkeypatch.setattr(forest, "save_figure", lambda fig, out: figures.append(fig) or real_save(fig, out))
    out = forest.plot_forest(rows, tmp_path / "forest.png", title="claims")
    assert out.read_bytes()[:8] == PNG_MAGIC and _png_shape(out)[0] > 300
    (fig,) = figures
    top, bottom = fig.axes
    assert top.get_title(loc="left") == "r: pp" and bottom.get_title(loc="left") == "s: ECE"
    assert [t.get_text() for t in top.get_yticklabels()] == ["a about equals b", "[cnn] a beats b", "[vit] a beats b"]
    markers = [line for line in top.get_lines() if line.get_marker() == "o"]
    faces = [to_rgba(m.get_markerfacecolor()) for m in markers]
    assert faces[1] == to_rgba("white") and faces[0] == to_rgba(forest.STATUS_COLOURS["held"])
    assert any(line.get_xdata()[0] == 0.0 == line.get_xdata()[1] for line in top.get_lines())  # the zero line
    assert len(top.collections) >= 1 + 3  # the margin band, then the three intervals
    lo, hi = top.get_xlim()
    assert lo < -2.0 and hi > 3.0  # every interval and the band in view
    assert not math.isfinite(rows[3].low) and bottom.get_xlim()[0] < 0.0 < bottom.get_xlim()[1]  # 0 kept in view
    with pytest.raises(ValueError, match="at least one row"):
        forest.plot_forest([], tmp_path / "none.png")
