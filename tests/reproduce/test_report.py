"""vitlab.reproduce.report on synthetic results: intervals, the three verdicts after Holm, regime, counting,
the forest plot, Markdown and self-contained HTML.

Reference: the verdict rules of vitlab.reproduce.stats applied by hand to made-up per-seed numbers whose
intervals are known in advance (differences far from 0, straddling 0, or reversed); scipy's ttest_rel for the
paired interval and p-value of a claim; Holm's rule by hand (k · p for the smallest p of k); per-seed contrasts
computed by hand; the headline counted by hand from the verdicts each synthetic claim was built to get.
"""

from __future__ import annotations

import base64
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vitlab.reproduce.recipes import recipe_from_dict
from vitlab.reproduce.report import (
    Block,
    ClaimResult,
    build_report,
    count_claims,
    family_agreement,
    forest_rows,
    headline,
    shared_results,
    summarize,
    to_html,
    verdict_class,
    write_report,
)
from vitlab.reproduce.stats import (
    HELD,
    NOT_RESOLVED,
    REVERSED,
    holm,
    mean_interval,
    minimum_detectable_effect,
    paired_interval,
    prob_greater_exact,
    seeds_for_half_width,
    welch_interval,
)


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
    assert "| toy | better beats base | direction | +5.00 [" in md
    assert "**held**" in md and "**went the other way**" in md and "**not resolved**" in md
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


def _former_to_html_body(blocks: list[Block]) -> str:
    """vitlab's hand-written HTML renderer before markdown-it-py (its body): the reference for equal output."""

    def inline(text: str) -> str:
        out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))
        return re.sub(r"`(.+?)`", r"<code>\1</code>", out)

    parts = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            parts.append(f"<{b.kind}>{inline(b.text)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{inline(b.text)}</p>")
        elif b.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{inline(item[0])}</li>" for item in b.rows) + "</ul>")
        elif b.kind == "table":
            header, *body = b.rows
            cells = "".join(f"<th>{inline(c)}</th>" for c in header)
            parts.append(f"<table><thead><tr>{cells}</tr></thead><tbody>")
            parts += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in body]
            parts.append("</tbody></table>")
        elif b.kind == "image" and b.path is not None and b.path.is_file():
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            parts.append(f"<p><img alt=\"{html.escape(b.text)}\" src=\"data:image/png;base64,{data}\"></p>")
    return "\n".join(parts)


class _Structure(HTMLParser):
    """An HTML body as a list of start tags (with sorted attributes), end tags and whitespace-collapsed texts."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.items: list[tuple] = []
        self.feed(page[page.index("<body>") + len("<body>"):] if "<body>" in page else page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "td":  # the verdict cells' colour classes are new (tested in test_verdict_cells_are_coloured_...)
            attrs = [(k, v) for k, v in attrs if k != "class"]
        self.items.append(("start", tag, tuple(sorted(attrs))))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("body", "html"):
            self.items.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if data.split():
            self.items.append(("text", " ".join(data.split())))


def test_html_from_markdown_it_equals_the_former_hand_written_renderer(tmp_path: Path) -> None:
    """The whole report (header, verdict table, how-to-read list, a recipe's tables, plot and failed runs, an
    extra figure whose caption has brackets and parentheses): same tags, attributes and text as before."""
    res = summarize(_recipe(), _results())
    header = {"command": "vitlab reproduce toy", "machine": {"processor": "test cpu", "cpu_count": 2},
              "wall_seconds": 60.0, "note": "A note with `code`, **bold**, a_b_c, x < y & z > w, and a | pipe."}
    figure = tmp_path / "toy_fit.png"
    figure.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    extra = {"toy": [("Activations of classes [0, 1, 2] projected (seed 0); a + b·P3(c + d·x).", figure)]}
    blocks = build_report([res], tmp_path, header, extra)
    assert {b.kind for b in blocks} == {"h1", "h2", "p", "list", "table", "image"}
    assert _Structure(to_html(blocks, "t")).items == _Structure(_former_to_html_body(blocks)).items


def test_html_renders_the_markdown_it_shows_and_stays_self_contained(tmp_path: Path) -> None:
    picture = tmp_path / "a dir (1)" / "Müller plot.png"  # spaces, parentheses, non-ASCII in the path
    picture.parent.mkdir()
    picture.write_bytes(b"\x89PNG\r\n\x1a\npixels")
    blocks = [
        Block("h1", "Title"), Block("h3", "Sub `x`"),
        Block("p", "<script>alert(1)</script> & ![remote](http://example.com/x.png) *em* **strong**"),
        Block("table", rows=[["a|b", "c"], ["`d`", "**e**"]]),
        Block("image", text="plot", path=picture),
        Block("image", text="gone", path=tmp_path / "missing.png"),
    ]
    page = to_html(blocks, "<title>")
    assert "<title>&lt;title&gt;</title>" in page
    assert "<h1>Title</h1>" in page and "<h3>Sub <code>x</code></h3>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; remote <em>em</em> <strong>strong</strong>" in page
    assert "<script" not in page and "http" not in page
    assert re.search(r"<th>a\|b</th>\s*<th>c</th>", page)
    assert re.search(r"<td><code>d</code></td>\s*<td><strong>e</strong></td>", page)
    data = base64.b64encode(picture.read_bytes()).decode("ascii")
    assert re.findall(r'src="([^"]*)"', page) == [f"data:image/png;base64,{data}"]
    assert 'alt="plot"' in page and "gone" not in page


# ------------------------------------------------------------------------------------------ paired, families
def _family_recipe():
    return recipe_from_dict({
        "name": "fam", "kind": "image",
        "families": {"vit": {"model": "v"}, "cnn": {"model": "c"}},
        "variants": {"base": {}, "reg": {}},
        "metrics": ["test_error"],
        "claims": [
            {"text": "reg lowers the error", "metric": "test_error", "variant": "reg", "against": "base", "expect": "lower"},
            {"text": "the cnn's edge shrinks with reg", "metric": "test_error", "variant": "vit/reg", "against": "cnn/reg",
             "minus": ["vit/base", "cnn/base"], "expect": "lower"},
        ],
    })


SEED_EFFECT = [-2.0, 0.5, 2.0, -1.0, 0.8]  # shared by every arm of a seed: pairing removes it, Welch does not
FAMILY_ERRORS = {
    "vit/base": [10.0 + s for s in SEED_EFFECT],
    "vit/reg": [9.6 + s + d for s, d in zip(SEED_EFFECT, [0.05, -0.05, 0.1, 0.0, -0.1])],
    "cnn/base": [5.0 + s for s in SEED_EFFECT],
    "cnn/reg": [5.0 + s + d for s, d in zip(SEED_EFFECT, [0.3, -0.3, 0.2, -0.25, 0.05])],
}


def _family_results():
    out = []
    for arm, errors in FAMILY_ERRORS.items():
        family, variant = arm.split("/")
        for seed, err in enumerate(errors):
            out.append({"recipe": "fam", "family": family, "variant": variant, "seed": seed, "error": None, "seconds": 1.0,
                        "metrics": {"test_error": err, "train_val_gap": 1.0 + seed, "temperature": 0.9}})
    return out


def test_claims_use_the_paired_interval_of_shared_seeds() -> None:
    # reference: scipy's ttest_rel confidence interval on the per-seed errors; the exact P(better) of stats
    stats = pytest.importorskip("scipy.stats")
    res = summarize(_family_recipe(), _family_results())
    vit = next(c for c in res.claims if c.family == "vit")
    ref = stats.ttest_rel(FAMILY_ERRORS["vit/reg"], FAMILY_ERRORS["vit/base"]).confidence_interval(0.95)
    assert vit.diff.method == "paired" and vit.diff.n == 5
    assert vit.diff.low == pytest.approx(ref.low) and vit.diff.high == pytest.approx(ref.high)
    assert vit.verdict == HELD  # Welch's interval on the same numbers contains 0: the seed effect dominates it
    assert welch_interval(FAMILY_ERRORS["vit/reg"], FAMILY_ERRORS["vit/base"]).low < 0 < welch_interval(
        FAMILY_ERRORS["vit/reg"], FAMILY_ERRORS["vit/base"]).high
    # "lower" claim: P(better) is the share of seeds where reg's error is below base's
    assert vit.prob == prob_greater_exact([-x for x in FAMILY_ERRORS["vit/reg"]], [-x for x in FAMILY_ERRORS["vit/base"]])
    assert vit.prob.p == 1.0 and vit.prob.low == pytest.approx(0.4782, abs=1e-4)  # 5 of 5: Clopper-Pearson, not [1, 1]
    assert vit.mde == pytest.approx(minimum_detectable_effect(vit.diff.sd, 5))
    assert vit.seeds_needed == seeds_for_half_width(vit.diff.sd, 0.5)  # top-1 error is in %
    cnn = next(c for c in res.claims if c.family == "cnn")
    assert cnn.verdict == NOT_RESOLVED


def test_contrast_claims_subtract_the_second_difference_per_seed() -> None:
    res = summarize(_family_recipe(), _family_results())
    (contrast,) = [c for c in res.claims if c.index == 1]
    e = FAMILY_ERRORS
    per_seed = [(e["vit/reg"][k] - e["cnn/reg"][k]) - (e["vit/base"][k] - e["cnn/base"][k]) for k in range(5)]
    assert contrast.family == "" and contrast.diff.mean == pytest.approx(sum(per_seed) / 5)
    assert contrast.diff.half_width == pytest.approx(mean_interval(per_seed).half_width)


def test_arms_without_shared_seeds_fall_back_to_welch() -> None:
    results = [r for r in _family_results() if not (r["family"] == "vit" and r["variant"] == "reg" and r["seed"] > 0)]
    results += [dict(r, seed=r["seed"] + 10) for r in _family_results() if r["family"] == "vit" and r["variant"] == "reg"]
    res = summarize(_family_recipe(), results)
    vit = next(c for c in res.claims if c.family == "vit")
    assert vit.diff.method == "welch"  # only seed 0 is shared
    assert vit.diff.mean == pytest.approx(welch_interval(res.values["vit/reg"]["test_error"], FAMILY_ERRORS["vit/base"]).mean)
    assert "Welch" in vit.ours


def test_family_agreement_and_regime_columns_in_the_report(tmp_path: Path) -> None:
    res = summarize(_family_recipe(), _family_results())
    per = [c for c in res.claims if c.index == 0]
    assert family_agreement(per) == "partly: one is not resolved"
    assert family_agreement([per[0], per[0]]) == "agree (held)"
    flipped = ClaimResult(per[1].claim, REVERSED, per[1].diff, "", "", "cnn")
    assert family_agreement([per[0], flipped]) == "disagree (opposite directions)"
    md_path, _ = write_report([res], tmp_path, {"command": "c", "machine": {}})
    md = md_path.read_text()
    assert "Do the model families agree?" in md and "| reg lowers the error | held | not resolved | partly" in md
    assert "train − validation accuracy gap (pp)" in md and "fitted temperature T" in md
    assert "| vit | base | " in md and "[vit] reg lowers the error" in md


def test_a_recipe_with_one_family_has_no_agreement_table(tmp_path: Path) -> None:
    """v3's cutmix and mish run ResNet-8 only: one family has nothing to agree with, so no table says it agrees."""
    recipe = recipe_from_dict({
        "name": "fam", "kind": "image", "families": {"cnn": {"model": "c"}}, "variants": {"base": {}, "reg": {}},
        "metrics": ["test_error"],
        "claims": [{"text": "reg lowers the error", "metric": "test_error", "variant": "reg", "against": "base",
                    "expect": "lower"}],
    })
    res = summarize(recipe, [r for r in _family_results() if r["family"] == "cnn"])
    md_path, _ = write_report([res], tmp_path, {"command": "c", "machine": {}})
    md = md_path.read_text()
    assert "[cnn] reg lowers the error" in md and "Do the model families agree?" not in md


def test_seeds_needed_for_accuracy_claims_follow_the_observed_spread() -> None:
    recipe = recipe_from_dict({
        "name": "acc", "kind": "image", "variants": {"a": {}, "b": {}}, "metrics": ["test_acc1"],
        "claims": [{"text": "b beats a", "metric": "test_acc1", "variant": "b", "against": "a", "expect": "higher"}],
    })
    a, b = [97.0, 97.4, 96.9, 97.2], [97.5, 97.6, 97.8, 97.3]
    results = [{"recipe": "acc", "variant": v, "seed": k, "error": None, "metrics": {"test_acc1": x}}
               for v, xs in (("a", a), ("b", b)) for k, x in enumerate(xs)]
    (claim,) = summarize(recipe, results).claims
    assert claim.seeds_needed == seeds_for_half_width(paired_interval(b, a).sd, 0.5)


def test_higher_by_a_margin_needs_the_interval_to_clear_the_margin() -> None:
    # "better" − "base" = 5.0 with a paired interval of about ±1.0 (hand-checked below): it clears a margin of 2
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


def test_shared_results_lists_each_group_of_arms_once_with_its_seeds() -> None:
    """Reference: the ``shared_by`` lists the runner gives each spec's result (test_runner.py shares real plans)."""
    pair = [{"recipe": "label_smoothing", "arm": "vit/no_smoothing"}, {"recipe": "cutmix", "arm": "vit/baseline"}]
    results = [
        {"recipe": "cutmix", "variant": "baseline", "seed": k, "shared_by": pair[::-1]} for k in (0, 1)
    ] + [
        {"recipe": "label_smoothing", "variant": "no_smoothing", "seed": k, "shared_by": pair} for k in (0, 1)
    ] + [{"recipe": "mish", "variant": "relu", "seed": 0}, {"recipe": "x", "variant": "y", "seed": 2, "shared_by": pair}]
    assert shared_results(results) == ["cutmix vit/baseline = label_smoothing vit/no_smoothing (seeds 0, 1, 2)"]
    assert shared_results(results[4:5]) == []


# ------------------------------------------------------------------------------------------ issue 29: tests, Holm, regime
def _per_seed(center: float, deltas: list[float]) -> list[float]:
    return [center + d for d in deltas]


def _mish_family_of_six():
    """The audit's mish recipe: 3 direction claims × 2 families = a Holm family of 6, the CNN's Mish − Swish built to
    have a paired two-sided p of exactly 0.040 (reversed), every other claim far from significant."""
    stats = pytest.importorskip("scipy.stats")
    z = [-1.0, -0.5, 0.0, 0.5, 1.0]
    sd_z = (sum(v * v for v in z) / 4) ** 0.5
    t = stats.t.isf(0.020, 4)  # two-sided p = 0.040 at 4 degrees of freedom
    scale = 0.30 * 5 ** 0.5 / (t * sd_z)
    mish_minus_swish = [-0.30 + scale * v for v in z]
    relu = [96.0, 96.5, 97.0, 96.2, 96.8]
    arms = {
        "vit/relu": relu, "vit/swish": [r + d for r, d in zip(relu, [0.1, -0.3, 0.4, -0.2, 0.0])],
        "cnn/relu": relu, "cnn/swish": [r + d for r, d in zip(relu, [0.3, -0.2, 0.1, -0.3, 0.2])],
    }
    arms["vit/mish"] = [s + d for s, d in zip(arms["vit/swish"], [0.2, -0.4, 0.3, -0.1, 0.1])]
    arms["cnn/mish"] = [s + d for s, d in zip(arms["cnn/swish"], mish_minus_swish)]
    recipe = recipe_from_dict({
        "name": "mish", "kind": "image", "families": {"vit": {"model": "v"}, "cnn": {"model": "c"}},
        "variants": {"relu": {}, "swish": {}, "mish": {}}, "metrics": ["test_acc1"],
        "claims": [
            {"text": "Mish beats ReLU", "metric": "test_acc1", "variant": "mish", "against": "relu", "expect": "higher"},
            {"text": "Swish beats ReLU", "metric": "test_acc1", "variant": "swish", "against": "relu", "expect": "higher"},
            {"text": "Mish beats Swish", "metric": "test_acc1", "variant": "mish", "against": "swish", "expect": "higher"},
        ],
    })
    results = [{"recipe": "mish", "family": arm.split("/")[0], "variant": arm.split("/")[1], "seed": k, "error": None,
                "metrics": {"test_acc1": v}} for arm, values in arms.items() for k, v in enumerate(values)]
    return recipe, results, arms


def test_holm_turns_the_audits_marginal_mish_below_swish_into_not_resolved() -> None:
    """Issue 29's audit: the CNN's "Mish below Swish" at p = 0.040 went the other way unadjusted; with Holm over the
    recipe's 6 claim evaluations its adjusted p is 6 × 0.040 = 0.24 (it has the smallest p): not resolved.
    Reference: scipy.stats.ttest_rel for the raw p; Holm's first step by hand."""
    stats = pytest.importorskip("scipy.stats")
    recipe, results, arms = _mish_family_of_six()
    res = summarize(recipe, results)
    assert len(res.claims) == 6
    marginal = next(c for c in res.claims if c.family == "cnn" and c.claim.text == "Mish beats Swish")
    raw = stats.ttest_rel(arms["cnn/mish"], arms["cnn/swish"]).pvalue
    assert raw == pytest.approx(0.040, rel=1e-9) and marginal.test.p == pytest.approx(raw, rel=1e-9)
    assert all(c.test.p > raw for c in res.claims if c is not marginal)  # so it is Holm's first step: k = 6
    assert marginal.test.raw_verdict == REVERSED
    assert marginal.test.p_adjusted == pytest.approx(6 * raw) and marginal.verdict == NOT_RESOLVED
    assert all(c.verdict == NOT_RESOLVED for c in res.claims)


def _regime_recipe(untestable: list | None = None):
    return recipe_from_dict({
        "name": "reg", "kind": "image", "families": {"vit": {"model": "v"}, "cnn": {"model": "c"}},
        "variants": {"base": {}, "good": {}, "bad": {}, "noisy": {}}, "metrics": ["test_error"],
        "regime": {"overfits": {"text": "the baseline overfits", "arms": ["base"], "metric": "train_val_gap", "min": 2.0}},
        "claims": [
            {"text": "good lowers the error", "metric": "test_error", "variant": "good", "against": "base",
             "expect": "lower", "regime": ["overfits"]},
            {"text": "bad lowers the error", "metric": "test_error", "variant": "bad", "against": "base",
             "expect": "lower", "regime": ["overfits"]},
            {"text": "noisy lowers the error", "metric": "test_error", "variant": "noisy", "against": "base",
             "expect": "lower"},
        ],
        "untestable": untestable or [],
    })


REGIME_ERRORS = {  # per-seed test error around the baseline's; the vit baseline overfits (gap 3 pp), the cnn's not (1 pp)
    "base": [10.0, 10.4, 9.8, 10.2, 10.1],
    "good": [5.0, 5.5, 4.9, 5.2, 5.3],
    "bad": [15.1, 15.6, 14.8, 15.0, 15.4],
    "noisy": [7.0, 14.0, 9.0, 12.5, 8.0],
}


def _regime_results(cnn_gap: float = 1.0):
    return [
        {"recipe": "reg", "family": fam, "variant": v, "seed": k, "error": None, "seconds": 1.0,
         "metrics": {"test_error": err, "train_val_gap": (3.0 if fam == "vit" else cnn_gap) if v == "base" else 0.5,
                     "train_acc1": 99.0, "temperature": 0.9}}
        for fam in ("vit", "cnn") for v, errors in REGIME_ERRORS.items() for k, err in enumerate(errors)
    ]


def test_verdicts_held_reversed_not_resolved_and_out_of_regime() -> None:
    res = summarize(_regime_recipe(), _regime_results())
    got = {(c.family, c.claim.text.split()[0]): (c.verdict, c.in_regime) for c in res.claims}
    assert got == {
        ("vit", "good"): (HELD, True), ("vit", "bad"): (REVERSED, True), ("vit", "noisy"): (NOT_RESOLVED, True),
        ("cnn", "good"): (HELD, False), ("cnn", "bad"): (REVERSED, False), ("cnn", "noisy"): (NOT_RESOLVED, True),
    }
    cnn_good = next(c for c in res.claims if c.family == "cnn" and c.claim.text.startswith("good"))
    (check,) = cnn_good.regime
    assert (check.arm, check.value, check.met) == ("cnn/base", pytest.approx(1.0), False)
    assert [c.test.p_adjusted is not None for c in res.claims] == [True] * 6  # one Holm family: the recipe


def test_a_claim_without_results_still_counts_in_holms_family() -> None:
    """The "bad" arm's runs all failed: its two claim evaluations enter Holm with p = 1, so the family stays the
    recipe's 6 (reference: stats.holm on the six p-values; the smallest p is multiplied by 6, not by 4)."""
    results = [r for r in _regime_results() if r["variant"] != "bad"]
    res = summarize(_regime_recipe(), results)
    missing = [c for c in res.claims if c.claim.text.startswith("bad")]
    assert [(c.ours, c.test.p, c.verdict) for c in missing] == [("no result", 1.0, NOT_RESOLVED)] * 2
    assert [c.test.p_adjusted for c in res.claims] == pytest.approx(holm([c.test.p for c in res.claims]))
    smallest = min(res.claims, key=lambda c: c.test.p)
    assert smallest.test.p_adjusted == pytest.approx(6 * smallest.test.p)


def test_noninferiority_and_tost_claims_read_the_90_percent_interval() -> None:
    """Reference: scipy.stats.ttest_rel's 90% confidence interval (1 − 2α) and its one-sided p-values."""
    stats = pytest.importorskip("scipy.stats")
    recipe = recipe_from_dict({
        "name": "ni", "kind": "image", "variants": {"a": {}, "b": {}}, "metrics": ["test_acc1"],
        "claims": [
            {"text": "b at least as good as a", "metric": "test_acc1", "variant": "b", "against": "a", "expect": "higher",
             "test": "noninferiority", "margin": 0.5},
            {"text": "b about equals a", "metric": "test_acc1", "variant": "b", "against": "a", "test": "equivalence",
             "margin": 1.0},
        ],
    })
    a, b = [94.0, 94.3, 93.8, 94.1, 94.4], [93.9, 94.4, 93.5, 94.2, 94.3]
    results = [{"recipe": "ni", "variant": v, "seed": k, "error": None, "metrics": {"test_acc1": x}}
               for v, xs in (("a", a), ("b", b)) for k, x in enumerate(xs)]
    ni, tost = summarize(recipe, results).claims
    ci = stats.ttest_rel(b, a).confidence_interval(0.90)
    for c in (ni, tost):
        assert c.test.level == pytest.approx(0.90) and c.diff.low == pytest.approx(ci.low) and "(90%)" in c.ours
    shifted = [x + 0.5 for x in b]
    assert ni.test.p_held == pytest.approx(stats.ttest_rel(shifted, a, alternative="greater").pvalue)
    assert ni.verdict == HELD and tost.verdict == HELD  # -0.5 < low and the 90% interval inside ±1 pp


def test_headline_counts_resolved_of_testable_and_lists_the_rest_beside_it(tmp_path: Path) -> None:
    """By hand: of 6 claim evaluations, 2 are out of regime (the cnn baseline's gap is 1 pp < 2); the 4 testable are
    held, went the other way, and twice not resolved: 2 of 4 (50%). One untestable claim, three deterministic checks."""
    untestable = [{"text": "tiny effect", "reason": "MDE far above the paper's effect", "mde": 1.2,
                   "paper_effect": 0.16, "seeds_needed": 60}]
    regime = summarize(_regime_recipe(untestable), _regime_results())
    legendre = recipe_from_dict({
        "name": "fit", "kind": "legendre", "variants": {"tutorial": {}}, "metrics": ["final_loss", "b", "d"],
        "paper_values": {"tutorial": {"final_loss": 8.94364, "b": -2.2, "d": 0.25}},
        "claims": [{"text": name, "metric": name, "variant": "tutorial", "expect": "match", "margin": 1e-4}
                   for name in ("final_loss", "b", "d")],
    })
    fit = summarize(legendre, [{"recipe": "fit", "variant": "tutorial", "seed": 0, "error": None,
                                "metrics": {"final_loss": 8.94364, "b": -2.2, "d": 0.3}}])
    counts = count_claims([regime, fit])
    assert (counts.testable, counts.resolved, counts.held, counts.reversed, counts.not_resolved) == (4, 2, 1, 1, 2)
    assert [(r, c.family, c.claim.text) for r, c in counts.out_of_regime] == [
        ("reg", "cnn", "good lowers the error"), ("reg", "cnn", "bad lowers the error")]
    assert [u.text for _, u in counts.untestable] == ["tiny effect"]
    assert [c.verdict for _, c in counts.deterministic] == [HELD, HELD, REVERSED]
    text = headline(counts)
    assert text.startswith("**2 of 4 testable claims resolved (50%)** after Holm's correction within each recipe: "
                           "1 held, 1 went the other way, 2 not resolved.")
    assert "2 out of regime" in text and "1 declared untestable" in text and "3 deterministic checks" in text
    assert "counts once per family" in text
    md = write_report([regime, fit], tmp_path, {"command": "c", "machine": {}})[0].read_text()
    assert "| reg | tiny effect | MDE far above the paper's effect | 1.2 | 0.16 | 60 |" in md
    assert "- reg: [cnn] good lowers the error: **held** (out of regime); failed: overfits (cnn/base: 1.00; needs " in md
    assert "| fit | d | 0.3000000 vs 0.2500000" in md and "**did not match** |" in md
    verdict_table = md[md.index("| recipe | claim | test |"):md.index("## How to read this")]
    assert "| fit |" not in verdict_table.split("**Deterministic checks**")[0]  # the checks are outside the table


def test_regime_table_is_shown_for_held_and_failed_claims_alike(tmp_path: Path) -> None:
    """Every claim that lists conditions gets its rows, whatever its verdict: the same rule for held and reversed."""
    res = summarize(_regime_recipe(), _regime_results())
    md = write_report([res], tmp_path, {"command": "c", "machine": {}})[0].read_text()
    table = md[md.index("| claim | condition | rule | arm |"):]
    table = table[:table.index("\n\n")]
    rows = table.splitlines()[2:]
    assert len(rows) == 4  # good and bad, in both families; noisy lists no condition
    rule = "train − validation accuracy gap ≥ 2.00 pp"
    assert f"| [vit] good lowers the error | overfits: the baseline overfits | {rule} | vit/base | 3.00 | met | **held** |" in rows
    assert (f"| [vit] bad lowers the error | overfits: the baseline overfits | {rule} | vit/base | 3.00 | met | "
            "**went the other way** |") in rows
    assert (f"| [cnn] good lowers the error | overfits: the baseline overfits | {rule} | cnn/base | 1.00 | not met | "
            "**held** (out of regime) |") in rows
    assert (f"| [cnn] bad lowers the error | overfits: the baseline overfits | {rule} | cnn/base | 1.00 | not met | "
            "**went the other way** (out of regime) |") in rows
    # the same claims with an overfitting cnn baseline: every condition met, no claim out of regime
    met = summarize(_regime_recipe(), _regime_results(cnn_gap=2.5))
    assert all(c.in_regime for c in met.claims) and all(ch.met for c in met.claims for ch in c.regime)


def test_forest_plot_opens_the_report_and_is_inlined_with_coloured_verdict_cells(tmp_path: Path) -> None:
    res = summarize(_regime_recipe(), _regime_results())
    rows = forest_rows([res])
    assert [r.status for r in rows] == ["held", "held", "went the other way", "went the other way", "not resolved",
                                        "not resolved"]  # each claim in its families, vit first
    assert [r.hollow for r in rows] == [False, True, False, True, False, False]  # the cnn baseline does not overfit
    assert rows[0].panel == "reg: difference variant − reference, percentage points" and rows[0].band is None
    md_path, html_path = write_report([res], tmp_path, {"command": "c", "machine": {}})
    md = md_path.read_text()
    forest = tmp_path / "forest.png"
    assert forest.is_file() and forest.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert md.index("](forest.png)") < md.index("| recipe | claim | test |") < md.index("## How to read this")
    page = html_path.read_text()
    assert f"data:image/png;base64,{base64.b64encode(forest.read_bytes()).decode('ascii')}" in page
    assert re.search(r'<td class="verdict-held"><strong>held</strong></td>', page)
    assert re.search(r'<td class="verdict-reversed verdict-out-of-regime"><strong>went the other way</strong> '
                     r"\(out of regime\)</td>", page)
    assert '<td class="verdict-unresolved"><strong>not resolved</strong></td>' in page


def test_verdict_class_names_only_verdict_cells() -> None:
    assert verdict_class("**held**") == "verdict-held"
    assert verdict_class("**did not match**") == "verdict-reversed"
    assert verdict_class("**not resolved** (out of regime)") == "verdict-unresolved verdict-out-of-regime"
    assert verdict_class("held") == "" and verdict_class("**Paper.** held") == ""


def test_margin_bands_follow_the_test() -> None:
    """TOST: ±m; non-inferiority: the tolerated loss, on the bad side of 0; direction by ≥ m: 0 to the claimed m."""
    recipe = recipe_from_dict({
        "name": "m", "kind": "image", "variants": {"a": {}, "b": {}}, "metrics": ["test_acc1", "test_error"],
        "claims": [
            {"text": "eq", "metric": "test_acc1", "variant": "b", "against": "a", "test": "equivalence", "margin": 1.0},
            {"text": "ni", "metric": "test_error", "variant": "b", "against": "a", "expect": "lower",
             "test": "noninferiority", "margin": 0.5},
            {"text": "by", "metric": "test_acc1", "variant": "b", "against": "a", "expect": "higher", "margin": 2.0},
        ],
    })
    results = [{"recipe": "m", "variant": v, "seed": k, "error": None,
                "metrics": {"test_acc1": 90.0 + k + (0.1 * k if v == "b" else 0), "test_error": 10.0 - k}}
               for v in ("a", "b") for k in range(3)]
    assert [r.band for r in forest_rows([summarize(recipe, results)])] == [(-1.0, 1.0), (0.0, 0.5), (0.0, 2.0)]
