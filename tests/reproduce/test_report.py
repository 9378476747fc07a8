"""vitlab.reproduce.report on synthetic results: intervals, the three verdicts, Markdown and self-contained HTML.

Reference: the verdict rules of vitlab.reproduce.stats applied by hand to made-up per-seed numbers whose
intervals are known in advance (differences far from 0, straddling 0, or reversed); scipy's ttest_rel for the
paired interval of a claim; per-seed contrasts computed by hand.
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
    family_agreement,
    regime_notes,
    shared_results,
    summarize,
    to_html,
    write_report,
)
from vitlab.reproduce.stats import (
    HELD,
    NOT_RESOLVED,
    REVERSED,
    mean_interval,
    minimum_detectable_effect,
    paired_interval,
    prob_greater,
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
    # reference: scipy's ttest_rel confidence interval on the per-seed errors; the bootstrap P(better) of stats
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
    assert vit.prob == prob_greater([-x for x in FAMILY_ERRORS["vit/reg"]], [-x for x in FAMILY_ERRORS["vit/base"]])
    assert vit.prob.p == 1.0
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
    assert "Do the model families agree?" in md and "| reg lowers the error | held | not resolved by the interval | partly" in md
    assert "train − validation accuracy gap (pp)" in md and "fitted temperature T" in md
    assert "| vit | base | " in md and "[vit] reg lowers the error" in md


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


def test_claims_that_went_the_other_way_get_the_regime_that_explains_them(tmp_path: Path) -> None:
    """A regulariser that raises the error while fitting its training split 8 pp worse is named as underfitting; one
    whose training fit matches the baseline's gets the 'not explained' note; claims that held get no note."""
    recipe = recipe_from_dict({
        "name": "reg", "kind": "image", "families": {"vit": {"model": "v"}, "cnn": {"model": "c"}},
        "variants": {"base": {}, "mix": {}}, "metrics": ["test_error"],
        "claims": [{"text": "mix lowers the error", "metric": "test_error", "variant": "mix", "against": "base", "expect": "lower"}],
    })
    regime = {  # arm -> (test error per seed, training accuracy, train − val gap)
        "vit/base": ([8.0, 8.5, 6.5, 8.2, 6.5], 95.0, 4.0),
        "vit/mix": ([15.5, 12.2, 14.6, 12.3, 15.2], 87.0, 2.0),   # worse on every seed, trains 8 pp worse
        "cnn/base": ([4.8, 4.2, 4.4, 4.6, 3.7], 97.0, 3.0),
        "cnn/mix": ([6.6, 6.7, 6.6, 7.0, 5.1], 96.8, 3.1),        # worse on every seed, trains as well
    }
    results = [
        {"recipe": "reg", "family": arm.split("/")[0], "variant": arm.split("/")[1], "seed": seed, "error": None,
         "seconds": 1.0, "metrics": {"test_error": err, "train_acc1": train, "train_val_gap": gap, "temperature": 0.8}}
        for arm, (errors, train, gap) in regime.items() for seed, err in enumerate(errors)
    ]
    res = summarize(recipe, results)
    assert [c.verdict for c in res.claims] == [REVERSED, REVERSED]
    vit, cnn = regime_notes(res)
    assert vit.startswith("[vit] mix lowers the error: went the other way; vit/mix reached 87.0 % training-split accuracy")
    assert "underfits at this budget" in vit and "95.0 %" in vit
    assert "do not explain it" in cnn
    md = write_report([res], tmp_path, {"command": "c", "machine": {}})[0].read_text()
    assert "Regime of the claims that went the other way" in md and "training-split top-1 accuracy" in md
    held = summarize(recipe, [{**r, "metrics": {**r["metrics"], "test_error": -r["metrics"]["test_error"]}} for r in results])
    assert [c.verdict for c in held.claims] == [HELD, HELD] and regime_notes(held) == []


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
