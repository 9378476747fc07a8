"""The paired comparison of benchmarks.bench_train, against scipy.stats.ttest_rel's confidence interval."""

from __future__ import annotations

import re

import pytest
from benchmarks.bench_train import paired
from scipy import stats


def _rows(name: str, accs: list[float], walls: list[float]) -> list[dict]:
    return [{"recipe": name, "seed": s, "test_acc1": a, "wall_s": w} for s, (a, w) in enumerate(zip(accs, walls))]


def test_paired_differences_and_interval_match_ttest_rel() -> None:
    student, teacher = [0.985, 0.990, 0.981], [0.987, 0.986, 0.986]
    groups = {"deit": _rows("deit", student, [120.0, 130.0, 110.0]), "resnet": _rows("resnet", teacher, [100.0] * 3)}
    line = paired(groups, "deit").splitlines()[-1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[0] == "deit − resnet" and cells[1] == "-0.2, +0.4, -0.5"
    diffs = [100 * (a - b) for a, b in zip(student, teacher)]
    reference = stats.ttest_rel([100 * a for a in student], [100 * b for b in teacher]).confidence_interval(0.95)
    low, high = map(float, re.findall(r"[+-]\d+\.\d+", cells[3]))
    assert float(cells[2]) == pytest.approx(sum(diffs) / 3, abs=0.005)
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=0.005)
    assert cells[4] == ("yes" if reference.low > 0 or reference.high < 0 else "no")
    assert cells[5].startswith("1.20 (1.20, 1.30, 1.10)")


def test_a_single_seed_has_no_interval() -> None:
    groups = {"a": _rows("a", [0.9], [1.0]), "b": _rows("b", [0.8], [2.0])}
    cells = [c.strip() for c in paired(groups, "a").splitlines()[-1].strip("|").split("|")]
    assert cells[2] == "+10.00" and cells[3] == "[+nan, +nan]" and cells[4] == "n/a"
