"""The evidence report: ``report.md`` and a self-contained ``report.html`` (PNGs embedded as base64).

For every recipe: a table of each arm's metrics (arm = variant, or family/variant in a recipe run on several
model families) as mean ± half-width of the 95% Student-t interval over seeds
(:func:`vitlab.reproduce.stats.mean_interval`), with the regime beside them (the train − validation accuracy
gap and the fitted temperature) and the paper's number; a table of the paper's claims with the difference
variant − reference and its **paired** 95% interval over the seeds both arms share
(:func:`vitlab.reproduce.stats.paired_interval`; Welch's interval only when the arms share fewer than two
seeds), the bootstrap P(better) (Bouthillier et al. 2021), the minimum detectable effect, and the verdict
(held / not resolved / reversed, see :mod:`vitlab.reproduce.stats`); where a claim is run on several model
families, whether they agree; a plot of the seeds; and how the setting differs from the paper's.

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
from vitlab.reproduce.recipes import METRICS, Claim, Recipe, arm_name
from vitlab.reproduce.stats import (
    HELD,
    NOT_RESOLVED,
    REVERSED,
    Interval,
    ProbGreater,
    direction_verdict,
    equivalence_verdict,
    mean_interval,
    minimum_detectable_effect,
    paired_interval,
    prob_greater,
    seeds_for_half_width,
    welch_interval,
)
from vitlab.viz.training import plot_seed_comparison

if TYPE_CHECKING:
    from collections.abc import Sequence

    from markdown_it.renderer import RendererHTML
    from markdown_it.token import Token
    from markdown_it.utils import OptionsDict

VERDICT_TEXT = {
    HELD: "held",
    NOT_RESOLVED: "not resolved by the interval",
    REVERSED: "went the other way",
}
MATCH_FAILED_TEXT = "did not match"
REGIME_METRICS = ("train_acc1", "train_val_gap", "temperature")  # shown for every image recipe: the regime of a claim
UNDERFIT_MARGIN = 1.0  # pp of training accuracy below the reference's: the variant fits its training split less well
TARGET_HALF_WIDTH = 0.5  # percentage points: the resolution the seeds are chosen for (issue 15)


# ------------------------------------------------------------------------------------------ the numbers
@dataclass
class ClaimResult:
    """A claim (on arm names) with what the runs say about it."""

    claim: Claim
    verdict: str
    diff: Interval | None  # variant − against (− (c − d) with ``minus``); paired when the arms share seeds
    ours: str  # the numbers, written out
    paper: str
    family: str = ""  # the family a within-family claim was evaluated in ("" otherwise)
    index: int = 0  # the claim's position in the recipe (the same for its per-family evaluations)
    prob: ProbGreater | None = None  # P(the variant is better in the claim's direction), paired seeds
    mde: float | None = None  # minimum detectable effect at 80 % power with these seeds and this spread
    seeds_needed: int | None = None  # seeds for a ±TARGET_HALF_WIDTH interval at this spread (% metrics)


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


def fmt_diff(metric: str, interval: Interval) -> str:
    """``+d [low, high]`` with signs (and ``Welch`` when the interval is not paired)."""
    spec = METRICS[metric].fmt.replace("{:", "{:+")
    if math.isnan(interval.low):
        return f"{spec.format(interval.mean)} (one seed, no interval)"
    welch = ", Welch" if interval.method == "welch" else ""
    return f"{spec.format(interval.mean)} [{spec.format(interval.low)}, {spec.format(interval.high)}{welch}]"


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


def evaluate_claim(
    claim: Claim,
    by_seed: dict[str, dict[str, dict[int, float]]],
    paper_values: dict[str, dict[str, float]],
    family: str = "",
    index: int = 0,
) -> ClaimResult:
    """The verdict of one claim (on arm names) from per-seed values (see :mod:`vitlab.reproduce.stats` for the rules).

    Arms that share at least two seeds are compared by the paired interval of the per-seed differences; arms
    that do not (runs failed) fall back to Welch's interval over all their seeds (not for ``minus`` claims).
    """
    metric = claim.metric
    ours_v = list(by_seed.get(claim.variant, {}).get(metric, {}).values())
    paper_v = _paper_value(paper_values, claim.variant, metric)
    if claim.expect == "match":
        if not ours_v or paper_v is None:
            return ClaimResult(claim, NOT_RESOLVED, None, "no result", "n/a", family, index)
        ours = sum(ours_v) / len(ours_v)
        rel = abs(ours - paper_v) / max(abs(paper_v), 1e-300)
        verdict = HELD if rel <= claim.margin else REVERSED
        text = (f"{fmt(metric, ours)} vs {fmt(metric, paper_v)} "
                f"(relative difference {rel:.1e}, tolerance {claim.margin:.0e})")
        return ClaimResult(claim, verdict, None, text, fmt(metric, paper_v), family, index)
    base_v = list(by_seed.get(claim.against or "", {}).get(metric, {}).values())
    paper_a = _paper_value(paper_values, claim.against, metric)
    paper = "n/a" if paper_v is None or paper_a is None else f"{paper_v} vs {paper_a}"
    a, b, _ = _claim_series(claim, by_seed)
    if len(a) >= 2:
        diff = paired_interval(a, b)
    elif ours_v and base_v and claim.minus is None:
        diff = welch_interval(ours_v, base_v)
    else:
        text = "no result" if not ours_v or not base_v else "fewer than two shared seeds"
        return ClaimResult(claim, NOT_RESOLVED, None, text, paper, family, index)
    sign = -1 if claim.expect == "lower" else 1
    prob = prob_greater([sign * x for x in a], [sign * y for y in b]) if a else None
    mde = seeds = None
    if diff.method == "paired" and math.isfinite(diff.sd):
        mde = minimum_detectable_effect(diff.sd, diff.n)
        if METRICS[metric].unit in ("%", "pp"):
            seeds = seeds_for_half_width(diff.sd, TARGET_HALF_WIDTH)
    if claim.expect == "equal":
        verdict = equivalence_verdict(diff, claim.margin)
        ours = f"{fmt_diff(metric, diff)}, margin ±{fmt(metric, claim.margin)}"
    else:
        sign = 1 if claim.expect == "higher" else -1
        if claim.margin:  # "higher by at least the margin": the direction verdict of diff − sign·margin
            shift = sign * claim.margin
            moved = Interval(diff.mean - shift, diff.low - shift, diff.high - shift, diff.n, diff.df)
            verdict = direction_verdict(moved, sign)
            ours = f"{fmt_diff(metric, diff)}, by at least {fmt(metric, claim.margin)} expected"
        else:
            verdict = direction_verdict(diff, sign)
            ours = fmt_diff(metric, diff)
    return ClaimResult(claim, verdict, diff, ours, paper, family, index, prob, mde, seeds)


def summarize(recipe: Recipe, results: list[dict[str, Any]]) -> RecipeResult:
    """Collect one recipe's results (as written by :func:`vitlab.reproduce.runner.run_one`) into intervals and
    verdicts."""
    arms = recipe.arm_names()
    by_seed: dict[str, dict[str, dict[int, float]]] = {a: {} for a in arms}
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
    values = {a: {m: [per[k] for k in sorted(per)] for m, per in metrics.items()} for a, metrics in by_seed.items()}
    intervals = {
        arm: {m: mean_interval(vals) for m, vals in metrics.items() if vals}
        for arm, metrics in values.items()
    }
    claims = [evaluate_claim(c, by_seed, recipe.paper_values, family, i) for i, family, c in recipe.evaluated_claims()]
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
img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}"""


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
    what ``report.md`` shows where GitHub renders it. Images whose file is missing are left out.
    """
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.add_render_rule("image", _inline_png)
    base = Path()  # any base: the image rule looks each address up, as markdown-it normalised it
    shown = [b for b in blocks if b.kind != "image" or (b.path is not None and b.path.is_file())]
    images = {md.normalizeLink(_image_src(b.path, base)): b.path for b in shown if b.kind == "image" and b.path}
    body = md.render(to_markdown(shown, base), {"images": images})
    head = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>")
    return f"{head}\n{body}</body></html>\n"


def _verdict_cell(result: ClaimResult) -> str:
    if result.claim.expect == "match" and result.verdict == REVERSED:
        return f"**{MATCH_FAILED_TEXT}**"
    return f"**{VERDICT_TEXT[result.verdict]}**"


def _claim_label(c: ClaimResult) -> str:
    return f"[{c.family}] {c.claim.text}" if c.family else c.claim.text


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


def regime_notes(res: RecipeResult) -> list[str]:
    """For each image claim that went the other way, the regime numbers that explain it (or say they do not).

    The papers credit their regularisers where the baseline overfits (high training, lower validation accuracy)
    and, for calibration, where it is over-confident (fitted T > 1). Rules, from the means over seeds:
    the variant's training-split accuracy more than UNDERFIT_MARGIN below the reference's: it underfits at
    this budget; else the reference's train − validation gap under 1 pp: there was little overfitting to cure;
    for a calibration claim, a reference with T < 1: it was under-confident, and smoothing lowers confidence.
    """
    if res.recipe.kind != "image":
        return []
    notes = []
    for c in res.claims:
        claim = c.claim
        if c.verdict != REVERSED or claim.against is None or claim.minus is not None or claim.expect == "equal":
            continue
        mean = {arm: {m: iv.mean for m, iv in res.intervals.get(arm, {}).items()}
                for arm in (claim.variant, claim.against)}
        var, ref = mean[claim.variant], mean[claim.against]
        if not all(m in var and m in ref for m in REGIME_METRICS):
            continue
        facts = (f"{claim.variant} reached {var['train_acc1']:.1f} % training-split accuracy "
                 f"(gap {var['train_val_gap']:+.1f} pp, T = {var['temperature']:.2f}) "
                 f"against {ref['train_acc1']:.1f} % (gap {ref['train_val_gap']:+.1f} pp, "
                 f"T = {ref['temperature']:.2f}) for {claim.against}")
        if claim.metric.startswith("test_ece") and ref["temperature"] < 1.0:
            why = ("the reference was already under-confident (T < 1), outside the paper's over-confident regime, "
                   "and smoothing lowers confidence further")
        elif var["train_acc1"] < ref["train_acc1"] - UNDERFIT_MARGIN:
            why = ("the variant fits its own training split less well: it underfits at this budget, where the "
                   "paper's schedule (hundreds of epochs) lets the regularised model catch up and overtake")
        elif ref["train_val_gap"] < 1.0:
            why = "the reference hardly overfits (gap under 1 pp): little for a regulariser to cure"
        else:
            why = "the regime numbers do not explain it: both fit the training split alike"
        notes.append(f"{_claim_label(c)}: went the other way; {facts}: {why}.")
    return notes


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
    """The claims table (header row first): each claim's number here and in the paper, and the verdict."""
    if res.recipe.kind == "legendre":
        claim_rows = [["claim", "here", "paper", "verdict"]]
        claim_rows += [[c.claim.text, c.ours, c.paper, _verdict_cell(c)] for c in res.claims]
        return claim_rows
    claim_rows = [["claim", "difference (variant − reference) [paired 95% interval]", "P(better) [95% bootstrap]",
                   "resolution", "paper", "verdict"]]
    claim_rows += [[_claim_label(c), c.ours, _fmt_prob(c), _fmt_resolution(c), c.paper, _verdict_cell(c)]
                   for c in res.claims]
    return claim_rows


def _agreement_rows(res: RecipeResult) -> list[list[str]]:
    """The family-agreement table (header row first): per within-family claim, each family's verdict."""
    r = res.recipe
    agree_rows = [["claim"] + list(r.families) + ["families"]]
    for i, claim in enumerate(r.claims):
        per = [c for c in res.claims if c.index == i and c.family]
        if per:
            agree_rows.append([claim.text] + [VERDICT_TEXT[c.verdict] for c in per] + [family_agreement(per)])
    return agree_rows


def recipe_blocks(
    res: RecipeResult, image_dir: Path, extra_images: list[tuple[str, Path]] | None = None
) -> list[Block]:
    """The section of one recipe, writing its seed plots into ``image_dir``."""
    r = res.recipe
    arms = r.arm_names()
    blocks = _intro_blocks(r)
    n_seeds = max((len(v) for m in res.values.values() for v in m.values()), default=0)
    shown = _shown_metrics(res)
    rows = _results_rows(res, shown)
    blocks.append(Block("p", _results_caption(res, n_seeds)))
    blocks.append(Block("table", rows=rows))
    if r.claims:
        blocks.append(Block("table", rows=_claim_rows(res)))
    notes = regime_notes(res)
    if notes:
        blocks.append(Block("p", "Regime of the claims that went the other way (means over seeds):"))
        blocks.append(Block("list", rows=[[n] for n in notes]))
    if r.families:
        agree_rows = _agreement_rows(res)
        if len(agree_rows) > 1:
            blocks.append(Block("p", "Do the model families agree?"))
            blocks.append(Block("table", rows=agree_rows))
    if r.kind != "legendre" and shown and n_seeds:
        metric = shown[0] if not r.claims else r.claims[0].metric
        path = image_dir / f"{r.name}_{metric}.png"
        plotted = [a for a in arms if metric in res.intervals[a]]
        plot_seed_comparison(
            plotted,
            [res.values[a][metric] for a in plotted],
            [(res.intervals[a][metric].mean, res.intervals[a][metric].low, res.intervals[a][metric].high)
             for a in plotted],
            f"{METRICS[metric].label}{_unit(metric)}",
            path,
            title=r.title,
        )
        blocks.append(Block("image", text=f"{r.name}: {METRICS[metric].label} per seed", path=path))
    for caption, path in extra_images or []:
        blocks.append(Block("p", caption))
        blocks.append(Block("image", text=caption, path=path))
    if res.failed:
        blocks.append(Block("p", "Failed runs (left out of the numbers above):"))
        blocks.append(Block("list", rows=[[f] for f in res.failed]))
    return blocks


def _load_text(machine: dict[str, Any]) -> str:
    before, after = machine.get("load_before"), machine.get("load_average")
    if before is None or after is None:
        return ""
    text = f" 1-minute load average {before:.1f} at the start and {after:.1f} at the end"
    if max(before, after) > (machine.get("cpu_count") or 1):
        text += " (above the core count: other jobs shared the machine, so times are longer than on an idle one)"
    return text + "."


def build_report(
    summaries: list[RecipeResult],
    out_dir: Path,
    header: dict[str, Any],
    extra_images: dict[str, list[tuple[str, Path]]] | None = None,
) -> list[Block]:
    """The whole report: header, verdict summary, how to read it, then one section per recipe."""
    extra_images = extra_images or {}
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
    if header.get("note"):
        blocks.append(Block("p", str(header["note"])))
    blocks.append(Block("h2", "Verdicts"))
    rows = [["recipe", "claim", "here", "verdict"]]
    for s in summaries:
        for c in s.claims:
            rows.append([s.recipe.name, _claim_label(c), c.ours, _verdict_cell(c)])
    blocks.append(Block("table", rows=rows))
    counts = {v: sum(c.verdict == v for s in summaries for c in s.claims) for v in (HELD, NOT_RESOLVED, REVERSED)}
    total = max(sum(counts.values()), 1)
    blocks.append(Block("p", (
        f"{counts[HELD]} claims held, {counts[NOT_RESOLVED]} were not resolved by the interval, "
        f"{counts[REVERSED]} went the other way (or did not match): "
        f"{100.0 * (total - counts[NOT_RESOLVED]) / total:.0f}% "
        "resolved (a claim run on two model families counts once per family).")))
    blocks.append(Block("h2", "How to read this"))
    blocks.append(Block("list", rows=[
        ["Each number is the mean over seeds ± the half-width of its 95% Student-t interval, x̄ ± t(0.975, n−1)·s/√n. "
         "Seeds change the initialisation, the data order and the augmentation "
         "(and for the sequence task the drawn data)."],
        ["A claim compares a variant with a reference. Variants share seeds (the same seed gives the same "
         "initialisation, data order and augmentation draws), so the comparison is **paired**: the per-seed "
         "differences (variant − reference) with their 95% t interval, d̄ ± t(0.975, n−1)·s_d/√n (Bouthillier et al. "
         "2021 recommend pairing). Only arms that share fewer than two seeds (failed runs) fall back to Welch's "
         "interval, marked so."],
        ["**P(better)**: the share of seeds on which the variant beats the reference in the claim's direction (a tie "
         "counts ½), with a 95% percentile-bootstrap interval over resampled seeds (10,000 resamples, seeded). "
         "Bouthillier et al. 2021 read a lower bound above 0.5 as significant "
         "and an upper bound above 0.75 as meaningful."],
        ["**resolution**: the interval's half-width; the minimum detectable effect (MDE), the smallest true difference "
         "a paired t-test with these seeds and this spread detects with 80% power at the 5% level; and, for accuracy, "
         "the number of seeds for a half-width of ±0.5 pp at the observed spread."],
        ["**Regime**: the train − validation accuracy gap (training split scored without augmentation) says how far a "
         "run overfits; regularisers (mixing, smoothing) are claimed to help where the baseline overfits."],
        ["**Model families**: a claim run on the ViT and on the CNN is judged in each family; the table under it says "
         "whether the two verdicts agree."],
        ["**held**: the interval excludes 0 on the paper's side; "
         "**went the other way**: it excludes 0 on the other side; "
         "**not resolved by the interval**: it contains 0 (more seeds or a larger budget would be needed to tell)."],
        ["\"About equal\" claims: **held** when the whole interval lies within ± the margin stated in the claim; "
         "**went the other way** when it lies entirely outside; otherwise not resolved."],
        ["\"Higher by at least m\" claims: **held** when the whole interval lies above m; **went the other way** when "
         "it lies entirely below m; otherwise not resolved."],
        ["Temperature scaling divides the logits by T fitted on the validation split: T < 1 means the model was "
         "under-confident (scaling sharpens it), T > 1 over-confident."],
        ["The paper's numbers are on its own data, models and budgets (named per section): "
         "compare directions, not values."],
    ]))
    for s in summaries:
        blocks += recipe_blocks(s, out_dir, extra_images.get(s.recipe.name))
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
