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
    steps |= {"paysera-cashout": 10, "paysera-cashin": 14}
    a = [draw(random.Random(5), steps) for _ in range(3)]
    b = [draw(random.Random(5), steps) for _ in range(3)]
    assert a == b


def test_paysera_journeys_are_drawn_with_faults_at_paysera() -> None:
    from kiosk.chaos import OPS
    from kiosk.crashpoints import JOURNEYS

    rng = random.Random(3)
    plans = [draw(rng, {}) for _ in range(300)]
    paysera = [p for p in plans if JOURNEYS[p.journey].provider == "paysera"]
    assert {p.journey for p in paysera} >= {"paysera-cashout", "paysera-cashin"}
    ops = {op for p in plans for op, *_ in p.faults if JOURNEYS[p.journey].provider == "paysera"}
    assert ops == set(OPS["paysera"])
    for p in plans:  # a provider's faults only at its own journeys; none at the test payout
        allowed = set(OPS.get(JOURNEYS[p.journey].provider, ()))
        assert {op for op, *_ in p.faults} <= allowed, p
    assert {p.device for p in paysera if JOURNEYS[p.journey].recycler} >= {"power_cut"}
    assert {p.device for p in paysera if not JOURNEYS[p.journey].recycler} >= {"jam"}


def test_a_short_chaos_run_breaks_no_invariant(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "chaos", "--iterations", "5", "--seed", "11", "--json", "-q"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["failing"] == [] and code == 0
    assert summary["iterations"] == 5
    assert sum(summary["violations"].values()) == 0


def test_rapyd_journeys_are_drawn_with_faults_at_rapyd() -> None:
    from kiosk.chaos import OPS
    from kiosk.crashpoints import JOURNEYS

    rng = random.Random(4)
    plans = [draw(rng, {}) for _ in range(400)]
    rapyd = [p for p in plans if JOURNEYS[p.journey].provider == "rapyd"]
    assert {p.journey for p in rapyd} == {n for n, j in JOURNEYS.items() if j.provider == "rapyd"}
    assert {op for p in rapyd for op, *_ in p.faults} == set(OPS["rapyd"])
    assert {"login", "withdraw", "deposit", "reversal", "logout"} <= set(OPS["rapyd"])
    for p in rapyd:  # a cash-out never deposits, a cash-in never withdraws nor reverses
        ops = {op for op, *_ in p.faults}
        assert not ops & ({"deposit"} if JOURNEYS[p.journey].recycler else {"withdraw", "reversal"})
    assert {p.device for p in rapyd if JOURNEYS[p.journey].recycler} >= {"power_cut"}
    assert {p.device for p in rapyd if not JOURNEYS[p.journey].recycler} >= {"jam"}
