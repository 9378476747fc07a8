"""Which reproduction claims are testable at the affordable number of seeds: the table of
``src/vitlab/recipes/reproduce/PROTOCOL.md``, computed before the run from the *previous* full run's spreads.

    python tools/protocol_mde.py [RESULTS.json] [--seeds N]

PROTOCOL.md's table was computed from the v2 run, which the v3 run has since replaced in ``docs/results``; to
recompute it: ``git show 98010fbf:docs/results/reproduce/results.json > v2.json && python tools/protocol_mde.py
v2.json`` (the default path is the latest committed run).

For each claim (the list below: the arms it compares in the previous run, its test, and the paper's own effect
with its source) it takes the per-seed differences of the previous run (``results.json`` of ``vitlab
reproduce``; for a claim of the form (a − b) − (c − d), ``minus``, the per-seed difference of differences), their
standard deviation s_d, and computes at n seeds (the recipe's ``seeds`` in ``src/vitlab/recipes/reproduce``, or
``--seeds``), level α = 0.05, power 0.8:

* direction claims: the minimum detectable effect of the two-sided paired t-test,
  :func:`vitlab.reproduce.stats.minimum_detectable_effect` (exact, noncentral t);
* non-inferiority with margin m: the smallest true advantage-free margin the one-sided test shows with that power,
  from P(T' > t_{1−α, n−1}) with T' ~ t'(n−1, m√n/s_d) (:func:`vitlab.reproduce.stats.one_sided_t_power`);
* TOST equivalence with margin m: the margin at which TOST at δ = 0 has that power, from the usual approximation
  power ≈ 2 P(T' > t_{1−α, n−1}) − 1 with T' ~ t'(n−1, m√n/s_d).

A claim is *testable* when that detectable effect (or margin) is at most the paper's effect (or the claim's
margin); otherwise the table gives the seeds it would need (the smallest n ≤ 200 that reaches it).

The DeiT claims have no previous reproduction run: their per-seed differences are those of the only earlier
paired runs of the same three models, ``docs/results/train_mnist5k_deit.md`` (``benchmarks.bench_train``, 3 seeds,
the full training split), written out in :data:`PRIOR_DIFFS`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from scipy import optimize

from vitlab.reproduce.recipes import arm_name, load_recipes
from vitlab.reproduce.stats import minimum_detectable_effect, one_sided_t_power

ALPHA, POWER = 0.05, 0.8

# (recipe, claim, arm a, arm b, metric, test, paper effect or margin (claim's unit, good direction), source)
CLAIMS = [
    ("cutmix", "CutMix lowers the error (CNN)", "cnn/baseline", "cnn/cutmix", "test_error", "direction", 0.97,
     "CutMix Table 7, CIFAR-10: 3.85 → 2.88"),
    ("cutmix", "Mixup lowers the error (CNN)", "cnn/baseline", "cnn/mixup", "test_error", "direction", 0.76,
     "CutMix Table 7, CIFAR-10: 3.85 → 3.09"),
    ("cutmix", "Cutout lowers the error (CNN)", "cnn/baseline", "cnn/cutout", "test_error", "direction", 0.75,
     "CutMix Table 7, CIFAR-10: 3.85 → 3.10"),
    ("cutmix", "CutMix lowers the error below Mixup's (CNN)", "cnn/mixup", "cnn/cutmix", "test_error", "direction",
     0.21, "CutMix Table 7, CIFAR-10: 3.09 → 2.88"),
    ("cutmix", "CutMix lowers the error below Cutout's (CNN)", "cnn/cutout", "cnn/cutmix", "test_error",
     "direction", 0.22, "CutMix Table 7, CIFAR-10: 3.10 → 2.88"),
    ("cutmix", "CutMix lowers the error (ViT)", "vit/baseline", "vit/cutmix", "test_error", "direction", 0.97,
     "CutMix Table 7, CIFAR-10 (a CNN: the paper has no ViT)"),
    ("cutmix", "Mixup lowers the error (ViT)", "vit/baseline", "vit/mixup", "test_error", "direction", 0.76,
     "CutMix Table 7, CIFAR-10"),
    ("cutmix", "Cutout lowers the error (ViT)", "vit/baseline", "vit/cutout", "test_error", "direction", 0.75,
     "CutMix Table 7, CIFAR-10"),
    ("label_smoothing", "Smoothing lowers the ECE (CNN)", "cnn/no_smoothing", "cnn/smoothing", "test_ece",
     "direction", 0.126, "Müller et al. Table 3, CIFAR-100 ResNet-56: 0.150 → 0.024"),
    ("label_smoothing", "Smoothing lowers the ECE (ViT)", "vit/no_smoothing", "vit/smoothing", "test_ece",
     "direction", 0.126, "Müller et al. Table 3"),
    ("label_smoothing", "Smoothing leaves top-1 about unchanged, ±1 pp (CNN)", "cnn/no_smoothing",
     "cnn/smoothing", "test_acc1", "equivalence", 1.0, "the claim's margin"),
    ("label_smoothing", "Smoothing leaves top-1 about unchanged, ±1 pp (ViT)", "vit/no_smoothing",
     "vit/smoothing", "test_acc1", "equivalence", 1.0, "the claim's margin"),
    ("mish", "Mish beats ReLU (ViT)", "vit/relu", "vit/mish", "test_acc1", "direction", 0.82,
     "Mish README, SqueezeNet CIFAR-10, 23 runs: 86.66 → 87.48"),
    ("mish", "Mish beats ReLU (CNN)", "cnn/relu", "cnn/mish", "test_acc1", "direction", 0.82, "Mish README"),
    ("mish", "Swish beats ReLU (ViT)", "vit/relu", "vit/swish", "test_acc1", "direction", 0.66,
     "Mish README: 86.66 → 87.32"),
    ("mish", "Swish beats ReLU (CNN)", "cnn/relu", "cnn/swish", "test_acc1", "direction", 0.66, "Mish README"),
    ("mish", "Mish at least as good as Swish, margin 0.5 pp (ViT)", "vit/swish", "vit/mish", "test_acc1",
     "noninferiority", 0.5, "the claim's margin (the README's Mish − Swish: +0.16, p = 0.20)"),
    ("mish", "Mish at least as good as Swish, margin 0.5 pp (CNN)", "cnn/swish", "cnn/mish", "test_acc1",
     "noninferiority", 0.5, "the claim's margin"),
    ("data_size", "The CNN beats the ViT on 10 % of the data", "vit/frac10", "cnn/frac10", "test_acc1",
     "direction", 3.0, "ViT paper Fig. 3–4 (BiT ResNets lead on the smallest pre-training sets; no number in "
     "these units: 3 pp assumed)"),
    ("data_size", "The ViT's deficit narrows from 10 % to 100 %", ("cnn/frac100", "vit/frac10"),
     ("vit/frac100", "cnn/frac10"), "test_acc1", "direction", 3.0,
     "ViT paper Fig. 3–4 (the gap closes as the data grows; no number in these units: 3 pp assumed)"),
    ("data_size", "The ViT's deficit narrows from 30 % to 100 %", ("cnn/frac100", "vit/frac30"),
     ("vit/frac100", "cnn/frac30"), "test_acc1", "direction", 3.0, "as above"),
    ("posenc", "Learned position embeddings beat none", "none", "learned", "test_acc1", "direction", 2.82,
     "ViT paper Table 8: 61.382 → 64.206 (ImageNet 5-shot linear)"),
    ("posenc", "2-D sin-cos beats none", "none", "sincos_2d", "test_acc1", "direction", 2.62,
     "ViT paper Table 8: 61.382 → 64.001 (its 2-D learned row)"),
    ("posenc", "Learned and 2-D about equal, ±1 pp", "learned", "sincos_2d", "test_acc1", "equivalence", 1.0,
     "the claim's margin (Table 8: 0.2 pp apart)"),
    ("transformer_label_smoothing", "Smoothing raises the exact-match accuracy", "no_smoothing", "smoothing",
     "seq_accuracy", "direction", 0.5, "Vaswani Table 3 (E): BLEU 25.3 → 25.8 (another metric: 0.5 assumed)"),
    ("transformer_label_smoothing", "Smoothing raises the perplexity", "smoothing", "no_smoothing", "perplexity",
     "direction", 0.25, "Vaswani Table 3: PPL 4.67 → 4.92"),
    ("vit_transfer", "Fine-tuned beats scratch", "scratch", "finetuned", "test_acc1", "direction", 10.0,
     "ViT paper Table 2/Fig. 4 (tens of points at few shots; 10 assumed)"),
    ("deit", "The distilled ViT beats the same ViT without a teacher", "vit", "deit", "test_acc1", "direction", 1.6,
     "DeiT Table 5: DeiT-B 81.8 → DeiT-B⚗ 83.4"),
    ("deit", "The distilled ViT beats its CNN teacher", "teacher", "deit", "test_acc1", "direction", 0.5,
     "DeiT Table 5: RegNetY-16GF 82.9 → DeiT-B⚗ 83.4"),
]

# Per-seed differences (pp of test top-1, seeds 0, 1, 2) of the claims without a previous reproduction run:
# docs/results/train_mnist5k_deit.md, "Paired by seed" (mnist5k_deit − mnist5k_vit, mnist5k_deit − mnist5k_resnet).
PRIOR_DIFFS = {
    ("deit", "vit", "deit"): [0.6, -0.1, 0.5],
    ("deit", "teacher", "deit"): [0.0, -1.4, 0.1],
}


def _margin_power(margin: float, sd: float, n: int, tost: bool) -> float:
    """At δ = 0: one side's power (non-inferiority), or TOST's usual approximation 2·(one side) − 1."""
    one_side = one_sided_t_power(margin, sd, n, ALPHA)
    return max(0.0, 2 * one_side - 1) if tost else one_side


def detectable(test: str, sd: float, n: int) -> float:
    """The effect (direction) or margin (non-inferiority, equivalence) detected with power 0.8 at n seeds."""
    if sd == 0:
        return 0.0
    if test == "direction":
        return minimum_detectable_effect(sd, n, 1 - ALPHA, POWER)
    tost = test == "equivalence"
    return float(optimize.brentq(lambda m: _margin_power(m, sd, n, tost) - POWER, 1e-9 * sd, 100 * sd))


def seeds_needed(test: str, sd: float, target: float, limit: int = 200) -> int | None:
    for n in range(2, limit + 1):
        if detectable(test, sd, n) <= target:
            return n
    return None


def per_seed(results: list[dict]) -> dict[tuple[str, str], dict[int, dict[str, float]]]:
    table: dict[tuple[str, str], dict[int, dict[str, float]]] = defaultdict(dict)
    for r in results:
        if not r.get("error"):
            table[(r["recipe"], arm_name(r.get("family", ""), r["variant"]))][int(r["seed"])] = r["metrics"]
    return table


def paired_diffs(table: dict, recipe: str, arms_a: str | tuple[str, ...], arms_b: str | tuple[str, ...],
                 metric: str) -> list[float]:
    """Per-seed sum(b) − sum(a) over the seeds every arm has (one arm each side: the plain paired difference)."""
    arms_a = (arms_a,) if isinstance(arms_a, str) else arms_a
    arms_b = (arms_b,) if isinstance(arms_b, str) else arms_b
    runs = [table.get((recipe, arm), {}) for arm in arms_a + arms_b]
    seeds = sorted(set.intersection(*(set(r) for r in runs)))
    seeds = [s for s in seeds if all(metric in r[s] for r in runs)]
    n_a = len(arms_a)
    return [sum(r[s][metric] for r in runs[n_a:]) - sum(r[s][metric] for r in runs[:n_a]) for s in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="docs/results/reproduce/results.json")
    parser.add_argument("--seeds", type=int, default=None, help="seeds for every claim (default: each recipe's)")
    args = parser.parse_args()
    table = per_seed(json.loads(Path(args.results).read_text()))
    recipe_seeds = {r.name: r.seeds for r in load_recipes()}
    print("| recipe | claim | test | s_d (previous run, n) | seeds | detectable | paper effect / margin "
          "| testable | seeds needed | paper source |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for recipe, text, arm_a, arm_b, metric, test, effect, source in CLAIMS:
        n = args.seeds or recipe_seeds.get(recipe, 5)
        diffs = PRIOR_DIFFS.get((recipe, arm_a, arm_b)) or paired_diffs(table, recipe, arm_a, arm_b, metric)
        if len(diffs) < 2:
            print(f"| {recipe} | {text} | {test} | no previous pairs | {n} | | {effect:g} | unknown | | {source} |")
            continue
        sd = statistics.stdev(diffs)
        found = detectable(test, sd, n)
        need = seeds_needed(test, sd, effect)
        print(f"| {recipe} | {text} | {test} | {sd:.3g} ({len(diffs)}) | {n} | {found:.3g} | {effect:g} | "
              f"{'yes' if found <= effect else 'no'} | {need if need else '> 200'} | {source} |")


if __name__ == "__main__":
    main()
