"""The reproduction recipes: one YAML per paper comparison, shipped in ``vitlab/recipes/reproduce/``.

A recipe names the paper, the comparison's variants (config overrides of one shared base), the metrics to
tabulate, the paper's own numbers, and its claims, each a comparison between two variants on one metric::

    name: label_smoothing
    title: Label smoothing (Müller et al. 2019)
    paper: Müller, Kornblith & Hinton 2019, When does label smoothing help?, Table ...
    kind: image                  # image (vitlab.train.engine.train), seq2seq or legendre
    base: {epochs: 40, ...}      # ImageConfig (or Seq2SeqConfig) keys shared by every variant
    quick: {epochs: 4}           # applied last (over base and the variant) with --quick
    seeds: 3                     # default number of seeds (--seeds overrides)
    variants: {no_smoothing: {label_smoothing: 0.0}, smoothing: {label_smoothing: 0.1}}
    metrics: [test_acc1, test_ece, test_ece_ts]
    paper_metric: ImageNet ECE   # what the paper's numbers are
    paper_values: {no_smoothing: {test_ece: 0.071}, smoothing: {test_ece: 0.035}}
    alpha: 0.05                  # the level of every claim's test; Holm's family is the recipe (default 0.05)
    regime:                      # named conditions a claim may need to be testable (optional)
      overconfident: {text: ..., arms: [no_smoothing], metric: temperature, min: 1.0}
    claims:
      - {text: ..., metric: test_ece, variant: smoothing, against: no_smoothing, expect: lower,
         regime: [overconfident]}
      - {text: ..., metric: test_acc1, variant: smoothing, against: no_smoothing, test: equivalence, margin: 1.0}
    untestable:                  # claims declared untestable before the run: not run, not counted (optional)
      - {text: ..., reason: ..., mde: 1.2, paper_effect: 0.16, seeds_needed: 60}
    setting: how this run differs from the paper's (data, model, budget)
    figure: {kind: penultimate, variants: [no_smoothing, smoothing], classes: [0, 1, 2]}   # optional
    pretrain: {config: {...}, quick: {...}}   # optional, image recipes: one shared pre-training run

A recipe with ``pretrain`` runs that ImageConfig once (seed 0, before every variant, into
``OUT/runs/<recipe>/pretrain/seed0``); a variant whose config says ``init: pretrain`` starts from it (the
runner puts the run folder's path there).

**Teacher arms** (DeiT, Touvron et al. 2021). An image arm whose config says ``distill: {teacher: ARM, kind,
alpha, tau}`` is distilled from another arm of the same recipe, *of the same seed*: the runner
(:func:`vitlab.reproduce.runner.plan`) puts the folder of that arm's run with the student's seed in
``distill.teacher``, trains it first, keys the student by the teacher's run key (not its folder) and fails the
student, in one line naming the teacher, when the teacher's run failed. ``ARM`` is a variant name (within the
student's own family, in a recipe with families) or an arm name ``family/variant``. The teacher is an ordinary arm:
its metrics are reported and claims may compare it. A teacher must itself train without a teacher, and an arm is
not its own teacher (:meth:`Recipe.teacher_of`)::

    variants:
      teacher: {model: resnet8, model_args: {}}
      deit: {model: deit_mnist_conv4_28, distill: {teacher: teacher, kind: hard, alpha: 0.5, tau: 1.0}}

``expect`` is ``higher`` or ``lower`` (the claimed, or for non-inferiority the good, sign of variant −
against), ``equal`` or, for the deterministic ``legendre`` recipe, ``match`` (relative tolerance ``margin``
against ``paper_values``; no test, reported apart from the statistical claims). ``test`` says how a claim is
tested (:func:`vitlab.reproduce.stats.test_claim`, paired by seed, at the recipe's ``alpha``):

* ``direction`` (the default for ``higher`` / ``lower``): the two-sided t-test of δ = 0; with a ``margin`` m > 0,
  "better by at least m": of δ = ±m;
* ``noninferiority`` (``higher`` / ``lower`` naming the good direction, ``margin`` m > 0): "at least as good,
  within m": the one-sided test of a loss of m or more;
* ``equivalence`` (the default for ``equal``, which may then be left out; ``margin`` m > 0): "about equal, within
  ±m", by TOST on the 1 − 2α (90 %) interval.

A claim may also subtract a second difference, ``minus: [c, d]``: the claim is then on (variant − against) −
(c − d) per seed, e.g. "the ViT's deficit against the CNN shrinks as the data grows".

**Multiplicity.** Holm's family is the recipe: every claim it runs (each family's evaluation of a claim
counts), adjusted together at ``alpha`` (:func:`vitlab.reproduce.stats.apply_holm`).

**Regime.** ``regime`` names conditions, each ``{text, arms, metric, min | max}``: met when, for each listed arm,
the mean over seeds of ``metric`` (a :data:`METRICS` key, e.g. ``train_val_gap``) is ≥ ``min`` (or ≤ ``max``).
``arms`` lists variant names, resolved within the family the claim is evaluated in (in a claim across families:
that variant in every family), or arm names ``family/variant``; ``arms: claim`` means every arm the claim
compares (``minus`` arms included). A claim's ``regime: [names]`` lists the conditions that must hold for it to
be *testable*; a claim whose conditions fail is still tested and reported, marked out of regime, and not
counted.

**Untestable claims.** ``untestable`` lists claims declared untestable before the run, each ``{text, reason, mde,
paper_effect, seeds_needed}`` (the minimum detectable effect at the affordable seeds, the paper's own effect,
the seeds a test would need): they are not run and not counted; the report lists them with their numbers.

**Model families.** An image recipe may run every variant on several models (``families``, each a mapping of
base overrides, e.g. the ViT and the CNN)::

    families:
      vit: {model: vit_tiny_patch4_32, model_args: {stem: conv, ...}}
      cnn: {model: resnet8, model_args: {}}

Each (family, variant) is an *arm*, named ``family/variant`` (its config: base, then the family's overrides,
then the variant, then ``quick``, then the seed; a family's ``model_args`` replace the base's). A claim
written with plain variant names is evaluated within each family separately (and the report says whether the
families agree); a claim may instead name arms (``variant: cnn/frac10, against: vit/frac10``) to compare
across families, once.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from vitlab.errors import ConfigError, unknown_name_message
from vitlab.recipes import reproduce_dir
from vitlab.reproduce.stats import DIRECTION, EQUIVALENCE, NONINFERIORITY

KINDS = ("image", "seq2seq", "legendre")
PRETRAIN = "pretrain"  # the variant name of the shared pre-training run, and the init value that refers to it
DISTILL = "distill"  # an image config's key whose `teacher` names, in a recipe, the arm that teaches this one
EXPECTS = ("higher", "lower", "equal", "match")
MATCH = "match"  # the deterministic check's test: a relative tolerance, no statistics
TESTS = {"direction": DIRECTION, "noninferiority": NONINFERIORITY, "non-inferiority": NONINFERIORITY,
         "equivalence": EQUIVALENCE}  # the YAML's `test:` values -> vitlab.reproduce.stats kinds
CLAIM_ARMS = "claim"  # a regime condition's `arms: claim`: every arm the claim compares
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Metric:
    """How a metric is shown: its label, unit, print format and whether larger is better."""

    label: str
    unit: str
    fmt: str
    higher_is_better: bool


METRICS: dict[str, Metric] = {
    "test_acc1": Metric("test top-1 accuracy", "%", "{:.2f}", True),
    "test_error": Metric("test top-1 error", "%", "{:.2f}", False),
    "test_ece": Metric("test ECE", "", "{:.4f}", False),
    "test_ece_ts": Metric("test ECE after temperature scaling", "", "{:.4f}", False),
    "temperature": Metric("fitted temperature T", "", "{:.3f}", False),
    "train_acc1": Metric("training-split top-1 accuracy (no augmentation)", "%", "{:.2f}", True),
    "val_acc1": Metric("validation top-1 accuracy", "%", "{:.2f}", True),
    "train_val_gap": Metric("train − validation accuracy gap", "pp", "{:.2f}", False),
    "test_nll": Metric("test NLL", "nats", "{:.4f}", False),
    "seq_accuracy": Metric("test exact-match sequence accuracy", "%", "{:.2f}", True),
    "token_accuracy": Metric("test token accuracy (teacher forcing)", "%", "{:.2f}", True),
    "perplexity": Metric("test perplexity (teacher forcing)", "", "{:.4f}", False),
    "final_loss": Metric("final loss Σ(ŷ − sin x)²", "", "{:.6f}", False),
    "b": Metric("coefficient b", "", "{:.7f}", False),
    "d": Metric("coefficient d", "", "{:.7f}", False),
    "train_seconds": Metric("training time", "s", "{:.1f}", False),
}


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: ``variant`` vs ``against`` on ``metric``, expected ``expect``, tested by ``test``.

    ``test`` is a :mod:`vitlab.reproduce.stats` kind (``direction``, ``non-inferiority``, ``equivalence``) or
    :data:`MATCH`; left empty, it follows ``expect`` (``equal``: equivalence, ``match``: match, else direction).
    ``regime`` names the recipe's conditions that must hold for the claim to be testable.
    """

    text: str
    metric: str
    variant: str
    against: str | None
    expect: str
    margin: float | None = None
    minus: tuple[str, str] | None = None  # claim on (variant − against) − (minus[0] − minus[1])
    test: str = ""
    regime: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.test:
            default = {"equal": EQUIVALENCE, "match": MATCH}.get(self.expect, DIRECTION)
            object.__setattr__(self, "test", default)

    def arms(self, family: str) -> Claim:
        """This claim within ``family``: plain variant names become ``family/variant`` (arm names are kept)."""
        def name(v: str | None) -> str | None:
            return None if v is None or "/" in v or not family else f"{family}/{v}"
        minus = None if self.minus is None else (name(self.minus[0]), name(self.minus[1]))
        return replace(self, variant=name(self.variant), against=name(self.against), minus=minus)

    def compared_arms(self) -> list[str]:
        """Every variant or arm name the claim compares: variant, against, then the ``minus`` pair."""
        return [v for v in (self.variant, self.against, *(self.minus or ())) if v is not None]

    @property
    def expected_sign(self) -> int:
        """+1 when the claim expects variant − against to be positive (``higher``, ``equal``), −1 for ``lower``."""
        return -1 if self.expect == "lower" else 1

    @property
    def across_families(self) -> bool:
        """Whether the claim names arms (``family/variant``) itself, rather than being run within each family."""
        return "/" in self.variant


@dataclass(frozen=True)
class RegimeCondition:
    """A named condition on the setting: the mean over seeds of ``metric`` is ≥ ``threshold`` (``bound``
    ``min``) or ≤ it (``max``) for each arm of ``arms`` (``None``: the arms the claim compares)."""

    name: str
    text: str
    arms: tuple[str, ...] | None
    metric: str
    bound: str
    threshold: float

    def holds(self, value: float) -> bool:
        """Whether a measured mean meets the condition."""
        return value >= self.threshold if self.bound == "min" else value <= self.threshold

    def rule(self) -> str:
        """The condition as a formula, e.g. ``train − validation accuracy gap ≥ 2.00 pp``."""
        metric = METRICS[self.metric]
        unit = f" {metric.unit}" if metric.unit else ""
        sign = "≥" if self.bound == "min" else "≤"
        return f"{metric.label} {sign} {metric.fmt.format(self.threshold)}{unit}"


@dataclass(frozen=True)
class Untestable:
    """A claim declared untestable before the run: not run, not counted, listed with its numbers."""

    text: str
    reason: str
    mde: float  # the minimum detectable effect at the affordable seeds (from the last full run's spread)
    paper_effect: float  # the paper's own effect, in the same unit
    seeds_needed: int  # the seeds a test that could see the paper's effect would need


def arm_name(family: str, variant: str) -> str:
    """``family/variant``, or the variant alone when the recipe has no families."""
    return f"{family}/{variant}" if family else variant


@dataclass
class Recipe:
    """A paper's comparison (see the module docstring for the YAML keys)."""

    name: str
    title: str
    paper: str
    kind: str
    base: dict[str, Any]
    quick: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    metrics: list[str]
    claims: list[Claim]
    seeds: int = 3
    paper_metric: str = ""
    paper_values: dict[str, dict[str, float]] = field(default_factory=dict)
    paper_quote: str = ""
    setting: str = ""
    figure: dict[str, Any] = field(default_factory=dict)
    families: dict[str, dict[str, Any]] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    alpha: float = DEFAULT_ALPHA
    regime: dict[str, RegimeCondition] = field(default_factory=dict)
    untestable: list[Untestable] = field(default_factory=list)
    path: Path | None = None

    def condition_arms(self, condition: RegimeCondition, claim: Claim, family: str) -> list[str]:
        """The arms a regime condition is measured on for ``claim`` (on arm names) evaluated in ``family``.

        ``arms: claim``: the claim's own arms. Otherwise each listed name: an arm name ``family/variant`` as it
        is; a variant name within ``family``, or, for a claim across families, that variant in every family.
        """
        if condition.arms is None:
            return claim.compared_arms()
        out: list[str] = []
        for name in condition.arms:
            if "/" in name or not self.families:
                out.append(name)
            elif family:
                out.append(arm_name(family, name))
            else:
                out += [arm_name(f, name) for f in self.families]
        return list(dict.fromkeys(out))

    def pretrain_config(self, quick: bool) -> dict[str, Any]:
        """The shared pre-training run's config (``{}`` when the recipe has none)."""
        if not self.pretrain:
            return {}
        config = {"amp": "off", **copy.deepcopy(self.pretrain.get("config") or {})}  # pinned, as in config()
        return _merge(config, self.pretrain.get("quick") or {}) if quick else config

    def arms(self) -> list[tuple[str, str]]:
        """Every (family, variant) pair, family-major (family ``""`` when the recipe has no families)."""
        return [(f, v) for f in (self.families or {"": {}}) for v in self.variants]

    def arm_names(self) -> list[str]:
        """The arms' names, ``family/variant`` (or the variant alone), in :meth:`arms` order."""
        return [arm_name(f, v) for f, v in self.arms()]

    def evaluated_claims(self) -> list[tuple[int, str, Claim]]:
        """(claim index, family, claim on arm names): a within-family claim once per family, others once."""
        out = []
        for i, claim in enumerate(self.claims):
            if self.families and not claim.across_families:
                out += [(i, family, claim.arms(family)) for family in self.families]
            else:
                out.append((i, "", claim))
        return out

    def config(self, variant: str, seed: int, quick: bool, family: str = "") -> dict[str, Any]:
        """The run's config: base, the family's overrides, the variant, quick overrides (if ``quick``), the seed."""
        if variant not in self.variants:
            raise ConfigError(f"recipe '{self.name}': " + unknown_name_message("variant", variant, self.variants))
        if family and family not in self.families:
            raise ConfigError(f"recipe '{self.name}': " + unknown_name_message("family", family, self.families))
        if self.families and not family:
            raise ConfigError(f"recipe '{self.name}' runs on the families {sorted(self.families)}; name one")
        # float32 unless the recipe names a precision: amp: auto decides by timing this machine, and results
        # must be comparable across machines
        merged = {"amp": "off", **copy.deepcopy(self.base)} if self.kind != "legendre" else copy.deepcopy(self.base)
        if family:  # a family names its own model: its model_args replace the base's rather than merge
            merged.update(copy.deepcopy(self.families[family]))
        merged = _merge(merged, self.variants[variant])
        merged = _merge(merged, self.quick) if quick else merged  # last: --quick caps every variant's budget
        if self.kind != "legendre":
            merged["seed"] = seed
        return merged

    def teacher_of(self, variant: str, quick: bool = False, family: str = "") -> str | None:
        """The arm (``family/variant``, or the variant) whose run of the same seed teaches this arm, or None.

        Read from the arm's merged config (``quick`` included: the quick overrides may change it):
        ``distill.teacher`` names a variant, read within ``family``, or an arm ``family/variant``. The recipe
        was checked when loaded (:func:`recipe_from_dict`): the name is an arm of this recipe that has no teacher.
        """
        distill = self.config(variant, 0, quick, family).get(DISTILL)
        if not isinstance(distill, dict) or not isinstance(distill.get("teacher"), str):
            return None
        teacher = distill["teacher"]
        return teacher if "/" in teacher or not family else arm_name(family, teacher)

    def seeds_for(self, requested: int) -> list[int]:
        """The seeds to run: 0..requested−1 (a deterministic recipe runs once)."""
        return [0] if self.kind == "legendre" else list(range(requested))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge of nested mappings (``extra`` wins); the inputs are not modified."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def default_recipe_dir() -> Path:
    """The shipped reproduction recipes, ``vitlab/recipes/reproduce`` (package data: no checkout needed)."""
    return reproduce_dir()


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise ConfigError(f"{where}: missing key '{key}'; add it (see vitlab.reproduce.recipes)")
    if not isinstance(data[key], kind):
        raise ConfigError(f"{where}: '{key}' must be a {kind.__name__}, got {type(data[key]).__name__}")
    return data[key]


def _check_recipe_keys(data: Any, where: str) -> None:
    """Refuse a recipe that is not a mapping or has a key the format does not know."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {"name", "title", "paper", "kind", "base", "quick", "variants", "metrics", "claims", "seeds",
             "paper_metric", "paper_values", "paper_quote", "setting", "figure", "families", "pretrain",
             "alpha", "regime", "untestable"}
    _refuse_unknown_keys(data, known, "recipe key", where)


def _refuse_unknown_keys(raw: dict[str, Any], known: Any, what: str, at: str) -> None:
    """One line naming the first key of ``raw`` not in ``known`` (and the nearest known one)."""
    for key in raw:
        if key not in known:
            raise ConfigError(f"{at}: " + unknown_name_message(what, str(key), known))


def _read_metric(raw: dict[str, Any], at: str) -> str:
    """``raw['metric']``, one of :data:`METRICS`."""
    metric = _require(raw, "metric", str, at)
    if metric not in METRICS:
        raise ConfigError(f"{at}: " + unknown_name_message("metric", metric, METRICS))
    return metric


def _read_variants(
    data: dict[str, Any], kind: str, where: str
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The variants and the model families (each name → its overrides), their names checked."""
    variants = _require(data, "variants", dict, where)
    if not variants:
        raise ConfigError(f"{where}: 'variants' is empty; list at least one variant")
    variants = {str(k): dict(v or {}) for k, v in variants.items()}
    families = data.get("families") or {}
    if not isinstance(families, dict) or not all(isinstance(v, dict) for v in families.values()):
        raise ConfigError(f"{where}: 'families' must map each family name to a mapping of base overrides")
    families = {str(k): dict(v) for k, v in families.items()}
    if families and kind != "image":
        raise ConfigError(f"{where}: 'families' needs kind 'image', got '{kind}'; remove 'families'")
    if any("/" in name for name in list(families) + list(variants)):
        raise ConfigError(f"{where}: family and variant names may not contain '/'; rename them")
    return variants, families


def _read_metrics(data: dict[str, Any], where: str) -> list[str]:
    """The metrics to tabulate, each one of :data:`METRICS`."""
    metrics = list(_require(data, "metrics", list, where))
    for metric in metrics:
        if metric not in METRICS:
            raise ConfigError(f"{where}: " + unknown_name_message("metric", str(metric), METRICS))
    return metrics


def _check_claim_variants(
    named: list[str], variant: str, at: str, variants: dict[str, Any], families: dict[str, Any]
) -> None:
    """Refuse a claim's variant names unless all are known variants, or all known ``family/variant`` arms."""
    qualified = ["/" in v for v in named]
    if any(qualified) and not all(qualified):
        raise ConfigError(f"{at}: name every variant of a claim as 'family/variant', or none of them")
    arms = {arm_name(f, v) for f in families for v in variants} if any(qualified) else set(variants)
    if any(qualified) and not families:
        raise ConfigError(f"{at}: '{variant}' names a family, but the recipe has no 'families'; use variant names")
    for v in named:
        if v not in arms:
            raise ConfigError(f"{at}: " + unknown_name_message("variant", str(v), arms))


def _read_test(raw: dict[str, Any], at: str) -> tuple[str, str]:
    """A claim's (expect, test): ``test`` checked against ``expect`` (``expect`` may be left out for equivalence)."""
    test = raw.get("test")
    if test is not None and test not in TESTS:
        raise ConfigError(f"{at}: " + unknown_name_message("claim test", str(test), ("direction", "noninferiority",
                                                                                     "equivalence")))
    kind = TESTS.get(test or "", "")
    if "expect" not in raw and kind == EQUIVALENCE:
        return "equal", kind
    expect = _require(raw, "expect", str, at)
    if expect not in EXPECTS:
        raise ConfigError(f"{at}: " + unknown_name_message("expectation", expect, EXPECTS))
    if expect == "match" and kind:
        raise ConfigError(f"{at}: expect 'match' is a deterministic check, not a test; remove 'test: {test}'")
    if expect == "equal" and kind not in ("", EQUIVALENCE):
        raise ConfigError(f"{at}: test '{test}' needs expect 'higher' or 'lower' (the good direction), got 'equal'")
    if expect in ("higher", "lower") and kind == EQUIVALENCE:
        raise ConfigError(f"{at}: test 'equivalence' takes expect 'equal' (or no expect), got '{expect}'; remove it")
    return expect, kind or {"equal": EQUIVALENCE, "match": MATCH}.get(expect, DIRECTION)


def _read_margin(raw: dict[str, Any], at: str, expect: str, test: str) -> float | None:
    """A claim's margin: > 0 where the test needs one (equivalence, non-inferiority, match); else optional, > 0."""
    margin = raw.get("margin")
    positive = isinstance(margin, (int, float)) and not isinstance(margin, bool) and margin > 0
    if test in (EQUIVALENCE, MATCH) and not positive:
        raise ConfigError(f"{at}: expect '{expect}' needs a positive 'margin', got {margin!r}")
    if test == NONINFERIORITY and not positive:
        raise ConfigError(f"{at}: test 'noninferiority' needs a positive 'margin' (the largest loss tolerated, in "
                          f"the metric's unit), got {margin!r}")
    if margin is not None and not positive:
        raise ConfigError(f"{at}: a margin for expect '{expect}' (the least difference claimed) must be > 0, "
                          f"got {margin!r}")
    return float(margin) if margin is not None else None


def _read_claim_regime(raw: dict[str, Any], at: str, regime: dict[str, RegimeCondition]) -> tuple[str, ...]:
    """A claim's ``regime``: a list of the recipe's condition names."""
    names = raw.get("regime") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{at}: 'regime' must be a list of condition names from the recipe's 'regime', "
                          f"got {names!r}")
    for name in names:
        if name not in regime:
            raise ConfigError(f"{at}: " + unknown_name_message("regime condition", name, regime)
                              + "; define it under the recipe's 'regime'")
    return tuple(names)


def _read_claim(
    raw: Any, at: str, variants: dict[str, Any], families: dict[str, Any],
    regime: dict[str, RegimeCondition] | None = None,
) -> Claim:
    """One claim, validated: its expectation and test, metric, variant names, ``minus``, margin and regime."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a mapping")
    _refuse_unknown_keys(raw, CLAIM_KEYS, "claim key", at)
    expect, test = _read_test(raw, at)
    metric = _read_metric(raw, at)
    variant = _require(raw, "variant", str, at)
    against = raw.get("against")
    minus = raw.get("minus")
    if minus is not None and not (isinstance(minus, list) and len(minus) == 2
                                  and all(isinstance(m, str) for m in minus)):
        raise ConfigError(f"{at}: 'minus' must be a list of two variant names [c, d], got {minus!r}")
    named = [v for v in (variant, against, *(minus or [])) if v is not None]
    _check_claim_variants(named, variant, at, variants, families)
    if expect in ("higher", "lower", "equal") and against is None:
        raise ConfigError(f"{at}: expect '{expect}' compares two variants; add 'against: <variant>'")
    if minus is not None and expect not in ("higher", "lower"):
        raise ConfigError(f"{at}: 'minus' needs expect 'higher' or 'lower', got '{expect}'")
    margin = _read_margin(raw, at, expect, test)
    return Claim(_require(raw, "text", str, at), metric, variant, against, expect, margin,
                 tuple(minus) if minus else None, test, _read_claim_regime(raw, at, regime or {}))


CLAIM_KEYS = ("text", "metric", "variant", "against", "expect", "test", "margin", "minus", "regime")
REGIME_KEYS = ("text", "arms", "metric", "min", "max")
UNTESTABLE_KEYS = ("text", "reason", "mde", "paper_effect", "seeds_needed")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_condition(
    name: str, raw: Any, at: str, variants: dict[str, Any], families: dict[str, Any]
) -> RegimeCondition:
    """One regime condition ``{text, arms: [names] | claim, metric, min | max}``, validated."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a mapping {{text, arms, metric, min | max}}, got {type(raw).__name__}")
    _refuse_unknown_keys(raw, REGIME_KEYS, "regime key", at)
    text = _require(raw, "text", str, at)
    metric = _read_metric(raw, at)
    arms = raw.get("arms")
    if arms != CLAIM_ARMS and not (isinstance(arms, list) and arms and all(isinstance(a, str) for a in arms)):
        raise ConfigError(f"{at}: 'arms' must be a list of variant names or '{CLAIM_ARMS}' (the claim's arms), "
                          f"got {arms!r}")
    known = set(variants) | {arm_name(f, v) for f in families for v in variants}
    for arm in arms if isinstance(arms, list) else []:
        if arm not in known:
            raise ConfigError(f"{at}: " + unknown_name_message("variant", arm, known))
    bounds = [b for b in ("min", "max") if b in raw]
    if len(bounds) != 1 or not _is_number(raw[bounds[0]]):
        given = ", ".join(f"{b}: {raw[b]!r}" for b in bounds) or "neither"
        raise ConfigError(f"{at}: give exactly one of 'min' or 'max' (a number), got {given}")
    return RegimeCondition(name, text, None if arms == CLAIM_ARMS else tuple(arms), metric, bounds[0],
                           float(raw[bounds[0]]))


def _read_regime(
    data: dict[str, Any], where: str, variants: dict[str, Any], families: dict[str, Any]
) -> dict[str, RegimeCondition]:
    """The recipe's named regime conditions (``{}`` without any)."""
    raw = data.get("regime") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'regime' must map each condition's name to {{text, arms, metric, min | max}}, "
                          f"got {type(raw).__name__}")
    return {str(name): _read_condition(str(name), cond, f"{where} regime '{name}'", variants, families)
            for name, cond in raw.items()}


def _read_untestable(data: dict[str, Any], where: str, claims: list[Claim]) -> list[Untestable]:
    """The claims declared untestable before the run, each ``{text, reason, mde, paper_effect, seeds_needed}``."""
    raw = data.get("untestable") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: 'untestable' must be a list of {{text, reason, mde, paper_effect, "
                          f"seeds_needed}}, got {type(raw).__name__}")
    out = []
    for i, item in enumerate(raw):
        at = f"{where} untestable {i + 1}"
        if not isinstance(item, dict):
            raise ConfigError(f"{at} must be a mapping {{text, reason, mde, paper_effect, seeds_needed}}")
        for key in UNTESTABLE_KEYS:
            if key not in item:
                raise ConfigError(f"{at}: missing key '{key}'; an untestable claim states "
                                  "text, reason, mde, paper_effect and seeds_needed")
        _refuse_unknown_keys(item, UNTESTABLE_KEYS, "untestable key", at)
        if not all(_is_number(item[k]) for k in ("mde", "paper_effect")) or not item["mde"] > 0:
            raise ConfigError(f"{at}: 'mde' must be a number > 0 and 'paper_effect' a number, got "
                              f"{item['mde']!r} and {item['paper_effect']!r}")
        seeds = item["seeds_needed"]
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 2:
            raise ConfigError(f"{at}: 'seeds_needed' must be an integer >= 2, got {seeds!r}")
        if any(c.text == item["text"] for c in claims):
            raise ConfigError(f"{at}: '{item['text']}' is also a claim that runs; remove it from 'claims' or "
                              "from 'untestable'")
        out.append(Untestable(str(item["text"]), str(item["reason"]), float(item["mde"]),
                              float(item["paper_effect"]), seeds))
    return out


def _read_alpha(data: dict[str, Any], where: str) -> float:
    """The recipe's level α, 0 < α < ½ (default 0.05)."""
    alpha = data.get("alpha", DEFAULT_ALPHA)
    if not _is_number(alpha) or not 0.0 < alpha < 0.5:
        raise ConfigError(f"{where}: 'alpha' must be a number in (0, 0.5), got {alpha!r}; e.g. alpha: 0.05")
    return float(alpha)


def _read_pretrain(data: dict[str, Any], kind: str, variants: dict[str, dict[str, Any]], where: str) -> dict[str, Any]:
    """The shared pre-training run's settings (``{}`` without one), and the variants that start from it checked."""
    pretrain = data.get("pretrain") or {}
    if pretrain:
        if kind != "image" or not isinstance(pretrain, dict) or not isinstance(pretrain.get("config"), dict):
            raise ConfigError(f"{where}: 'pretrain' must be a mapping with a 'config' mapping (image recipes only)")
        _refuse_unknown_keys(pretrain, ("config", "quick"), "pretrain key", where)
        if PRETRAIN in variants:
            raise ConfigError(f"{where}: a variant may not be named '{PRETRAIN}' (the pre-training run's name)")
        if DISTILL in pretrain["config"] or DISTILL in (pretrain.get("quick") or {}):
            raise ConfigError(f"{where}: the shared pre-training cannot be distilled; remove 'distill' from 'pretrain'")
    for variant, overrides in variants.items():
        if overrides.get("init") == PRETRAIN and not pretrain:
            raise ConfigError(f"{where}: variant '{variant}' says init: {PRETRAIN} but the recipe has no 'pretrain'")
    return pretrain


def _split_arm(arm: str) -> tuple[str, str]:
    """``family/variant`` -> (family, variant); a plain variant -> ("", variant)."""
    family, _, variant = arm.rpartition("/")
    return family, variant


def _check_teachers(recipe: Recipe, where: str) -> None:
    """Refuse, in one line, a ``distill`` whose teacher is not an arm of the recipe that trains without a teacher.

    Every arm is checked with and without the quick overrides (either may set or change ``distill``).
    """
    names = recipe.arm_names()
    for quick in (False, True):
        for family, variant in recipe.arms():
            distill = recipe.config(variant, 0, quick, family).get(DISTILL)
            if distill is None:
                continue
            arm = arm_name(family, variant)
            at = f"{where}: arm '{arm}'" + (" with --quick" if quick else "")
            if recipe.kind != "image" or not isinstance(distill, dict) or not isinstance(distill.get("teacher"), str):
                raise ConfigError(f"{at}: 'distill' must be a mapping {{teacher: <an arm of this recipe>, kind, alpha, "
                                  f"tau}} in an image recipe, got {distill!r}")
            teacher = recipe.teacher_of(variant, quick, family)
            if teacher not in names:
                raise ConfigError(f"{at}: " + unknown_name_message("teacher arm", distill["teacher"], names)
                                  + "; distill.teacher names an arm of this recipe, whose run of the same seed teaches")
            if teacher == arm:
                raise ConfigError(f"{at} is its own teacher; name another arm in distill.teacher")
            if recipe.teacher_of(_split_arm(teacher)[1], quick, _split_arm(teacher)[0]) is not None:
                raise ConfigError(f"{at}: its teacher arm '{teacher}' is itself distilled; a teacher arm trains "
                                  "without a teacher (remove its 'distill')")


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate a recipe mapping (unknown kinds, variants, metrics and expectations raise :class:`ConfigError`)."""
    _check_recipe_keys(data, where)
    name = _require(data, "name", str, where)
    kind = _require(data, "kind", str, where)
    if kind not in KINDS:
        raise ConfigError(f"{where}: " + unknown_name_message("recipe kind", kind, KINDS))
    variants, families = _read_variants(data, kind, where)
    metrics = _read_metrics(data, where)
    regime = _read_regime(data, where, variants, families)
    claims = [_read_claim(raw, f"{where} claim {i + 1}", variants, families, regime)
              for i, raw in enumerate(data.get("claims") or [])]
    untestable = _read_untestable(data, where, claims)
    pretrain = _read_pretrain(data, kind, variants, where)
    seeds = data.get("seeds", 3)
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"{where}: seeds must be a positive integer, got {seeds!r}")
    recipe = Recipe(
        name=name,
        title=str(data.get("title", name)),
        paper=str(data.get("paper", "")),
        kind=kind,
        base=dict(data.get("base") or {}),
        quick=dict(data.get("quick") or {}),
        variants=variants,
        metrics=metrics,
        claims=claims,
        seeds=seeds,
        paper_metric=str(data.get("paper_metric", "")),
        paper_values={str(k): dict(v) for k, v in (data.get("paper_values") or {}).items()},
        paper_quote=str(data.get("paper_quote", "")),
        setting=str(data.get("setting", "")),
        figure=dict(data.get("figure") or {}),
        families=families,
        pretrain=dict(pretrain),
        alpha=_read_alpha(data, where),
        regime=regime,
        untestable=untestable,
    )
    _check_teachers(recipe, where)
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """Read one recipe YAML (``yaml.safe_load``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        raise ConfigError(f"recipe file {path} is not valid YAML; fix its syntax") from None
    recipe = recipe_from_dict(data, str(path))
    recipe.path = path
    return recipe


def load_recipes(names: list[str] | None = None, recipe_dir: str | Path | None = None) -> list[Recipe]:
    """The recipes of ``recipe_dir`` (default :func:`default_recipe_dir`) in file-name order, or the named ones.

    Raises:
        ConfigError: the folder does not exist, or an unknown recipe name (naming the nearest).
    """
    folder = Path(recipe_dir) if recipe_dir is not None else default_recipe_dir()
    if not folder.is_dir():
        raise ConfigError(
            f"recipe folder {folder} does not exist; pass --recipes DIR (a folder of reproduce recipe YAMLs)"
        )
    recipes = [load_recipe(p) for p in sorted(folder.glob("*.yaml"))]
    by_name = {r.name: r for r in recipes}
    if not names:
        return recipes
    out = []
    for name in names:
        if name not in by_name:
            raise ConfigError(unknown_name_message("reproduce recipe", name, by_name))
        out.append(by_name[name])
    return out
