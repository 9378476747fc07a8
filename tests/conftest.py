"""Suite-wide fixtures.

Machine-independent precision: ``amp: auto`` times float32 against bf16 where the CPU computes bf16 natively
(:mod:`vitlab.train.precision`), so the same test could train in bf16 on one machine and float32 on another.
Every in-process test therefore sees a CPU **without** native bf16 (``auto`` = float32, no probe), whatever
CPU runs the suite; the tests of the precision choice itself (tests/train/test_precision.py) replace the
capability check and the timer inside the test, for a CPU that has bf16 and where it is slower, one where
it is faster, and one without it. Runs in subprocesses see the real CPU; they compare a run with itself
(resume, eval against its summary), which reads the precision recorded in the run folder. Module-scoped
fixtures are set up before this one and so also see the real CPU.
"""

from __future__ import annotations

import pytest

from vitlab.train import precision

_real_native_bf16 = precision.native_bf16


@pytest.fixture(autouse=True)
def cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    precision._CACHE.clear()  # no decision carried over from another test
    monkeypatch.setattr(precision, "native_bf16", lambda device: device.type != "cpu" and _real_native_bf16(device))
