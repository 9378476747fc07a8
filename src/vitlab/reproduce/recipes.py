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
    claims:
      - {text: ..., metric: test_ece, variant: smoothing, against: no_smoothing, expect: lower}
      - {text: ..., metric: test_acc1, variant: smoothing, against: no_smoothing, expect: equal, margin: 1.0}
    setting: how this run differs from the paper's (data, model, budget)
    figure: {kind: penultimate, variants: [no_smoothing, smoothing], classes: [0, 1, 2]}   # optional
    pretrain: {config: {...}, quick: {...}}   # optional, image recipes: one shared pre-training run

A recipe with ``pretrain`` runs that ImageConfig once (seed 0, before every variant, into
``OUT/runs/<recipe>/pretrain/seed0``); a variant whose config says ``init: pretrain`` starts from it (the
runner puts the run folder's path there).

``expect`` is ``higher`` or ``lower`` (a direction claim on variant − against; with a ``margin``, "by at
least the margin": the interval of the difference must clear it), ``equal`` (within ±margin,
in the metric's unit) or, for the deterministic ``legendre`` recipe, ``match`` (relative tolerance
``margin`` against ``paper_values``). A claim may also subtract a second difference, ``minus: [c, d]``: the
claim is then on (variant − against) − (c − d) per seed, e.g. "the ViT's deficit against the CNN shrinks
as the data grows".

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vitlab.errors import ConfigError, unknown_name_message
from vitlab.recipes import reproduce_dir

KINDS = ("image", "seq2seq", "legendre")
PRETRAIN = "pretrain"  # the variant name of the shared pre-training run, and the init value that refers to it
EXPECTS = ("higher", "lower", "equal", "match")


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
    """One claim of the paper: ``variant`` vs ``against`` on ``metric``, expected ``expect``."""

    text: str
    metric: str
    variant: str
    against: str | None
    expect: str
    margin: float | None = None
    minus: tuple[str, str] | None = None  # claim on (variant − against) − (minus[0] − minus[1])

    def arms(self, family: str) -> Claim:
        """This claim within ``family``: plain variant names become ``family/variant`` (arm names are kept)."""
        def name(v: str | None) -> str | None:
            return None if v is None or "/" in v or not family else f"{family}/{v}"
        minus = None if self.minus is None else (name(self.minus[0]), name(self.minus[1]))
        return Claim(self.text, self.metric, name(self.variant), name(self.against), self.expect, self.margin, minus)

    @property
    def across_families(self) -> bool:
        """Whether the claim names arms (``family/variant``) itself, rather than being run within each family."""
        return "/" in self.variant


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
    path: Path | None = None

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
             "paper_metric", "paper_values", "paper_quote", "setting", "figure", "families", "pretrain"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: " + unknown_name_message("recipe key", str(key), known))


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


def _read_claim(raw: Any, at: str, variants: dict[str, Any], families: dict[str, Any]) -> Claim:
    """One claim, validated: its expectation, metric, variant names, ``minus`` and margin."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a mapping")
    expect = _require(raw, "expect", str, at)
    if expect not in EXPECTS:
        raise ConfigError(f"{at}: " + unknown_name_message("expectation", expect, EXPECTS))
    metric = _require(raw, "metric", str, at)
    if metric not in METRICS:
        raise ConfigError(f"{at}: " + unknown_name_message("metric", metric, METRICS))
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
    margin = raw.get("margin")
    positive = isinstance(margin, (int, float)) and margin > 0
    if expect in ("equal", "match") and not positive:
        raise ConfigError(f"{at}: expect '{expect}' needs a positive 'margin', got {margin!r}")
    if expect in ("higher", "lower") and margin is not None and not positive:
        raise ConfigError(f"{at}: a margin for expect '{expect}' (the least difference claimed) must be > 0, "
                          f"got {margin!r}")
    return Claim(_require(raw, "text", str, at), metric, variant, against, expect,
                 float(margin) if margin is not None else None, tuple(minus) if minus else None)


def _read_pretrain(data: dict[str, Any], kind: str, variants: dict[str, dict[str, Any]], where: str) -> dict[str, Any]:
    """The shared pre-training run's settings (``{}`` without one), and the variants that start from it checked."""
    pretrain = data.get("pretrain") or {}
    if pretrain:
        if kind != "image" or not isinstance(pretrain, dict) or not isinstance(pretrain.get("config"), dict):
            raise ConfigError(f"{where}: 'pretrain' must be a mapping with a 'config' mapping (image recipes only)")
        for key in pretrain:
            if key not in ("config", "quick"):
                raise ConfigError(f"{where}: " + unknown_name_message("pretrain key", str(key), ("config", "quick")))
        if PRETRAIN in variants:
            raise ConfigError(f"{where}: a variant may not be named '{PRETRAIN}' (the pre-training run's name)")
    for variant, overrides in variants.items():
        if overrides.get("init") == PRETRAIN and not pretrain:
            raise ConfigError(f"{where}: variant '{variant}' says init: {PRETRAIN} but the recipe has no 'pretrain'")
    return pretrain


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate a recipe mapping (unknown kinds, variants, metrics and expectations raise :class:`ConfigError`)."""
    _check_recipe_keys(data, where)
    name = _require(data, "name", str, where)
    kind = _require(data, "kind", str, where)
    if kind not in KINDS:
        raise ConfigError(f"{where}: " + unknown_name_message("recipe kind", kind, KINDS))
    variants, families = _read_variants(data, kind, where)
    metrics = _read_metrics(data, where)
    claims = [_read_claim(raw, f"{where} claim {i + 1}", variants, families)
              for i, raw in enumerate(data.get("claims") or [])]
    pretrain = _read_pretrain(data, kind, variants, where)
    seeds = data.get("seeds", 3)
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"{where}: seeds must be a positive integer, got {seeds!r}")
    return Recipe(
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
    )


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
