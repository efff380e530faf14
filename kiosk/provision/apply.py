"""Running a plan: every step compared before any is written, then each made so (the service
user right after its sysusers file), systemd and udev reloaded, the device identity shown, the
checks; one line each, a summary, and a :class:`Report`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kiosk.provision.bundle import Bundle
from kiosk.provision.plan import SOURCE, SYSUSERS, Plan, build_plan
from kiosk.provision.steps import Outcome, Status, differences
from kiosk.provision.system import Run, System, ensure_user, reloads
from kiosk.provision.verify import checks


@dataclass(frozen=True, slots=True)
class Report:
    plan: Plan
    outcomes: tuple[Outcome, ...]
    dry_run: bool

    def outcome(self, name: str | Path) -> Outcome:
        return next(o for o in self.outcomes if o.name == str(name))

    @property
    def changed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is Status.CHANGED]

    @property
    def failed(self) -> bool:
        return any(o.status is Status.FAILED for o in self.outcomes)

    @property
    def actions_failed(self) -> bool:
        return any(o.status is Status.FAILED and not o.check for o in self.outcomes)


def _line(o: Outcome, dry_run: bool) -> str:
    word = "would change" if dry_run and o.status is Status.CHANGED else o.status.value
    return f"  {word:<12} {o.name:<44} {o.detail}".rstrip()


def show_identity(plan: Plan, dry_run: bool, out: TextIO) -> None:
    """The device's public key and a terminal QR of its registration URI."""
    import segno

    ident = plan.identity
    if plan.key_created and dry_run:
        print(f"device {ident.device_id}: a new Ed25519 key would be made", file=out)
        return
    state = "a new key" if plan.key_created else "its key, kept"
    print(f"device {ident.device_id} ({state}), public key (Ed25519):", file=out)
    print(ident.public_pem.rstrip() + f"\n  base64: {ident.public_b64}", file=out)
    uri = ident.registration_uri(plan.kiosk_id)
    print(f"register it with the fleet (scan the QR): {uri}", file=out)
    segno.make_qr(uri, error="m").terminal(out=out, compact=True, border=2)


def provision(
    bundle: Bundle,
    root: Path,
    *,
    system: System,
    dry_run: bool = False,
    skip_hardware: bool = False,
    out: TextIO = sys.stdout,
    source: Path = SOURCE,
) -> Report:
    plan = build_plan(bundle, root, source)
    run = Run(plan, system, dry_run)
    print(
        f"kiosk provision {plan.kiosk_id} into {root}"
        + (" (dry run: nothing is written)" if dry_run else ""),
        file=out,
    )
    todo = [(s, differences(s, plan.under(s.path))) for s in plan.steps]  # before any write
    outcomes: list[Outcome] = []

    def report(*new: Outcome) -> None:
        outcomes.extend(new)
        for o in new:
            print(_line(o, dry_run), file=out)

    for step, changes in todo:
        report(run.step(step, changes))
        if step.path == SYSUSERS:
            report(ensure_user(run))
    report(*reloads(run, outcomes))
    show_identity(plan, dry_run, out)
    report(*checks(run, skip_hardware))
    n = len([o for o in outcomes if o.status is Status.CHANGED])
    owners = len([o for o in outcomes if "would be owned" in o.detail])
    summary = "nothing to change" if not n else f"{'would change' if dry_run else 'changed'}: {n}"
    print(summary + (f"; {owners} owners not set (run as root)" if owners else ""), file=out)
    return Report(plan, tuple(outcomes), dry_run)
