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
    """Two journeys only (the run first counts each chosen journey's steps with a whole daemon
    run: all nineteen took 90 s of CI's 15 minutes); seed 12 kills the daemon once."""
    argv = ["bench", "chaos", "--iterations", "2", "--seed", "12", "--json", "-q"]
    code = main([*argv, "--journeys", "cash-in,paysera-cashout"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["failing"] == [] and code == 0
    assert summary["iterations"] == 2  # the long runs are kiosk bench chaos --iterations N
    assert summary["crashed"] >= 1
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


def test_cashii_journeys_are_drawn_with_faults_at_cashii_only_among_those_chosen() -> None:
    import argparse

    from kiosk.chaos import OPS, PROVIDER_MODES, chosen
    from kiosk.crashpoints import JOURNEYS

    names = ["cashii-cashout", "cashii-rejected"]
    assert chosen(argparse.Namespace(journeys=None, providers=["cashii"])) == names
    assert chosen(argparse.Namespace(journeys=None, providers=None)) == sorted(JOURNEYS)
    rng = random.Random(6)
    plans = [draw(rng, {}, names) for _ in range(200)]
    assert {p.journey for p in plans} == set(names)
    assert {op for p in plans for op, *_ in p.faults} == set(OPS["cashii"]) == {"create", "get"}
    assert {m for p in plans for _, m, *_ in p.faults} == set(PROVIDER_MODES["cashii"])
    assert {p.device for p in plans} >= {"power_cut"}
    rng = random.Random(7)
    everyone = [draw(rng, {}) for _ in range(300)]
    assert {p.journey for p in everyone} >= set(names)  # drawn among all by default too


def test_payby_cash_outs_are_drawn_with_the_cash_out_ops_and_cash_ins_with_theirs() -> None:
    from kiosk.chaos import CASHIN_ONLY, CASHOUT_ONLY
    from kiosk.crashpoints import JOURNEYS

    names = sorted(n for n, j in JOURNEYS.items() if j.provider == "payby")
    assert {"payby-cashout", "payby-short-payout"} <= set(names)
    rng = random.Random(8)
    plans = [draw(rng, {}, names) for _ in range(300)]
    drawn = {True: set[str](), False: set[str]()}
    for p in plans:
        drawn[JOURNEYS[p.journey].recycler] |= {op for op, *_ in p.faults}
    assert drawn[True] == {"getOrder"} | CASHOUT_ONLY["payby"]
    assert drawn[False] == {"getOrder"} | CASHIN_ONLY["payby"]
    assert {p.device for p in plans if JOURNEYS[p.journey].recycler} >= {"power_cut"}
