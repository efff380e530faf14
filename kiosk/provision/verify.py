"""The checks, after the files are written.

On ``/`` only (``--root`` elsewhere is an image being prepared, offline), and not under
``--dry-run``: the config check, ``kiosk provider check`` for each enabled provider, and the
device self-test (``kiosk.selftest.run_cli`` when this build has it; ``--skip-hardware`` skips
it). Each check is an :class:`~kiosk.provision.steps.Outcome` with ``check=True``: a failed
check fails the run, but does not keep ``--remove-bundle`` from removing the bundle.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from kiosk.errors import ConfigError, KioskError
from kiosk.provision.plan import CONFIG, Plan
from kiosk.provision.steps import Outcome, Status
from kiosk.provision.system import Run


def _provider_checks(plan: Plan) -> list[Outcome]:
    from kiosk import config
    from kiosk.provider_check import check

    try:
        cfg = config.load(plan.under(CONFIG))
        sec = config.load_secrets(cfg.secrets_file)
        config.check_key_files(cfg, sec)  # every key parsed as it will be used
    except ConfigError as exc:
        return [Outcome("config check", Status.FAILED, str(exc), check=True)]
    result = [Outcome("config check", Status.OK, str(cfg.file), check=True)]
    for name in plan.providers:
        try:
            ok, message = check(cfg, sec, name)
        except KioskError as exc:
            ok, message = False, str(exc)
        result.append(
            Outcome(
                f"provider check {name}", Status.OK if ok else Status.FAILED, message, check=True
            )
        )
    return result


def selftest(config_file: Path, skip_hardware: bool, why: str = "") -> Outcome:
    """``kiosk.selftest.run_cli(config_file)`` when this build has it."""
    name = "self-test"
    if skip_hardware or why:
        return Outcome(
            name, Status.SKIPPED, "--skip-hardware" if skip_hardware else why, check=True
        )
    try:
        run_cli = getattr(importlib.import_module("kiosk.selftest"), "run_cli", None)
    except ModuleNotFoundError as exc:
        if exc.name != "kiosk.selftest":
            return Outcome(
                name, Status.FAILED, f"kiosk.selftest cannot be imported: {exc}", check=True
            )
        run_cli = None
    if not callable(run_cli):
        return Outcome(name, Status.SKIPPED, "not available in this build", check=True)
    try:
        rc = int(run_cli(config_file))
    except KioskError as exc:
        return Outcome(name, Status.FAILED, str(exc), check=True)
    return Outcome(name, Status.OK if rc == 0 else Status.FAILED, f"exit status {rc}", check=True)


def checks(run: Run, skip_hardware: bool) -> list[Outcome]:
    """On ``/`` and not a dry run: the config check, each provider's check, the self-test."""
    plan, why = run.plan, ""
    if run.dry_run:
        why = "--dry-run"
    elif not plan.on_this_machine:
        why = f"--root {plan.root}: checked when provisioned on the kiosk itself"
    if why:
        result = [
            Outcome(f"provider check {n}", Status.SKIPPED, why, check=True) for n in plan.providers
        ]
    else:
        result = _provider_checks(plan)
    return [*result, selftest(plan.under(CONFIG), skip_hardware, why)]
