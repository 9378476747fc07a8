"""vitlab.reproduce.report on synthetic results: intervals, the three verdicts, Markdown and self-contained HTML.

Reference: the verdict rules of vitlab.reproduce.stats applied by hand to made-up per-seed numbers whose
intervals are known in advance (differences far from 0, straddling 0, or reversed).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vitlab.reproduce.recipes import recipe_from_dict
from vitlab.reproduce.report import summarize, write_report
from vitlab.reproduce.stats import HELD, NOT_RESOLVED, REVERSED, mean_interval


def _recipe():
    return recipe_from_dict({
        "name": "toy",
        "title": "Toy comparison",
        "paper": "Nobody 2020",
        "kind": "image",
        "variants": {"base": {}, "better": {}, "worse": {}, "noisy": {}, "same": {}},
        "metrics": ["test_acc1", "test_ece"],
        "paper_values": {"base": {"test_acc1": 70.0}, "better": {"test_acc1": 75.0}},
        "claims": [
            {"text": "better beats base", "metric": "test_acc1", "variant": "better", "against": "base", "expect": "higher"},
            {"text": "worse beats base", "metric": "test_acc1", "variant": "worse", "against": "base", "expect": "higher"},
            {"text": "noisy beats base", "metric": "test_acc1", "variant": "noisy", "against": "base", "expect": "higher"},
            {"text": "same about equals base", "metric": "test_acc1", "variant": "same", "against": "base", "expect": "equal", "margin": 1.0},
            {"text": "better lowers ECE", "metric": "test_ece", "variant": "better", "against": "base", "expect": "lower"},
        ],
    })


SEEDS = {
    "base": [90.4, 90.5, 90.6],
    "better": [95.0, 95.5, 96.0],
    "worse": [80.0, 80.5, 81.0],
    "noisy": [80.0, 91.0, 102.0],
    "same": [90.3, 90.5, 90.7],
}


def _results():
    out = []
    for variant, accs in SEEDS.items():
        for seed, acc in enumerate(accs):
            ece = 0.02 if variant == "better" else 0.05 + 0.001 * seed
            out.append({"recipe": "toy", "variant": variant, "seed": seed, "metrics": {"test_acc1": acc, "test_ece": ece},
                        "error": None, "seconds": 1.0, "device": "cpu"})
    out.append({"recipe": "toy", "variant": "base", "seed": 3, "metrics": {}, "error": "NonFiniteLossError: boom",
                "seconds": 1.0, "device": "cpu"})
    out.append({"recipe": "other", "variant": "base", "seed": 0, "metrics": {"test_acc1": 0.0}, "error": None})
    return out


def test_summary_intervals_are_the_per_variant_student_t_intervals() -> None:
    res = summarize(_recipe(), _results())
    for variant, accs in SEEDS.items():
        assert res.values[variant]["test_acc1"] == accs  # other recipes' and failed runs' numbers left out
        assert res.intervals[variant]["test_acc1"] == mean_interval(accs)
    assert res.failed == ["base seed 3: NonFiniteLossError: boom"]


def test_verdicts_held_reversed_not_resolved() -> None:
    res = summarize(_recipe(), _results())
    verdicts = {c.claim.text: c.verdict for c in res.claims}
    assert verdicts == {
        "better beats base": HELD,
        "worse beats base": REVERSED,
        "noisy beats base": NOT_RESOLVED,
        "same about equals base": HELD,
        "better lowers ECE": HELD,
    }
    better = res.claims[0]
    assert better.diff.mean == pytest.approx(5.0)
    assert better.paper == "75.0 vs 70.0"


def test_missing_variant_results_are_not_resolved() -> None:
    results = [r for r in _results() if r["variant"] != "better"]
    res = summarize(_recipe(), results)
    assert res.claims[0].verdict == NOT_RESOLVED and res.claims[0].ours == "no result"


def test_match_claims_use_the_relative_tolerance() -> None:
    recipe = recipe_from_dict({
        "name": "fit", "kind": "legendre", "variants": {"tutorial": {}}, "metrics": ["final_loss", "b"],
        "paper_values": {"tutorial": {"final_loss": 8.94364, "b": -2.2}},
        "claims": [
            {"text": "loss", "metric": "final_loss", "variant": "tutorial", "expect": "match", "margin": 1e-4},
            {"text": "b", "metric": "b", "variant": "tutorial", "expect": "match", "margin": 1e-4},
        ],
    })
    results = [{"recipe": "fit", "variant": "tutorial", "seed": 0, "metrics": {"final_loss": 8.943642, "b": -2.3}, "error": None}]
    res = summarize(recipe, results)
    assert [c.verdict for c in res.claims] == [HELD, REVERSED]


def test_report_files_state_numbers_and_verdicts_and_html_is_self_contained(tmp_path: Path) -> None:
    res = summarize(_recipe(), _results())
    header = {"command": "vitlab reproduce toy", "machine": {"processor": "test cpu", "cpu_count": 2}, "wall_seconds": 60.0}
    md_path, html_path = write_report([res], tmp_path, header)
    md = md_path.read_text()
    assert "| toy | better beats base | +5.00 [" in md
    assert "**held**" in md and "**went the other way**" in md and "**not resolved by the interval**" in md
    assert "90.50 ± " in md  # base mean with its half-width
    assert "NonFiniteLossError: boom" in md
    png = tmp_path / "toy_test_acc1.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![" in md and "(toy_test_acc1.png)" in md
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    srcs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert srcs, "the page shows its plot"
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in page and "<script" not in page and "http" not in page
    assert "<strong>held</strong>" in page


def test_higher_by_a_margin_needs_the_interval_to_clear_the_margin() -> None:
    # "better" − "base" = 5.0 with a Welch interval of about ±1.3 (hand-checked below): it clears a margin of 2
    # (held), lies entirely below a margin of 8 (reversed), and straddles a margin of its own lower end + 0.1.
    diff = summarize(_recipe(), _results()).claims[0].diff
    low, high = diff.low, diff.high
    assert 3.0 < low < 5.0 < high < 7.0

    def verdict(margin: float) -> str:
        recipe = recipe_from_dict({
            "name": "toy", "kind": "image", "variants": {"base": {}, "better": {}}, "metrics": ["test_acc1"],
            "claims": [{"text": "by a margin", "metric": "test_acc1", "variant": "better", "against": "base",
                        "expect": "higher", "margin": margin}],
        })
        return summarize(recipe, _results()).claims[0].verdict

    assert verdict(2.0) == HELD
    assert verdict(8.0) == REVERSED
    assert verdict(low + 0.1) == NOT_RESOLVED
