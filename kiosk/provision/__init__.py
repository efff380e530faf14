"""``kiosk provision``: make this Pi, or a mounted SD card's root, a kiosk from one bundle.

Usage::

    kiosk provision --bundle FILE [--root DIR] [--dry-run] [--skip-hardware] [--remove-bundle]

The bundle (``provisioning/bundle.toml.example``) is read and checked, by the project's own
config reader too, before anything is written; it becomes a plan, every file, directory and
symlink of the kiosk under ``--root`` (default ``/``); each is made so, the service user made,
the owners set, systemd and udev reloaded; the device's key is printed with a QR for the fleet;
then, on ``/`` only and not under ``--dry-run``, the config, each provider and the devices are
checked. ``--remove-bundle``: after a run whose actions all succeeded, the bundle and the secret
files it names are overwritten and deleted.

Idempotent: each action reports changed or unchanged, and a second run with the same bundle says
"nothing to change". Not run as root, owners cannot be set: each file says who would own it.
Exit status 0, 1 when an action or a check failed, 2 for a bad bundle or usage.

This module is the command; the rest, each module using only those above it::

    errors   ProvisionError, BundleError (its exit status each)
    toml     the small TOML writer (tomllib does not write)
    bundle   the bundle's format; reading and checking it, or asking for it on a terminal
    steps    one file, directory or symlink as it must be, and making it so; Outcome, Status
    plan     what the bundle becomes: the layout on the kiosk, the config, the units, the keys
    system   the machine: its tools, owners, the service user, systemd and udev reloads
    verify   the checks after the files: the config, each provider, the self-test
    apply    running a plan: provision(), its lines and its Report

Everything public in them is importable from here (``from kiosk.provision import X``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from kiosk.errors import KioskError
from kiosk.provision.apply import Report, provision, show_identity
from kiosk.provision.bundle import (
    DEVICES,
    RESERVED,
    SECTIONS,
    Bundle,
    Usb,
    ask_bundle,
    inline_files,
    parse_bundle,
    read_bundle,
)
from kiosk.provision.errors import BundleError, ProvisionError
from kiosk.provision.plan import (
    CONFIG,
    ETC,
    GROUPS,
    SECRETS,
    SOURCE,
    SYSUSERS,
    UDEV,
    UNIT_DIR,
    UNITS,
    USER,
    Plan,
    build_plan,
    config_text,
    secrets_text,
    sysusers_text,
    udev_rules,
)
from kiosk.provision.steps import Outcome, Status, Step, differences
from kiosk.provision.system import Run, System, ensure_user, missing_membership, reloads
from kiosk.provision.toml import Unwritable, dumps
from kiosk.provision.verify import checks, selftest

__all__ = [
    "CONFIG",
    "DEVICES",
    "ETC",
    "GROUPS",
    "RESERVED",
    "SECRETS",
    "SECTIONS",
    "SOURCE",
    "SYSUSERS",
    "UDEV",
    "UNITS",
    "UNIT_DIR",
    "USER",
    "Bundle",
    "BundleError",
    "Outcome",
    "Plan",
    "ProvisionError",
    "Report",
    "Run",
    "Status",
    "Step",
    "System",
    "Unwritable",
    "Usb",
    "add_parser",
    "ask_bundle",
    "build_plan",
    "checks",
    "cmd_provision",
    "config_text",
    "differences",
    "dumps",
    "ensure_user",
    "inline_files",
    "missing_membership",
    "parse_bundle",
    "provision",
    "read_bundle",
    "reloads",
    "remove_securely",
    "run_command",
    "secrets_text",
    "selftest",
    "show_identity",
    "sysusers_text",
    "udev_rules",
]

# --- the command -----------------------------------------------------------------------------


def remove_securely(path: Path) -> None:
    """Overwrite the file with zeros, sync, then unlink it (it holds secrets)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())
    path.unlink()


def _remove_bundle(bundle: Bundle, report: Report, out: TextIO) -> None:
    paths = [Path(bundle.where), *bundle.secret_files]
    if report.dry_run:
        print(f"would remove (overwritten, then deleted): {' '.join(map(str, paths))}", file=out)
    elif report.actions_failed:
        print(f"kept {bundle.where}: provisioning failed, fix it and run again", file=out)
    else:
        for path in paths:
            remove_securely(path)
        print(f"removed (overwritten, then deleted): {' '.join(map(str, paths))}", file=out)


def _bundle(args: argparse.Namespace) -> Bundle:
    if args.bundle:
        return read_bundle(Path(args.bundle))
    if args.remove_bundle:
        raise BundleError("--remove-bundle needs --bundle FILE")
    if not sys.stdin.isatty():
        raise BundleError(
            "give --bundle FILE (see provisioning/bundle.toml.example),"
            " or run on a terminal to be asked"
        )
    print(
        "kiosk provision: no --bundle given, a few questions (Ctrl-C stops; nothing is"
        " written before the last answer)."
    )
    try:
        raw = ask_bundle(input)
    except EOFError:
        raise BundleError("no answer (end of input): give --bundle FILE") from None
    return parse_bundle(raw, Path.cwd(), "the answers")


def run_command(args: argparse.Namespace, system: System, out: TextIO) -> int:
    root = Path(args.root)
    if not root.is_dir():
        raise BundleError(f"--root {root}: no such directory")
    root = root.resolve()
    if root == Path("/") and system.euid() != 0 and not args.dry_run:
        raise BundleError(
            "run as root (sudo) to provision this machine; --dry-run shows what would change"
        )
    bundle = _bundle(args)
    report = provision(
        bundle, root, system=system, dry_run=args.dry_run, skip_hardware=args.skip_hardware, out=out
    )
    if args.remove_bundle:
        _remove_bundle(bundle, report, out)
    return 1 if report.failed else 0


def cmd_provision(args: argparse.Namespace) -> int:
    """``kiosk provision``: every error is a message and an exit status, never a traceback."""
    try:
        return run_command(args, System(), sys.stdout)
    except KioskError as exc:
        print(f"kiosk provision: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))
    except OSError as exc:
        print(f"kiosk provision: {exc} (run as root?)", file=sys.stderr)
        return 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers ``kiosk provision`` (``kiosk.cli.build_parser`` calls it)."""
    p = sub.add_parser(
        "provision",
        help="make this Pi (or a mounted SD card) a kiosk from a provisioning bundle",
        description="Write the config, the secrets, the device identity, the udev rules, the"
        " service user and the systemd units from one bundle (provisioning/bundle.toml.example);"
        " then, on /, check each provider and run the self-test. Idempotent. Exit 0 done, 1 an"
        " action or a check failed, 2 a bad bundle or usage.",
    )
    p.add_argument(
        "--bundle",
        metavar="FILE",
        help="the kiosk's bundle; without it, on a terminal, a few questions",
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        default="/",
        help="install under DIR: a mounted SD card's root or a test folder (default /);"
        " provider checks and the self-test run only on /",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    p.add_argument("--skip-hardware", action="store_true", help="do not run the device self-test")
    p.add_argument(
        "--remove-bundle",
        action="store_true",
        help="after a successful provision, overwrite and delete the bundle and the secret"
        " files it names",
    )
    p.set_defaults(fn=cmd_provision)
