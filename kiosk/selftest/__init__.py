"""``kiosk selftest``: each device in turn, one ``PASS`` / ``FAIL`` / ``SKIP`` line each, a failure
saying what to do; exit 0 when nothing failed, 1 when a check failed, 2 for a bad config or when
the daemon runs (it owns the ports: stop it first).

The checks, in order (``--skip NAME[,NAME]`` leaves any out): ``validator`` (the handshake, the
channel table, a fault it reports), ``recycler`` (the SMART Payout's levels), ``printer`` (status
and a test page), ``camera`` (one frame; the replay directory's newest image under simulation),
``decoder`` (a generated test card read by the configured decoder), ``leds``, ``buzzer``,
``buttons`` and ``door`` (the technician presses green, red, opens and closes the door, each
within ``--press-timeout``; skipped with ``--no-buttons`` or when stdin is not a terminal),
``clock`` (NTP synchronised), ``disk`` (free space on the state dir's filesystem) and
``provider:NAME`` for each configured provider (``--skip providers`` leaves them all out; they
call the provider over the network).

The self-test holds the state directory's lock (:mod:`kiosk.statelock`) while it runs, so the
daemon cannot start meanwhile. It journals nothing: the test page is printed straight to the
printer (it carries no money and must not stay queued for a reprint).

Here: the command (:func:`add_parser`, :func:`cmd_selftest`, :func:`run_cli` for provisioning) and
the runner (:func:`steps`, :func:`run_checks`). The checks are in :mod:`kiosk.selftest.devices`,
:mod:`kiosk.selftest.panel` and :mod:`kiosk.selftest.system`; what they are given and give back in
:mod:`kiosk.selftest.session` and :mod:`kiosk.selftest.result`. The tunables (``SHOW_S``,
``CLOCK_COMMAND``, ``MIN_FREE_BYTES``, ``MIN_FREE_FRACTION``) live in the module that reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kiosk.errors import DeviceError, KioskError
from kiosk.selftest.devices import (
    CAMERA_FIX,
    PRINTER_FIX,
    check_camera,
    check_decoder,
    check_printer,
    check_recycler,
    check_validator,
    validator_fix,
)
from kiosk.selftest.panel import check_buttons, check_buzzer, check_door, check_leds
from kiosk.selftest.result import Check, Verdict, failed, passed, skipped
from kiosk.selftest.session import Prompt, Session, Step, Terminal
from kiosk.selftest.system import check_clock, check_disk, provider_step

if TYPE_CHECKING:  # the rest is imported when a check runs (`kiosk`'s start-up time)
    from kiosk.config import Config, Secrets
    from kiosk.hardware import Hardware

__all__ = [  # the command, the runner, and the types a check (or a test's stand-in) uses
    "SYSTEMD_UNIT",
    "Check",
    "Prompt",
    "Session",
    "Step",
    "Terminal",
    "Verdict",
    "add_parser",
    "check_names",
    "cmd_selftest",
    "failed",
    "passed",
    "run_checks",
    "run_cli",
    "run_step",
    "skipped",
    "steps",
]

log = logging.getLogger("kiosk.selftest")
SYSTEMD_UNIT: Final = "kiosk"


def steps(config: Config) -> list[Step]:
    from kiosk.providers.registry import providers

    device = [
        Step("validator", check_validator, validator_fix(config.validator.port)),
        Step("recycler", check_recycler, "power-cycle the validator; if it persists, replace it"),
        Step("printer", check_printer, PRINTER_FIX["error"][1]),
        Step("camera", check_camera, CAMERA_FIX),
        Step("decoder", check_decoder, "reinstall the kiosk's software (uv sync --locked)"),
        Step("leds", check_leds, "check the panel's wiring (README: The panel)", timeout_s=None),
        Step("buzzer", check_buzzer, "check the buzzer's wiring", timeout_s=None),
        Step("buttons", check_buttons, "check the buttons' wiring", timeout_s=None),
        Step("door", check_door, "check the door switch's wiring", timeout_s=None),
    ]
    system = [
        Step("clock", check_clock, "check the network and NTP", device=False),
        Step("disk", check_disk, f"check {config.state_dir} exists and is readable", device=False),
    ]
    names = [n for n, p in providers().items() if p.configured(config)]
    return [*device, *system, *(provider_step(n) for n in names)]


def check_names(config: Config) -> list[str]:
    return [step.name for step in steps(config)]


def _skipped(name: str, skip: set[str]) -> bool:
    if name.startswith("provider:"):
        return bool({"providers", name, name.removeprefix("provider:")} & skip)
    return name in skip


async def run_step(s: Session, step: Step, skip: set[str]) -> Check:
    if _skipped(step.name, skip):
        return Check(step.name, None, "skipped (--skip)")
    if step.device and s.hw is None:
        return Check(step.name, None, "not checked: the devices could not be set up (see above)")
    try:
        async with asyncio.timeout(step.timeout_s):
            verdict = await step.run(s)
    except TimeoutError:
        return Check(step.name, False, f"no answer within {step.timeout_s:.0f} s", step.fix)
    except (KioskError, OSError) as exc:  # a DeviceError (its message: the device is the step's)
        log.debug("%s failed", step.name, exc_info=True)
        detail = exc.message if isinstance(exc, DeviceError) else str(exc) or type(exc).__name__
        return Check(step.name, False, detail, step.fix)
    except Exception as exc:  # one check never stops the others, and never prints a traceback
        log.debug("%s failed", step.name, exc_info=True)
        detail = f"unexpected error ({type(exc).__name__}: {exc})"
        return Check(step.name, False, detail, f"{step.fix}; `kiosk -v selftest` shows more")
    return Check(step.name, verdict.ok, verdict.detail, verdict.fix)


async def run_checks(
    config: Config,
    secrets: Secrets,
    hw: Hardware | None,
    *,
    interactive: bool,
    press_timeout_s: float,
    skip: set[str],
    prompt: Prompt | None = None,
    report: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Every check in turn on ``hw`` (built by :func:`kiosk.hardware.build`; each check opens
    its device: the validator's open is its handshake). ``hw`` None: the devices could not be
    built, and only the system's checks run. ``report`` gets each check as it ends."""
    s = Session(config, secrets, hw, interactive, press_timeout_s, prompt or Terminal())
    results: list[Check] = []
    for step in steps(config):
        check = await run_step(s, step, skip)
        results.append(check)
        if report is not None:
            report(check)
    return results


# -- the command -----------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """Register ``kiosk selftest`` on the CLI's subparsers."""
    p = sub.add_parser(
        "selftest",
        help="check every device in turn (the daemon stopped); one pass/fail line each",
    )
    p.add_argument(
        "--config", help="TOML config (default $KIOSK_CONFIG, else /etc/kiosk/kiosk.toml)"
    )
    p.add_argument(
        "--no-buttons", action="store_true", help="skip the checks that need a technician"
    )
    p.add_argument(
        "--press-timeout", type=float, default=20.0, metavar="S", help="seconds for each press"
    )
    p.add_argument("--skip", default="", metavar="NAME[,NAME]", help="checks to leave out")
    p.add_argument("--json", action="store_true", help="one JSON document with every check")
    p.set_defaults(fn=cmd_selftest)


def run_cli(config_path: Path) -> int:
    """The non-interactive self-test of the kiosk configured in ``config_path`` (after
    ``kiosk provision``): prints its lines, returns its exit status."""
    args = argparse.Namespace(
        config=str(config_path), no_buttons=True, press_timeout=20.0, skip="", json=False
    )
    return cmd_selftest(args)


def cmd_selftest(args: argparse.Namespace) -> int:
    from kiosk import config
    from kiosk.errors import ConfigError
    from kiosk.statelock import StateLock, StateLocked

    try:
        cfg = config.load(config.resolve_path(args.config))
        secrets = config.load_secrets(cfg.secrets_file)
    except ConfigError as exc:
        print(f"kiosk: configuration error: {exc}", file=sys.stderr)
        return 2
    skip = {name.strip() for name in str(args.skip or "").split(",") if name.strip()}
    known = {*check_names(cfg), "providers"}
    known |= {n.removeprefix("provider:") for n in known}
    if unknown := sorted(skip - known):
        print(
            f"kiosk: --skip: no check {', '.join(unknown)} (checks: {', '.join(sorted(known))})",
            file=sys.stderr,
        )
        return 2
    lock = StateLock(cfg.state_dir)
    try:
        lock.acquire()
    except StateLocked as exc:
        print(
            f"kiosk: the kiosk daemon is running ({exc.holder}): stop it first with `sudo "
            f"systemctl stop {SYSTEMD_UNIT}`, run the self-test, then `sudo systemctl start "
            f"{SYSTEMD_UNIT}`",
            file=sys.stderr,
        )
        return 2
    except KioskError as exc:
        print(
            f"kiosk: {exc} (run the self-test as the kiosk's user: sudo -u kiosk …)",
            file=sys.stderr,
        )
        return 2
    interactive = not args.no_buttons and sys.stdin.isatty()
    try:
        with _quiet_logs(getattr(args, "verbose", False)):
            results = asyncio.run(
                _selftest(cfg, secrets, interactive, float(args.press_timeout), skip, args.json)
            )
    finally:
        lock.release()
    failures = sum(c.ok is False for c in results)
    status = 1 if failures else 0
    if args.json:
        doc = {
            "kiosk": cfg.kiosk_id,
            "ok": not failures,
            "exit_status": status,
            "checks": [c.to_json() for c in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        counts = {word: sum(c.status == word for c in results) for word in ("PASS", "FAIL", "SKIP")}
        print(
            f"self-test of {cfg.kiosk_id}: {counts['PASS']} passed, {counts['FAIL']} failed, "
            f"{counts['SKIP']} skipped"
        )
    return status


async def _selftest(
    cfg: Config,
    secrets: Secrets,
    interactive: bool,
    press_timeout_s: float,
    skip: set[str],
    as_json: bool,
) -> list[Check]:
    from kiosk.hardware import build

    def show(check: Check) -> None:
        if not as_json:
            print(check.line(), flush=True)

    first: list[Check] = []
    hw: Hardware | None = None
    try:
        hw = await build(cfg)
    except Exception as exc:  # the system's checks still run
        log.debug("build failed", exc_info=True)
        first.append(
            Check(
                "hardware",
                False,
                f"cannot set up the devices: {exc}",
                "check [hardware] in the config (`kiosk config check`) and the panel's pins",
            )
        )
        show(first[0])
    try:
        rest = await run_checks(
            cfg,
            secrets,
            hw,
            interactive=interactive,
            press_timeout_s=press_timeout_s,
            skip=skip,
            report=show,
        )
    finally:
        if hw is not None:
            await hw.close()
    return [*first, *rest]


@contextlib.contextmanager
def _quiet_logs(verbose: bool) -> Iterator[None]:
    """The lines say what is wrong: the drivers' logs (and their tracebacks) only with -v or
    KIOSK_LOG_LEVEL."""
    if verbose or os.environ.get("KIOSK_LOG_LEVEL"):
        yield
        return
    loggers = [logging.getLogger(n) for n in ("drivers", "kiosk", "asyncio", "gpiozero")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
