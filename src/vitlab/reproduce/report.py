"""The evidence report: ``report.md`` and a self-contained ``report.html`` (PNGs embedded as base64).

The rules (issue 29) are fixed in the recipes before the run (:mod:`vitlab.reproduce.recipes`); this module applies
them and counts:

* **Each claim is tested** on the per-seed values of the seeds its arms share, d_s = a_s − b_s (a contrast's
  sides with ``minus``), by :func:`vitlab.reproduce.stats.test_claim`: direction, non-inferiority ±m or TOST
  equivalence ±m at the recipe's α. Arms that share fewer than two seeds (failed runs) fall back to Welch's
  test and interval (``paired=False``), marked "Welch".
* **Holm's correction within each recipe** (:func:`vitlab.reproduce.stats.apply_holm`): the family is every claim
  the recipe runs (each model family's evaluation of a claim is one member); a claim without results enters with
  p = 1, so a failed run never shrinks the family. The verdict is the adjusted one: held / went the other way /
  not resolved; the interval shown is the unadjusted one of the test (95 % for direction, 90 % for
  non-inferiority and TOST).
* **Regime**: each condition a claim lists (``regime:``) is measured as the mean over seeds of its metric for
  each of its arms (:meth:`vitlab.reproduce.recipes.Recipe.condition_arms`); a condition whose metric was not
  measured counts as not met. A claim with a failed condition keeps its verdict, marked *out of regime*, and is
  not counted; every claim with conditions gets its regime table, whatever its verdict.
* **Counting** (:func:`count_claims`): the headline is resolved (held or went the other way) of *testable* (the
  statistical claims whose conditions all hold), a claim run on two families once per family; beside it the
  out-of-regime claims, the claims declared untestable before the run (``untestable:``), and the deterministic
  checks (``expect: match``) in their own table.
* **P(better)**: the share of paired seeds on which the variant is better in the claim's direction, with its
  exact Clopper–Pearson interval (:func:`vitlab.reproduce.stats.prob_greater_exact`).

Per recipe: each arm's metrics as mean ± half-width of the 95 % Student-t interval over seeds
(:func:`vitlab.reproduce.stats.mean_interval`) with the regime metrics beside them and the paper's number; the
claims; the regime table; whether the model families agree; a plot of the seeds. At the top: the
pre-registration lines (:mod:`vitlab.reproduce.protocol`), the headline, a forest plot of every statistical
claim (:func:`vitlab.viz.reproduce.plot_forest`) and the verdict table.

The report is built once as a list of blocks (heading, paragraph, table, image) and rendered twice, as
Markdown and as HTML, so the two always say the same thing.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markdown_it import MarkdownIt

from vitlab.io import atomic_write_text
from vitlab.reproduce.recipes import METRICS, Claim, Recipe, RegimeCondition, Untestable, arm_name
from vitlab.reproduce.stats import (
    DIRECTION,
    EQUIVALENCE,
    HELD,
    NONINFERIORITY,
    NOT_RESOLVED,
    REVERSED,
    ClaimTest,
    ExactProbGreater,
    Interval,
    apply_holm,
    mean_interval,
    minimum_detectable_effect,
    prob_greater_exact,
    seeds_for_half_width,
    test_claim,
)
from vitlab.viz.reproduce import ForestRow, plot_forest
from vitlab.viz.training import plot_seed_comparison

if TYPE_CHECKING:
    from collections.abc import Sequence

    from markdown_it.renderer import RendererHTML
    from markdown_it.token import Token
    from markdown_it.utils import OptionsDict

VERDICT_TEXT = {
    HELD: "held",
    NOT_RESOLVED: "not resolved",
    REVERSED: "went the other way",
}
MATCH_FAILED_TEXT = "did not match"
OUT_OF_REGIME = "out of regime"
TEST_TEXT = {DIRECTION: "direction", NONINFERIORITY: "non-inferiority", EQUIVALENCE: "TOST"}
REGIME_METRICS = ("train_acc1", "train_val_gap", "temperature")  # shown for every image recipe: the regime of a claim
TARGET_HALF_WIDTH = 0.5  # percentage points: the resolution the seeds are chosen for (issue 15)


# ------------------------------------------------------------------------------------------ the numbers
@dataclass(frozen=True)
class RegimeCheck:
    """One regime condition measured on one arm: ``value`` is the mean over seeds (None: not measured)."""

    condition: RegimeCondition
    arm: str
    value: float | None

    @property
    def met(self) -> bool:
        return self.value is not None and self.condition.holds(self.value)


@dataclass
class ClaimResult:
    """A claim (on arm names) with what the runs say about it.

    ``test`` is the claim's test after Holm's correction (None for a deterministic ``match`` check); ``verdict``
    is its adjusted verdict (or the match's); ``diff`` the test's unadjusted interval of variant − against (−
    (c − d) with ``minus``); ``regime`` the claim's conditions measured on their arms.
    """

    claim: Claim
    verdict: str
    diff: Interval | None
    ours: str  # the numbers, written out
    paper: str
    family: str = ""  # the family a within-family claim was evaluated in ("" otherwise)
    index: int = 0  # the claim's position in the recipe (the same for its per-family evaluations)
    prob: ExactProbGreater | None = None  # P(the variant is better in the claim's direction), paired seeds
    mde: float | None = None  # minimum detectable effect at 80 % power with these seeds and this spread
    seeds_needed: int | None = None  # seeds for a ±TARGET_HALF_WIDTH interval at this spread (% metrics)
    test: ClaimTest | None = None
    regime: list[RegimeCheck] = field(default_factory=list)

    @property
    def deterministic(self) -> bool:
        """A ``match`` check (no statistics): reported apart, outside the count."""
        return self.claim.expect == "match"

    @property
    def in_regime(self) -> bool:
        """Whether every regime condition the claim lists holds (True when it lists none)."""
        return all(check.met for check in self.regime)

    def failed_conditions(self) -> list[RegimeCheck]:
        """The measurements that fail their condition."""
        return [check for check in self.regime if not check.met]


@dataclass
class RecipeResult:
    """The per-arm intervals and claim verdicts of one recipe."""

    recipe: Recipe
    values: dict[str, dict[str, list[float]]]  # arm -> metric -> per-seed values (in seed order)
    intervals: dict[str, dict[str, Interval]]
    claims: list[ClaimResult]
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    devices: set[str] = field(default_factory=set)
    by_seed: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)  # arm -> metric -> seed -> value


def fmt(metric: str, value: float) -> str:
    """``value`` in the metric's print format."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return METRICS[metric].fmt.format(value)


def fmt_interval(metric: str, interval: Interval) -> str:
    """``mean ± half`` (95% interval), or the mean alone for one seed."""
    if math.isnan(interval.low):
        return f"{fmt(metric, interval.mean)} (one seed)"
    return f"{fmt(metric, interval.mean)} ± {fmt(metric, interval.half_width)}"


def fmt_diff(metric: str, interval: Interval, level: float | None = None) -> str:
    """``+d [low, high]`` with signs, then the interval's level when given (and ``Welch`` when not paired)."""
    spec = METRICS[metric].fmt.replace("{:", "{:+")
    if math.isnan(interval.low):
        return f"{spec.format(interval.mean)} (one seed, no interval)"
    welch = ", Welch" if interval.method == "welch" else ""
    shown = f" ({100 * level:.0f}%)" if level is not None else ""
    return f"{spec.format(interval.mean)} [{spec.format(interval.low)}, {spec.format(interval.high)}{welch}]{shown}"


def _unit(metric: str) -> str:
    unit = METRICS[metric].unit
    return f" ({unit})" if unit else ""


def _paper_value(paper_values: dict[str, dict[str, float]], arm: str | None, metric: str) -> float | None:
    """The paper's number for an arm: keyed by the arm name, else by its variant name."""
    if arm is None:
        return None
    for key in (arm, arm.split("/")[-1]):
        if metric in paper_values.get(key, {}):
            return paper_values[key][metric]
    return None


def _claim_series(
    claim: Claim, by_seed: dict[str, dict[str, dict[int, float]]]
) -> tuple[list[float], list[float], list[int]]:
    """Per shared seed: the claim's two sides a_s = variant (− minus[0]) and b_s = against (− minus[1])."""
    m = claim.metric
    arms = [claim.variant, claim.against] + (list(claim.minus) if claim.minus else [])
    series = [by_seed.get(a or "", {}).get(m, {}) for a in arms]
    seeds = sorted(set.intersection(*(set(s) for s in series)))
    a = [series[0][k] - (series[2][k] if claim.minus else 0.0) for k in seeds]
    b = [series[1][k] - (series[3][k] if claim.minus else 0.0) for k in seeds]
    return a, b, seeds


def _match_result(claim: Claim, ours_v: list[float], paper_v: float | None, family: str, index: int) -> ClaimResult:
    """A deterministic check: held when |ours − paper| / |paper| ≤ the claim's relative tolerance."""
    metric = claim.metric
    if not ours_v or paper_v is None:
        return ClaimResult(claim, NOT_RESOLVED, None, "no result", "n/a", family, index)
    ours = sum(ours_v) / len(ours_v)
    rel = abs(ours - paper_v) / max(abs(paper_v), 1e-300)
    text = (f"{fmt(metric, ours)} vs {fmt(metric, paper_v)} "
            f"(relative difference {rel:.1e}, tolerance {claim.margin:.0e})")
    verdict = HELD if rel <= claim.margin else REVERSED
    return ClaimResult(claim, verdict, None, text, fmt(metric, paper_v), family, index)


def untested(claim: Claim, alpha: float) -> ClaimTest:
    """The test of a claim without results: p = 1 on both sides, NaN estimate, not resolved (it still counts in
    Holm's family: the family is fixed by the recipe, not by which runs succeeded)."""
    nan = float("nan")
    level = 1.0 - alpha if claim.test == DIRECTION else 1.0 - 2.0 * alpha
    return ClaimTest(claim.test, claim.expected_sign, float(claim.margin or 0.0), alpha, nan,
                     Interval(nan, nan, nan, 0, nan), level, 1.0, 1.0, NOT_RESOLVED, NOT_RESOLVED)


def evaluate_claim(
    claim: Claim,
    by_seed: dict[str, dict[str, dict[int, float]]],
    paper_values: dict[str, dict[str, float]],
    family: str = "",
    index: int = 0,
    alpha: float = 0.05,
) -> ClaimResult:
    """One claim (on arm names) tested on the per-seed values, before Holm's correction (:func:`summarize` applies it).

    Arms that share at least two seeds: the paired test (:func:`vitlab.reproduce.stats.test_claim`); arms that do
    not (runs failed): Welch's test over all their seeds (not for ``minus`` claims); no values: :func:`untested`.
    """
    metric = claim.metric
    ours_v = list(by_seed.get(claim.variant, {}).get(metric, {}).values())
    paper_v = _paper_value(paper_values, claim.variant, metric)
    if claim.expect == "match":
        return _match_result(claim, ours_v, paper_v, family, index)
    base_v = list(by_seed.get(claim.against or "", {}).get(metric, {}).values())
    paper_a = _paper_value(paper_values, claim.against, metric)
    paper = "n/a" if paper_v is None or paper_a is None else f"{paper_v} vs {paper_a}"
    a, b, _ = _claim_series(claim, by_seed)
    sign, margin = claim.expected_sign, float(claim.margin or 0.0)
    if len(a) >= 2:
        test = test_claim(a, b, claim.test, sign, margin, alpha)
    elif len(ours_v) >= 2 and len(base_v) >= 2 and claim.minus is None:
        test = test_claim(ours_v, base_v, claim.test, sign, margin, alpha, paired=False)
    else:
        text = "no result" if not ours_v or not base_v else "fewer than two shared seeds"
        return ClaimResult(claim, NOT_RESOLVED, None, text, paper, family, index, test=untested(claim, alpha))
    diff = test.interval
    prob = prob_greater_exact([sign * x for x in a], [sign * y for y in b]) if diff.method == "paired" else None
    mde = seeds = None
    if diff.method == "paired" and math.isfinite(diff.sd):
        mde = minimum_detectable_effect(diff.sd, diff.n)
        if METRICS[metric].unit in ("%", "pp"):
            seeds = seeds_for_half_width(diff.sd, TARGET_HALF_WIDTH)
    ours = fmt_diff(metric, diff, test.level)
    return ClaimResult(claim, test.verdict, diff, ours, paper, family, index, prob, mde, seeds, test)


def regime_checks(
    recipe: Recipe, claim: Claim, family: str, intervals: dict[str, dict[str, Interval]]
) -> list[RegimeCheck]:
    """The claim's regime conditions, each measured (mean over seeds) on each of its arms."""
    checks = []
    for name in claim.regime:
        condition = recipe.regime[name]
        for arm in recipe.condition_arms(condition, claim, family):
            interval = intervals.get(arm, {}).get(condition.metric)
            checks.append(RegimeCheck(condition, arm, None if interval is None else interval.mean))
    return checks


def _collect(recipe: Recipe, results: list[dict[str, Any]]) -> tuple[dict, list[str], float, set[str]]:
    """arm -> metric -> seed -> value from this recipe's results, the failed runs, the compute and the devices."""
    by_seed: dict[str, dict[str, dict[int, float]]] = {a: {} for a in recipe.arm_names()}
    failed, seconds, devices = [], 0.0, set()
    for result in results:
        arm = arm_name(result.get("family", ""), result["variant"])
        if result["recipe"] != recipe.name or arm not in by_seed:
            continue
        seconds += float(result.get("seconds", 0.0))
        devices.add(str(result.get("device", "cpu")))
        if result.get("error"):
            failed.append(f"{arm} seed {result['seed']}: {result['error']}")
            continue
        for metric, value in result["metrics"].items():
            by_seed[arm].setdefault(metric, {})[int(result["seed"])] = float(value)
    return by_seed, failed, seconds, devices


def summarize(recipe: Recipe, results: list[dict[str, Any]]) -> RecipeResult:
    """Collect one recipe's results (as written by :func:`vitlab.reproduce.runner.run_one`) into intervals, tests
    corrected by Holm over the recipe's claims, and regime checks."""
    by_seed, failed, seconds, devices = _collect(recipe, results)
    values = {a: {m: [per[k] for k in sorted(per)] for m, per in metrics.items()} for a, metrics in by_seed.items()}
    intervals = {arm: {m: mean_interval(vals) for m, vals in metrics.items() if vals}
                 for arm, metrics in values.items()}
    claims = []
    for i, family, claim in recipe.evaluated_claims():
        result = evaluate_claim(claim, by_seed, recipe.paper_values, family, i, recipe.alpha)
        result.regime = regime_checks(recipe, claim, family, intervals)
        claims.append(result)
    family_members = [c for c in claims if c.test is not None]
    for c, adjusted in zip(family_members, apply_holm([c.test for c in family_members], recipe.alpha)):
        c.test, c.verdict = adjusted, adjusted.verdict
    return RecipeResult(recipe, values, intervals, claims, failed, seconds, devices, by_seed)


def shared_results(results: list[dict[str, Any]]) -> list[str]:
    """The runs that several arms share (trained once: :mod:`vitlab.reproduce.runner`), one line per group of arms,
    in the order the groups first appear, e.g. ``cutmix vit/baseline = label_smoothing vit/no_smoothing (seeds 0,
    1, 2)``; ``[]`` when no run is shared.

    Args:
        results: the results as :func:`vitlab.reproduce.runner.run_all` returns them (``results.json``); a shared
            one lists every ``{recipe, arm}`` using it in ``shared_by``.
    """
    seeds: dict[tuple[tuple[str, str], ...], set[int]] = {}
    for result in results:
        arms = tuple(sorted({(str(p["recipe"]), str(p["arm"])) for p in result.get("shared_by") or []}))
        if len(arms) > 1:
            seeds.setdefault(arms, set()).add(int(result["seed"]))
    lines = []
    for arms, used in seeds.items():
        listed = f"seed{'s' if len(used) > 1 else ''} " + ", ".join(str(k) for k in sorted(used))
        lines.append(" = ".join(f"{recipe} {arm}" for recipe, arm in arms) + f" ({listed})")
    return lines


def family_agreement(results: list[ClaimResult]) -> str:
    """Whether the per-family verdicts of one claim agree: all the same, partly (some not resolved), or not."""
    verdicts = {r.verdict for r in results}
    if len(verdicts) == 1:
        return f"agree ({VERDICT_TEXT[next(iter(verdicts))]})"
    if {HELD, REVERSED} <= verdicts:
        return "disagree (opposite directions)"
    return "partly: one is not resolved"


@dataclass
class Counts:
    """The headline's numbers: resolved of testable, and what is listed beside them (each a (recipe, item) pair).

    ``testable``: the statistical claims whose regime conditions all hold (a claim run on two families once per
    family); ``resolved`` = ``held`` + ``reversed`` of them, after Holm; ``out_of_regime``: the statistical claims
    with a failed condition (not counted); ``untestable``: declared so before the run (not run); ``deterministic``:
    the ``match`` checks.
    """

    testable: int
    held: int
    reversed: int
    not_resolved: int
    out_of_regime: list[tuple[str, ClaimResult]]
    untestable: list[tuple[str, Untestable]]
    deterministic: list[tuple[str, ClaimResult]]

    @property
    def resolved(self) -> int:
        return self.held + self.reversed


def count_claims(summaries: list[RecipeResult]) -> Counts:
    """Count the claims for the headline (see :class:`Counts`)."""
    statistical = [(s.recipe.name, c) for s in summaries for c in s.claims if not c.deterministic]
    testable = [c for _, c in statistical if c.in_regime]
    return Counts(
        testable=len(testable),
        held=sum(c.verdict == HELD for c in testable),
        reversed=sum(c.verdict == REVERSED for c in testable),
        not_resolved=sum(c.verdict == NOT_RESOLVED for c in testable),
        out_of_regime=[(r, c) for r, c in statistical if not c.in_regime],
        untestable=[(s.recipe.name, u) for s in summaries for u in s.recipe.untestable],
        deterministic=[(s.recipe.name, c) for s in summaries for c in s.claims if c.deterministic],
    )


# ------------------------------------------------------------------------------------------ the document
@dataclass
class Block:
    """A piece of the report: ``kind`` in h1, h2, p, table, image, list."""

    kind: str
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)  # table: first row is the header; list: items
    path: Path | None = None  # image


def _md_inline(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(blocks: list[Block], image_base: Path) -> str:
    """Render blocks as GitHub Markdown; image paths relative to ``image_base``."""
    lines: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            lines += [f"# {b.text}", ""]
        elif b.kind == "h2":
            lines += [f"## {b.text}", ""]
        elif b.kind == "h3":
            lines += [f"### {b.text}", ""]
        elif b.kind == "p":
            lines += [b.text, ""]
        elif b.kind == "list":
            lines += [f"- {item[0]}" for item in b.rows] + [""]
        elif b.kind == "table":
            header, *body = b.rows
            lines.append("| " + " | ".join(_md_inline(c) for c in header) + " |")
            lines.append("|" + "|".join(" --- " for _ in header) + "|")
            lines += ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in body]
            lines.append("")
        elif b.kind == "image" and b.path is not None:
            src = _image_src(b.path, image_base)
            dest = f"<{src}>" if re.search(r"[\s()]", src) else src  # CommonMark: <...> may hold spaces, parentheses
            lines += [f"![{b.text}]({dest})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _image_src(path: Path, image_base: Path) -> str:
    """An image's address in the Markdown: relative to ``image_base`` where it lies under it."""
    return (path.relative_to(image_base) if path.is_relative_to(image_base) else path).as_posix()


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
td.verdict-held{background:#d9f0d3}td.verdict-reversed{background:#f8d0cc}td.verdict-unresolved{background:#ececec}
td.verdict-out-of-regime{background-image:
repeating-linear-gradient(135deg,transparent 0 6px,rgba(0,0,0,.07) 6px 8px)}"""

VERDICT_CLASSES = {VERDICT_TEXT[HELD]: "verdict-held", VERDICT_TEXT[REVERSED]: "verdict-reversed",
                   MATCH_FAILED_TEXT: "verdict-reversed", VERDICT_TEXT[NOT_RESOLVED]: "verdict-unresolved"}


def verdict_class(cell: str) -> str:
    """The CSS class(es) of a table cell that holds a verdict (``**held**``, ``**not resolved** (out of regime)``,
    ...), or ``""`` for any other cell."""
    for text, css in VERDICT_CLASSES.items():
        if cell.startswith(f"**{text}**"):
            return css + (" verdict-out-of-regime" if OUT_OF_REGIME in cell else "")
    return ""


def _verdict_td(renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict,
                env: dict[str, Any]) -> str:
    """markdown-it's ``td_open`` with the verdict's colour class added to a cell whose text is a verdict."""
    css = verdict_class(tokens[idx + 1].content) if idx + 1 < len(tokens) else ""
    if css:
        tokens[idx].attrSet("class", css)
    return renderer.renderToken(tokens, idx, options, env)


def _inline_png(renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict,
                env: dict[str, Any]) -> str:
    """markdown-it's image rule with the picture's file inlined as a data: URI (``env["images"]``: src -> file);
    an image the report did not draw (Markdown in a recipe's text) shows its alt text: the page stays self-contained."""
    token = tokens[idx]
    path = env["images"].get(token.attrGet("src"))
    if path is None:
        return html.escape(token.content)
    token.attrSet("src", "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii"))
    return renderer.image(tokens, idx, options, env)


def to_html(blocks: list[Block], title: str) -> str:
    """Render blocks as one self-contained HTML page (images inlined as data: URIs, no external links).

    The body is the blocks' Markdown (:func:`to_markdown`) rendered by markdown-it-py: CommonMark plus GitHub's
    tables, with raw HTML off (so ``<`` in a text is shown, not interpreted). The page therefore shows exactly
    what ``report.md`` shows where GitHub renders it, and colours the cells that hold a verdict
    (:func:`verdict_class`). Images whose file is missing are left out.
    """
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.add_render_rule("image", _inline_png)
    md.add_render_rule("td_open", _verdict_td)
    base = Path()  # any base: the image rule looks each address up, as markdown-it normalised it
    shown = [b for b in blocks if b.kind != "image" or (b.path is not None and b.path.is_file())]
    images = {md.normalizeLink(_image_src(b.path, base)): b.path for b in shown if b.kind == "image" and b.path}
    body = md.render(to_markdown(shown, base), {"images": images})
    head = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>")
    return f"{head}\n{body}</body></html>\n"




# ------------------------------------------------------------------------------------------ cells
def _verdict_cell(result: ClaimResult) -> str:
    """``**held**``, ``**went the other way**``, ``**not resolved**`` (+ ``(out of regime)``), or a match's verdict."""
    if result.deterministic:
        return f"**{MATCH_FAILED_TEXT if result.verdict == REVERSED else VERDICT_TEXT[result.verdict]}**"
    cell = f"**{VERDICT_TEXT[result.verdict]}**"
    return cell if result.in_regime else f"{cell} ({OUT_OF_REGIME})"


def _claim_label(c: ClaimResult) -> str:
    return f"[{c.family}] {c.claim.text}" if c.family else c.claim.text


def _margin_text(metric: str, margin: float) -> str:
    """A margin in the unit of a difference of the metric (percentage points for % metrics)."""
    unit = " pp" if METRICS[metric].unit in ("%", "pp") else ""
    return f"{fmt(metric, margin)}{unit}"


def _test_text(claim: Claim) -> str:
    """direction (by ≥ m) / non-inferiority, margin m / TOST ±m."""
    if claim.test == EQUIVALENCE:
        return f"TOST ±{_margin_text(claim.metric, claim.margin)}"
    if claim.test == NONINFERIORITY:
        return f"non-inferiority, margin {_margin_text(claim.metric, claim.margin)}"
    return f"direction, by ≥ {_margin_text(claim.metric, claim.margin)}" if claim.margin else "direction"


def _fmt_p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _fmt_prob(c: ClaimResult) -> str:
    if c.prob is None:
        return "n/a"
    return f"{c.prob.p:.2f} [{c.prob.low:.2f}, {c.prob.high:.2f}]"


def _fmt_resolution(c: ClaimResult) -> str:
    """Half-width, the minimum detectable effect (80 % power) and, for % metrics, the seeds for ±0.5 pp."""
    if c.diff is None or math.isnan(c.diff.low):
        return "n/a"
    metric = c.claim.metric
    parts = [f"±{fmt(metric, c.diff.half_width)}"]
    if c.mde is not None:
        parts.append(f"MDE {fmt(metric, c.mde)}")
    if c.seeds_needed is not None:
        parts.append(f"{c.seeds_needed} seeds for ±{TARGET_HALF_WIDTH:g} pp")
    return "; ".join(parts)


def _regime_cell(c: ClaimResult) -> str:
    """— (no conditions), yes, or no: the names of the failed conditions."""
    if not c.regime:
        return "—"
    failed = list(dict.fromkeys(check.condition.name for check in c.failed_conditions()))
    return "yes" if not failed else "no: " + ", ".join(failed)


def _failed_text(c: ClaimResult) -> str:
    """The failed conditions with their measurements, e.g. ``overfits (vit/baseline: 1.20 < 2.00 pp)``."""
    parts = []
    for check in c.failed_conditions():
        cond = check.condition
        measured = "not measured" if check.value is None else fmt(cond.metric, check.value)
        parts.append(f"{cond.name} ({check.arm}: {measured}; needs {cond.rule()})")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------ a recipe's section
def _intro_blocks(r: Recipe) -> list[Block]:
    """The recipe's heading, then its paper, the paper's claim and how this setting differs, where given."""
    blocks = [Block("h2", r.title)]
    if r.paper:
        blocks.append(Block("p", f"**Paper.** {r.paper}"))
    if r.paper_quote:
        blocks.append(Block("p", f"**Claim.** {r.paper_quote}"))
    if r.setting:
        blocks.append(Block("p", f"**Setting here vs the paper.** {r.setting}"))
    return blocks


def _shown_metrics(res: RecipeResult) -> list[str]:
    """The recipe's metrics (and, for image recipes, the regime metrics) that some arm has a value for."""
    r = res.recipe
    arms = r.arm_names()
    listed = list(r.metrics) + ([m for m in REGIME_METRICS if m not in r.metrics] if r.kind == "image" else [])
    return [m for m in listed if any(m in res.intervals[a] for a in arms)]


def _results_rows(res: RecipeResult, shown: list[str]) -> list[list[str]]:
    """The results table (header row first): per arm, each shown metric's value, then the paper's numbers."""
    r = res.recipe
    header = ["family", "variant"] if r.families else ["variant"]
    header += [f"{METRICS[m].label}{_unit(m)}" for m in shown]
    in_paper = {m for pv in r.paper_values.values() for m in pv}
    paper_cols = [m for m in r.metrics if m in in_paper] + sorted(in_paper - set(r.metrics))
    header += [f"paper: {r.paper_metric}" if len(paper_cols) == 1 and r.paper_metric else f"paper: {METRICS[m].label}"
               for m in paper_cols]
    rows = [header]
    for family, variant in r.arms():
        arm = arm_name(family, variant)
        row = [family, variant] if r.families else [variant]
        for m in shown:
            interval = res.intervals[arm].get(m)
            if interval is None:
                row.append("n/a")
            else:
                row.append(fmt(m, interval.mean) if r.kind == "legendre" else fmt_interval(m, interval))
        for m in paper_cols:
            value = _paper_value(r.paper_values, arm, m)
            row.append("—" if value is None else str(value))
        rows.append(row)
    return rows


def _results_caption(res: RecipeResult, n_seeds: int) -> str:
    """The line above the results table: what its numbers are, and the compute they took on which devices."""
    r = res.recipe
    what = "one deterministic run" if r.kind == "legendre" else f"mean ± 95% interval half-width over {n_seeds} seeds"
    return f"Results ({what}; compute {res.seconds / 60:.1f} min on {', '.join(sorted(res.devices)) or 'n/a'}):"


def _claim_rows(res: RecipeResult) -> list[list[str]]:
    """The claims table (header row first): each claim's test, numbers here and in the paper, and the verdict."""
    if all(c.deterministic for c in res.claims):
        claim_rows = [["claim", "here", "paper", "verdict"]]
        claim_rows += [[c.claim.text, c.ours, c.paper, _verdict_cell(c)] for c in res.claims]
        return claim_rows
    claim_rows = [["claim", "test", "difference (variant − reference) [unadjusted interval]", "p (raw; Holm)",
                   "P(better) [exact 95%]", "resolution", "regime met?", "paper", "verdict"]]
    for c in res.claims:
        p = "n/a" if c.test is None else f"{_fmt_p(c.test.p)}; {_fmt_p(c.test.p_adjusted)}"
        test = "match" if c.deterministic else _test_text(c.claim)
        claim_rows.append([_claim_label(c), test, c.ours, p, _fmt_prob(c), _fmt_resolution(c), _regime_cell(c),
                           c.paper, _verdict_cell(c)])
    return claim_rows


def _regime_rows(res: RecipeResult) -> list[list[str]]:
    """The regime table (header row first): per claim that lists conditions, each condition on each arm."""
    rows = [["claim", "condition", "rule", "arm", "measured (mean over seeds)", "met", "verdict"]]
    for c in res.claims:
        for check in c.regime:
            cond = check.condition
            value = "not measured" if check.value is None else fmt(cond.metric, check.value)
            met = "met" if check.met else ("not measured (counts as not met)" if check.value is None else "not met")
            rows.append([_claim_label(c), f"{cond.name}: {cond.text}", cond.rule(), check.arm, value, met,
                         _verdict_cell(c)])
    return rows


def _agreement_rows(res: RecipeResult) -> list[list[str]]:
    """The family-agreement table (header row first): per within-family claim, each family's verdict."""
    r = res.recipe
    agree_rows = [["claim"] + list(r.families) + ["families"]]
    for i, claim in enumerate(r.claims):
        per = [c for c in res.claims if c.index == i and c.family]
        if per:
            agree_rows.append([claim.text] + [VERDICT_TEXT[c.verdict] for c in per] + [family_agreement(per)])
    return agree_rows


def _seed_plot_blocks(res: RecipeResult, shown: list[str], image_dir: Path) -> list[Block]:
    """The recipe's first claim metric (or first shown metric) per seed and arm, as an image block."""
    r = res.recipe
    metric = shown[0] if not r.claims else r.claims[0].metric
    path = image_dir / f"{r.name}_{metric}.png"
    plotted = [a for a in r.arm_names() if metric in res.intervals[a]]
    if not plotted:
        return []
    plot_seed_comparison(
        plotted,
        [res.values[a][metric] for a in plotted],
        [(res.intervals[a][metric].mean, res.intervals[a][metric].low, res.intervals[a][metric].high)
         for a in plotted],
        f"{METRICS[metric].label}{_unit(metric)}",
        path,
        title=r.title,
    )
    return [Block("image", text=f"{r.name}: {METRICS[metric].label} per seed", path=path)]


def recipe_blocks(
    res: RecipeResult, image_dir: Path, extra_images: list[tuple[str, Path]] | None = None
) -> list[Block]:
    """The section of one recipe, writing its seed plots into ``image_dir``."""
    r = res.recipe
    blocks = _intro_blocks(r)
    n_seeds = max((len(v) for m in res.values.values() for v in m.values()), default=0)
    shown = _shown_metrics(res)
    blocks.append(Block("p", _results_caption(res, n_seeds)))
    blocks.append(Block("table", rows=_results_rows(res, shown)))
    if r.claims:
        k = sum(not c.deterministic for c in res.claims)
        if k:
            blocks.append(Block("p", f"Claims (Holm's family: the {k} claim evaluation{'s' if k > 1 else ''} below, "
                                     f"α = {r.alpha:g}):"))
        blocks.append(Block("table", rows=_claim_rows(res)))
    regime_rows = _regime_rows(res)
    if len(regime_rows) > 1:
        blocks.append(Block("p", "Regime (the conditions each claim needs to be testable, fixed in the recipe before "
                                 "the run; mean over seeds; shown for every claim that lists conditions, whatever its "
                                 "verdict):"))
        blocks.append(Block("table", rows=regime_rows))
    if len(r.families) > 1:  # one family has nothing to agree with
        agree_rows = _agreement_rows(res)
        if len(agree_rows) > 1:
            blocks.append(Block("p", "Do the model families agree?"))
            blocks.append(Block("table", rows=agree_rows))
    if r.kind != "legendre" and shown and n_seeds:
        blocks += _seed_plot_blocks(res, shown, image_dir)
    for caption, path in extra_images or []:
        blocks.append(Block("p", caption))
        blocks.append(Block("image", text=caption, path=path))
    if res.failed:
        blocks.append(Block("p", "Failed runs (left out of the numbers above):"))
        blocks.append(Block("list", rows=[[f] for f in res.failed]))
    return blocks


# ------------------------------------------------------------------------------------------ the top of the report
def _load_text(machine: dict[str, Any]) -> str:
    before, after = machine.get("load_before"), machine.get("load_average")
    if before is None or after is None:
        return ""
    text = f" 1-minute load average {before:.1f} at the start and {after:.1f} at the end"
    if max(before, after) > (machine.get("cpu_count") or 1):
        text += " (above the core count: other jobs shared the machine, so times are longer than on an idle one)"
    return text + "."


def _header_blocks(summaries: list[RecipeResult], header: dict[str, Any]) -> list[Block]:
    """The title, the command and machine, the pre-registration lines and the note."""
    blocks = [Block("h1", "vitlab reproduce: the papers' comparisons rerun at small scale")]
    machine = header.get("machine", {})
    gpu = machine.get("gpu")
    blocks.append(Block("p", (
        f"Command: `{header.get('command', 'vitlab reproduce')}` ({'quick' if header.get('quick') else 'full'} mode), "
        f"finished {header.get('date', '')}. Machine: {machine.get('processor', '?')}, "
        f"{machine.get('cpu_count', '?')} CPU cores"
        f"{', GPU ' + gpu if gpu else ', no GPU'}; {machine.get('platform', '')}; Python {machine.get('python', '?')}, "
        f"torch {machine.get('torch', '?')}. Wall time {header.get('wall_seconds', 0.0) / 60:.1f} min over "
        f"{header.get('invocations', 1)} invocation(s) that ran runs "
        f"({header.get('jobs', 1)} parallel runs; compute summed over runs "
        f"{sum(s.seconds for s in summaries) / 60:.1f} min)."
        + _load_text(machine))))
    blocks += [Block("p", line) for line in header.get("protocol") or []]
    if header.get("note"):
        blocks.append(Block("p", str(header["note"])))
    return blocks


def headline(counts: Counts) -> str:
    """The headline: resolved of testable, then what is listed beside it."""
    beside = (f"Beside them: {len(counts.out_of_regime)} out of regime (tested and shown, not counted), "
              f"{len(counts.untestable)} declared untestable before the run (not run), "
              f"{len(counts.deterministic)} deterministic check{'s' if len(counts.deterministic) != 1 else ''} "
              "(their own table). A claim run on two model families counts once per family.")
    if not counts.testable:
        return f"No testable statistical claim in this run. {beside}"
    share = 100.0 * counts.resolved / counts.testable
    return (f"**{counts.resolved} of {counts.testable} testable claims resolved ({share:.0f}%)** after Holm's "
            f"correction within each recipe: {counts.held} held, {counts.reversed} went the other way, "
            f"{counts.not_resolved} not resolved. {beside}")


def _panel(recipe: str, metric: str) -> str:
    """The forest plot's panel of a claim: one per recipe and unit (% metrics in percentage points)."""
    m = METRICS[metric]
    if m.unit in ("%", "pp"):
        return f"{recipe}: difference variant − reference, percentage points"
    return f"{recipe}: difference in {m.label}{_unit(metric)}"


def _band(claim: Claim) -> tuple[float, float] | None:
    """The claim's margin band: ±m (TOST), the tolerated loss (non-inferiority), the least difference (direction)."""
    if not claim.margin:
        return None
    if claim.test == EQUIVALENCE:
        return (-claim.margin, claim.margin)
    edge = (-1.0 if claim.test == NONINFERIORITY else 1.0) * claim.expected_sign * claim.margin
    return (min(0.0, edge), max(0.0, edge))


def forest_rows(summaries: list[RecipeResult]) -> list[ForestRow]:
    """One row per statistical claim with an estimate: its unadjusted interval, verdict, regime and margin band."""
    rows = []
    for s in summaries:
        for c in s.claims:
            if c.deterministic or c.diff is None or not math.isfinite(c.diff.mean):
                continue
            rows.append(ForestRow(_claim_label(c), _panel(s.recipe.name, c.claim.metric), c.diff.mean,
                                  c.diff.low, c.diff.high, VERDICT_TEXT[c.verdict], not c.in_regime, _band(c.claim)))
    return rows


FOREST_CAPTION = (
    "Every statistical claim: the difference variant − reference (for a contrast, the difference of differences) "
    "with the unadjusted interval of its test (95% for a direction claim, 90% for non-inferiority and TOST), in "
    "the claim's own unit: one panel per recipe and unit, each on its own scale (percentage points for accuracy and "
    "error; ECE and perplexity on their own axes), because a margin means something only in its unit and one "
    "large effect would flatten the small ones on a shared axis. The vertical line is zero; the shaded "
    "band is the claim's margin (±m for TOST, the tolerated loss for non-inferiority, the least difference claimed "
    "for a direction claim with a margin). Colour: the verdict after Holm's correction (green held, red went the "
    "other way, grey not resolved); a hollow marker: out of regime. A \"lower\" claim holds to the left of zero."
)


def _verdict_rows(summaries: list[RecipeResult]) -> list[list[str]]:
    """The verdict table (header row first): every statistical claim, its test, numbers, regime and verdict."""
    rows = [["recipe", "claim", "test", "difference [unadjusted interval]", "raw p", "Holm p",
             "P(better) [exact 95%]", "regime met?", "verdict"]]
    for s in summaries:
        for c in s.claims:
            if c.deterministic:
                continue
            rows.append([s.recipe.name, _claim_label(c), _test_text(c.claim), c.ours, _fmt_p(c.test.p),
                         _fmt_p(c.test.p_adjusted), _fmt_prob(c), _regime_cell(c), _verdict_cell(c)])
    return rows


def _beside_blocks(counts: Counts, shared: list[str]) -> list[Block]:
    """Out-of-regime claims, untestable ones, deterministic checks and shared runs: what the headline leaves out."""
    blocks = []
    if counts.out_of_regime:
        blocks.append(Block("p", "**Out of regime** (tested and shown above, not counted), with the failed condition:"))
        blocks.append(Block("list", rows=[[f"{r}: {_claim_label(c)}: {_verdict_cell(c)}; failed: {_failed_text(c)}"]
                                          for r, c in counts.out_of_regime]))
    if counts.untestable:
        blocks.append(Block("p", "**Declared untestable before the run** (in the recipes; not run, not counted):"))
        rows = [["recipe", "claim", "why", "minimum detectable effect", "paper's effect", "seeds needed"]]
        rows += [[r, u.text, u.reason, f"{u.mde:g}", f"{u.paper_effect:g}", str(u.seeds_needed)]
                 for r, u in counts.untestable]
        blocks.append(Block("table", rows=rows))
    if counts.deterministic:
        blocks.append(Block("p", "**Deterministic checks** (one run each, a relative tolerance; outside the count):"))
        rows = [["recipe", "check", "here", "paper", "verdict"]]
        rows += [[r, _claim_label(c), c.ours, c.paper, _verdict_cell(c)] for r, c in counts.deterministic]
        blocks.append(Block("table", rows=rows))
    if shared:
        blocks.append(Block("p", "**Shared runs** (equal normalised configs, trained once and used by each arm "
                                 "named; their numbers are the same results):"))
        blocks.append(Block("list", rows=[[line] for line in shared]))
    return blocks


def _verdict_blocks(summaries: list[RecipeResult], out_dir: Path, shared: list[str]) -> list[Block]:
    """The headline, the forest plot, the verdict table and what is listed beside them."""
    counts = count_claims(summaries)
    blocks = [Block("h2", "Verdicts"), Block("p", headline(counts))]
    rows = forest_rows(summaries)
    if rows:
        path = plot_forest(rows, out_dir / "forest.png")
        blocks += [Block("image", text="forest plot of every statistical claim", path=path),
                   Block("p", FOREST_CAPTION)]
    verdict_rows = _verdict_rows(summaries)
    if len(verdict_rows) > 1:
        blocks.append(Block("table", rows=verdict_rows))
    return blocks + _beside_blocks(counts, shared)


HOW_TO_READ = [
    "Each number is the mean over seeds ± the half-width of its 95% Student-t interval, x̄ ± t(0.975, n−1)·s/√n. "
    "Seeds change the initialisation, the data order and the augmentation (and for the sequence task the drawn data).",
    "A claim compares a variant with a reference. Variants share seeds (the same seed gives the same "
    "initialisation, data order and augmentation draws), so the comparison is **paired**: the per-seed differences "
    "d = variant − reference and a paired t-test on them (Bouthillier et al. 2021 recommend pairing). Only arms that "
    "share fewer than two seeds (failed runs) fall back to Welch's test and interval, marked \"Welch\".",
    "**The test is fixed in the recipe before the run.** **direction**: the two-sided t-test of δ = 0 (or, \"better "
    "by at least m\", of δ = ±m), shown with its 95% interval. **non-inferiority, margin m** (\"at least as good\"): "
    "held when the one-sided test rejects a loss of m or more, i.e. the 90% interval's near end clears −m; went the "
    "other way when a loss of more than m is significant. **TOST ±m** (\"about equal\", Schuirmann 1987): held when "
    "both one-sided tests reject |δ| ≥ m, i.e. the 90% interval lies inside ±m; went the other way when it lies "
    "entirely outside.",
    "**Holm's correction within each recipe**: the family is every claim the recipe runs (a claim run on two model "
    "families is two members), adjusted together at the recipe's α (0.05 unless it says otherwise); a claim without "
    "results enters with p = 1. The verdict comes from the Holm-adjusted p: **held** (adjusted p < α on the paper's "
    "side), **went the other way** (on the other side), **not resolved** (otherwise). The intervals shown are "
    "unadjusted, so an interval can exclude zero while its claim is not resolved.",
    "**Regime**: the conditions a claim needs to be testable (e.g. the baseline overfits; the reference is "
    "over-confident) are written in the recipe before the run and measured as the mean over seeds of one metric on "
    "named arms; a condition whose metric was not measured counts as not met. Every claim that lists conditions "
    "gets its regime table, whatever its verdict. A claim whose condition fails is still tested and shown, marked "
    "**out of regime**, and not counted.",
    "**Counting**: the headline is resolved (held or went the other way, after Holm) of **testable** claims (those "
    "whose regime conditions all hold), a claim run on two model families once per family. Beside it: the "
    "out-of-regime claims, the claims declared untestable in the recipes before the run (with the minimum "
    "detectable effect at the affordable seeds, the paper's effect and the seeds a test would need), and the "
    "deterministic checks, which are outside the percentage.",
    "**P(better)**: the share of seeds on which the variant beats the reference in the claim's direction (a tie "
    "counts ½), with its exact Clopper–Pearson 95% interval (ties counted as losses for the lower end, as wins for "
    "the upper). Bouthillier et al. 2021 read a lower bound above 0.5 as significant.",
    "**resolution**: the interval's half-width; the minimum detectable effect (MDE), the smallest true difference "
    "a paired t-test with these seeds and this spread detects with 80% power at the 5% level; and, for accuracy, "
    "the number of seeds for a half-width of ±0.5 pp at the observed spread.",
    "**Model families**: a claim run on the ViT and on the CNN is judged in each family; the table under it says "
    "whether the two verdicts agree.",
    "**Pre-registration**: the protocol (the recipe files and PROTOCOL.md beside them, which states the rules and "
    "why each claim is testable or not) is hashed when the run starts; the run counts as "
    "pre-registered only if the protocol is unchanged since then, is committed, and its last commit is no later "
    "than the start.",
    "Temperature scaling divides the logits by T fitted on the validation split: T < 1 means the model was "
    "under-confident (scaling sharpens it), T > 1 over-confident.",
    "The paper's numbers are on its own data, models and budgets (named per section): compare directions, not values.",
]


def build_report(
    summaries: list[RecipeResult],
    out_dir: Path,
    header: dict[str, Any],
    extra_images: dict[str, list[tuple[str, Path]]] | None = None,
) -> list[Block]:
    """The whole report: header and pre-registration, the verdicts (headline, forest plot, table, what is left out of
    the count), how to read it, then one section per recipe.

    ``header``: ``command``, ``quick``, ``date``, ``machine``, ``wall_seconds``, ``invocations``, ``jobs``, ``note``,
    ``protocol`` (lines from :func:`vitlab.reproduce.protocol.preregistration`) and ``shared_runs``
    (:func:`shared_results`), each optional.
    """
    extra_images = extra_images or {}
    blocks = _header_blocks(summaries, header)
    blocks += _verdict_blocks(summaries, Path(out_dir), list(header.get("shared_runs") or []))
    blocks.append(Block("h2", "How to read this"))
    blocks.append(Block("list", rows=[[item] for item in HOW_TO_READ]))
    for s in summaries:
        blocks += recipe_blocks(s, Path(out_dir), extra_images.get(s.recipe.name))
    return blocks


def write_report(
    summaries: list[RecipeResult],
    out_dir: str | Path,
    header: dict[str, Any],
    extra_images: dict[str, list[tuple[str, Path]]] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and self-contained ``report.html`` (and the PNGs they show) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = build_report(summaries, out_dir, header, extra_images)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md_path, to_markdown(blocks, out_dir))
    atomic_write_text(html_path, to_html(blocks, "vitlab reproduce report"))
    return md_path, html_path
