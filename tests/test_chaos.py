"""A short `kiosk bench chaos` run: random SIGKILLs and provider and device faults, and not one
money invariant broken. (The long run is `kiosk bench chaos --iterations 1000`.)"""

from __future__ import annotations

import json
import random

import pytest

from kiosk.chaos import draw
from kiosk.cli import main

pytestmark = pytest.mark.slow


def test_plans_are_reproducible_from_the_seed() -> None:
    steps = {"cash-in": 12, "cancel": 9, "ambiguous-pay": 13, "test-payout": 6}
    a = [draw(random.Random(5), steps) for _ in range(3)]
    b = [draw(random.Random(5), steps) for _ in range(3)]
    assert a == b


def test_a_short_chaos_run_breaks_no_invariant(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "chaos", "--iterations", "5", "--seed", "11", "--json", "-q"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["failing"] == [] and code == 0
    assert summary["iterations"] == 5
    assert sum(summary["violations"].values()) == 0
