"""``kiosk bench chaos [--iterations N] [--seed S] [--journeys A,B] [--providers P,Q] [--json]``:
random crashes and faults, and the same money invariants as ``kiosk bench crashpoints``.

Each iteration draws, from the seed, one journey of :data:`kiosk.crashpoints.JOURNEYS` (PayBy's
cash-in, cancel, ambiguous and pending pay, cash-out and short payout, the technician's test
payout, Paysera's cash-out, cash-in and their lost confirms, Rapyd's cash-out, short payout, lost
withdraw, cash-in and lost deposit, and Cashii's cash-out, paid or rejected in the app) and a plan
for it, on a fresh simulated kiosk (a fresh Paysera wallet and code, a fresh Rapyd phone number and
wallet, or a fresh Cashii payer account, for each customer) against the one sandbox of the run.
``--journeys`` (names, comma-separated) or ``--providers`` (payby, paysera, rapyd, cashii; ""
is not one: the technician's test payout goes with ``--journeys test-payout``) draws only
among those journeys, e.g. to re-run one provider's:

- **provider faults** armed at the journey's provider's sandbox (:data:`OPS`): at PayBy for
  payOrder, getOrder, resolveToken or getBalance (cash-ins), placeOrder, getOrder, cancelOrder,
  refund or getRefund (the cash-out); at Paysera for create, reserve (with the
  code), reserve_wallet (the cash-in's allowance), confirm, get or revoke; at Rapyd for login,
  withdraw and reversal (cash-outs), deposit (cash-ins) or logout; at Cashii for create (never
  sent again: a lost one ends refused) or get (the kiosk's reads and ``cashii.watch``'s, only
  the modes its sandbox knows: no unsigned heads): a reply dropped
  after the provider committed, a request held by a slow network past the kiosk's timeout and
  delivered later, HTTP 500 (not applied), HTTP 429 and unsigned 402 / 404 error heads
  (applied, then that reply), a late reply;
- **a device fault**: a jam after the first note of a cash-in (PayBy's, or Paysera's or
  Rapyd's, whose customer then presses confirm, and at Rapyd shows the OTP envelope if the
  kiosk still asks), or a power cut of the SMART Payout in the middle of a payout (the test
  payout, or a Paysera or Rapyd cash-out's; its power comes back a moment later);
- **a SIGKILL** of the daemon right before or right after one of its first durable steps
  (``KIOSK_CRASH_AT``), after which it is started again.

Then the kiosk is left to settle (recovery, the outbox) and :func:`kiosk.crashpoints.
check_invariants` judges what it left behind. A journey that takes another path because of its
faults (refused, owed) is fine; only a broken invariant counts. Rapyd sessions the kiosk never
knew of (the login's answer lost, or the daemon killed before the close row was committed;
:func:`kiosk.crashpoints.rapyd_orphans`) are counted apart. Prints a summary (JSON with
``--json``) and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from kiosk.crashpoints import (
    INVARIANTS,
    JOURNEYS,
    SETTLE_S,
    VOID_CAP_S,
    Bench,
    Died,
    Journey,
    JourneyReport,
    Kiosk,
    Stuck,
    check_invariants,
    journey_list,
    rapyd_orphans,
)

MODES: Final = (
    "drop_response",
    "error_500",
    "delay",
    "hold",
    "http_429",
    "unsigned_402",
    "unsigned_404",
)
OPS: Final[dict[str, tuple[str, ...]]] = {  # by provider; an op twice is drawn twice as often
    "payby": (
        "payOrder",
        "payOrder",
        "getOrder",
        "resolveToken",
        "getBalance",
        "placeOrder",
        "cancelOrder",
        "refund",
        "refund",
        "getRefund",
    ),
    "paysera": (
        "create",
        "reserve",
        "reserve_wallet",
        "confirm",
        "confirm",
        "get",
        "get",
        "revoke",
    ),
    "rapyd": ("login", "withdraw", "withdraw", "deposit", "deposit", "reversal", "logout"),
    "cashii": ("create", "get", "get"),
}
PROVIDER_MODES: Final[dict[str, tuple[str, ...]]] = {  # where not every mode of MODES applies
    "cashii": ("drop_response", "error_500", "delay", "hold", "http_429"),  # its FAULT_MODES
}
MAX_STEP: Final = 24  # crash points are drawn among the first durable steps


@dataclass(frozen=True)
class Plan:
    journey: str
    faults: tuple[tuple[str, str, int, float], ...]  # op, mode, count, delay_s
    device: str  # "", "jam" or "power_cut"
    crash: str  # "" or "<n>:before|after"

    def text(self) -> str:
        parts = [
            f"{op} {mode}x{n}" + (f" {d:.1f}s" if mode in ("hold", "delay") else "")
            for op, mode, n, d in self.faults
        ]
        if self.device:
            parts.append(self.device)
        if self.crash:
            parts.append(f"SIGKILL at {self.crash}")
        return f"{self.journey}: " + (", ".join(parts) or "no fault")


CASHOUT_ONLY: Final[dict[str, frozenset[str]]] = {  # ops only a provider's cash-out calls
    "rapyd": frozenset({"withdraw", "reversal"}),
    "payby": frozenset({"placeOrder", "cancelOrder", "refund", "getRefund"}),
}
CASHIN_ONLY: Final[dict[str, frozenset[str]]] = {
    "rapyd": frozenset({"deposit"}),
    "payby": frozenset({"payOrder", "resolveToken", "getBalance"}),
}


def journey_ops(j: Journey) -> tuple[str, ...]:
    """The ops of :data:`OPS` a journey calls: a cash-out (it pays out) never calls what only
    a cash-in does (Rapyd's deposit, PayBy's payOrder), and the other way round."""
    skip = (CASHIN_ONLY if j.recycler else CASHOUT_ONLY).get(j.provider, frozenset())
    return tuple(op for op in OPS[j.provider] if op not in skip)


def draw(rng: random.Random, steps: dict[str, int], journeys: list[str] | None = None) -> Plan:
    """A plan; the crash step is one of the journey's own durable steps (``steps``: how many
    its run without a fault has), or a few past them (faults add steps: retries, pending).
    ``journeys``: draw among these only (default: all of :data:`JOURNEYS`)."""
    journey = rng.choice(sorted(journeys or JOURNEYS))
    j = JOURNEYS[journey]
    faults: list[tuple[str, str, int, float]] = []
    if j.provider:
        ops, modes = journey_ops(j), PROVIDER_MODES.get(j.provider, MODES)
        for _ in range(rng.choice((0, 1, 1, 2))):
            op, mode = rng.choice(ops), rng.choice(modes)
            faults.append((op, mode, rng.randint(1, 3), round(rng.uniform(0.5, 7.0), 1)))
    device = ""
    if rng.random() < 0.25:
        device = "power_cut" if j.recycler else "jam"
    crash = ""
    if rng.random() < 0.6:
        last = steps.get(journey, MAX_STEP) + 3
        crash = f"{rng.randint(1, last)}:{rng.choice(('before', 'after'))}"
    return Plan(journey, tuple(faults), device, crash)


@dataclass
class Outcome:
    iteration: int
    plan: str
    faults: int = 0
    crashed: bool = False
    ended: list[str] = field(default_factory=list)
    violations: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    orphans: int = 0  # Rapyd sessions the kiosk never knew of (no money on them)


def _drive(k: Kiosk, journey: Journey, plan: Plan) -> None:
    """The journey, with the plan's device fault; a path the faults change is not an error."""
    if plan.device == "jam":
        phone = ""
        if journey.provider == "paysera":
            k.paysera_cashin()
        elif journey.provider == "rapyd":
            phone = k.rapyd_cashin()
        else:
            k.order("150.00")
        k.insert(10000)
        k.control("fault", kind="jam")
        time.sleep(0.5)
        k.control("clear_fault")
        if journey.provider != "payby":  # the customer ends it: to the wallet, or owed
            k.press("confirm")
        if phone:  # then Rapyd's OTP, if the kiosk still asks for it
            k.rapyd_cashin_otp(phone)
        return
    if plan.device == "power_cut":
        if journey.provider:  # the provider's cash-out
            _with_a_power_cut(k, lambda: journey.drive(k))
        else:
            _with_a_power_cut(k, lambda: k.payout(7000))
        return
    journey.drive(k)


def _with_a_power_cut(k: Kiosk, start: Callable[[], None]) -> None:
    """``start`` (a journey that pays out); the SMART Payout loses power once the first note
    has left it, and gets it back a second later."""
    from drivers.sim.control import SimControl

    device = SimControl(k.recycler_socket)
    errors: list[BaseException] = []

    def pay() -> None:
        try:
            start()
        except (Died, Stuck) as exc:
            errors.append(exc)

    before = k.held()
    thread = threading.Thread(target=pay, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while k.held() == before and time.monotonic() < deadline:
        if not thread.is_alive() and (errors or not k.alive() or _ended(k)):
            break  # the journey failed or ended (a fault, a crash): no payout to cut
        time.sleep(0.01)
    device.call("power", on=False)
    time.sleep(1.0)
    device.call("power", on=True)
    thread.join(30)


def _ended(k: Kiosk) -> bool:
    return bool(k.rows("SELECT id FROM transactions")) and not k.open_txs()


def run_iteration(bench: Bench, plan: Plan, i: int, pending_s: float) -> Outcome:
    from kiosk.sandbox.server import FaultMode

    started = time.monotonic()
    journey = JOURNEYS[plan.journey]
    out = Outcome(i, plan.text(), len(plan.faults))
    with bench.kiosk(journey, f"chaos-{i:04d}") as k:
        for op, mode, count, delay_s in plan.faults:
            faults = bench.faults(journey.provider)
            faults.arm(op, FaultMode(mode), count, int(delay_s * 1000))
        env = {"KIOSK_CRASH_LOG": str(k.crash_log)}
        if plan.crash:
            env["KIOSK_CRASH_AT"] = plan.crash
        k.start(env=env)
        try:
            _drive(k, journey, plan)
            k.wait_settled(SETTLE_S + pending_s, journey=False, void_cap_s=VOID_CAP_S)
        except (Died, Stuck):
            pass
        if k.dying(0.5):
            out.crashed = True  # by the hook, or a violation below
            assert k.daemon is not None and k.daemon.proc is not None
            if plan.crash == "" or k.daemon.proc.returncode != -9:
                code = k.daemon.proc.returncode
                out.violations.append(("daemon", f"died with {code}, not by the crash hook"))
            try:
                k.start(log_name="daemon-restarted.log")
                k.wait_settled(pending_s, journey=False, void_cap_s=VOID_CAP_S)
            except (Died, Stuck, RuntimeError, TimeoutError) as exc:
                out.violations.append(("daemon", f"after the restart: {exc}"))
        k.stop()
        out.ended = [str(r["state"]) for r in k.rows("SELECT state FROM transactions")]
        obs = k.observe()
        out.violations += check_invariants(obs)
        out.orphans = rapyd_orphans(obs)
    out.seconds = time.monotonic() - started
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pending-s", type=float, default=60.0, help="how long settling may take")
    p.add_argument(
        "--journeys",
        type=journey_list,
        metavar="A,B",
        help="draw only among these journeys, comma-separated (default: all)",
    )
    p.add_argument(
        "--providers",
        type=provider_list,
        metavar="P,Q",
        help="draw only among these providers' journeys (payby, paysera, rapyd, cashii)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--keep", action="store_true", help="keep the directories of failing runs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def provider_list(text: str) -> list[str]:
    """``--providers p,q``: providers of :data:`JOURNEYS`, comma-separated."""
    known = sorted({j.provider for j in JOURNEYS.values() if j.provider})
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown provider {', '.join(unknown) or '(none)'}; one of {', '.join(known)}"
        )
    return names


def chosen(args: argparse.Namespace) -> list[str]:
    """The journeys to draw from: ``--journeys`` and ``--providers``' (both: the union)."""
    names = list(getattr(args, "journeys", None) or ())
    for provider in getattr(args, "providers", None) or ():
        names += [n for n, j in sorted(JOURNEYS.items()) if j.provider == provider]
    return sorted(set(names)) or sorted(JOURNEYS)


def main(args: argparse.Namespace) -> int:
    from kiosk.sandbox.server import start_sandbox

    if args.iterations < 1:
        print("kiosk bench chaos: --iterations must be at least 1", file=sys.stderr)
        return 2
    names = chosen(args)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="kiosk-chaos-"))
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with start_sandbox(root / "sandbox") as sandbox:
        bench = Bench(root, sandbox, args.pending_s)
        steps = {}
        for name in names:
            journey = JOURNEYS[name]
            report = JourneyReport(name)
            try:
                bench.count_steps(journey, report)
            except (Died, Stuck, RuntimeError, TimeoutError) as exc:
                print(f"kiosk bench chaos: {name} fails without a fault: {exc}", file=sys.stderr)
                return 1
            steps[name] = len(report.steps)
            shutil.rmtree(root / f"{name}-count", ignore_errors=True)
        for i in range(1, args.iterations + 1):
            plan = draw(rng, steps, names)
            out = run_iteration(bench, plan, i, args.pending_s)
            outcomes.append(out)
            if not args.quiet:
                word = f"{len(out.violations)} VIOLATIONS" if out.violations else "ok"
                word += ", killed and restarted" if out.crashed else ""
                word += f", {out.orphans} Rapyd session never known" if out.orphans else ""
                word += f", ended {' '.join(out.ended) or 'with no transaction'}"
                print(
                    f"chaos {i}/{args.iterations} {out.plan}: {word} ({out.seconds:.1f} s)",
                    file=sys.stderr,
                )
                for inv, detail in out.violations:
                    print(f"  {inv}: {detail}", file=sys.stderr)
            if not out.violations and not args.keep:
                shutil.rmtree(root / f"chaos-{i:04d}", ignore_errors=True)
    counts = dict.fromkeys(INVARIANTS, 0)
    for out in outcomes:
        for inv, _ in out.violations:
            counts[inv] = counts.get(inv, 0) + 1
    summary: dict[str, Any] = {
        "iterations": len(outcomes),
        "seed": args.seed,
        "journeys": names,
        "seconds": round(time.monotonic() - started, 1),
        "crashed": sum(o.crashed for o in outcomes),
        "orphan_sessions": sum(o.orphans for o in outcomes),
        "with_provider_faults": sum(
            " x" in o.plan or "x1" in o.plan or "x2" in o.plan or "x3" in o.plan for o in outcomes
        ),
        "by_journey": {
            name: sum(o.plan.startswith(name + ":") for o in outcomes) for name in names
        },
        "violations": counts,
        "failing": [asdict(o) for o in outcomes if o.violations],
    }
    total = sum(counts.values())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"kiosk bench chaos: {len(outcomes)} iterations, seed {args.seed},"
            f" {summary['crashed']} SIGKILLs, {summary['seconds']} s"
        )
        if summary["orphan_sessions"]:
            print(
                f"  {summary['orphan_sessions']} Rapyd sessions the kiosk never knew of (opened"
                " at Rapyd, the login's answer lost or the daemon killed before the close row"
                " was committed; no money on them): not a violation"
            )
        for inv, n in counts.items():
            print(f"  {inv:<12} {n:>4}  {INVARIANTS[inv]}")
        print("  no violation" if not total else f"  {total} VIOLATIONS (dirs under {root})")
    if not total and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if total else 0
