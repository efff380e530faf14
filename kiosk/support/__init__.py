"""``kiosk support-bundle``: what support needs about one transaction or a period, as one
``.tar.gz`` a technician can send, with every secret and every customer code taken out.

::

    kiosk support-bundle [--config F] [--ref REF | --since T [--until T]] [--out FILE]

``T`` is an ISO 8601 time (UTC unless it carries an offset: ``2026-11-21``,
``2026-11-21T17:00``, ``2026-11-21T17:00:00+04:00``) or an age (``90m``, ``24h``, ``7d``);
the period is ``[since, until)``, ``until`` defaulting to now. Without ``--ref`` or
``--since``: the last 24 hours. ``FILE`` defaults to
``./kiosk-support-<kiosk id>-<UTC time>.tar.gz``; it is created with mode 0600 and never
overwritten.

Members, each passed through :class:`Redactor`:

- ``manifest.json``: kiosk id, firmware version, when, what was asked and the window it
  covers, where the logs came from, the secrets file's key names (never a value), each other
  member's size and SHA-256;
- ``config.toml``: the config file, every value keyed like *key*, *secret*, *token*,
  *password* (…) replaced by ``"<redacted>"``; the secrets file's key names appended as
  comments (the secrets file itself is never included);
- ``journal.json``: the transaction ``REF``, or every transaction created or with an event in
  the period, each with its events, effects (request, outcome), liabilities, outbox rows
  (never ``sealed``, the encrypted request: not even read) and receipt documents; the
  kiosk-level events and receipts of the window; the events' hash-chain check. Codes' keyed
  hashes (``used_codes``, ``transactions.code_hash``) and the chain's hashes are left out;
- ``logs.txt``: ``journalctl -u kiosk`` for the window (``REF``: its first event minus 5
  minutes to its last plus 5), else the lines of the window of ``state_dir/*.log``, else a
  note;
- ``status.json``: the running daemon's ``status`` over ``state_dir/admin.sock``, or a note.

Read-only: the journal is opened read-only and never migrated; when no daemon has it open
(no ``-wal``/``-shm`` beside it) it is opened ``immutable``, so not even those files appear.
Nothing is created but the bundle. Exit status (through :mod:`kiosk.cli`): 0 written; 1 no
journal, an unknown ``REF``, the bundle cannot be written; 2 a bad option or configuration.

This module is the command; the rest, each module using only those above it (and
:mod:`kiosk.redact`, the redaction)::

    errors      BundleError, BundleUsageError (their exit status each)
    times       ``--since``/``--until`` as times; the journal's form of a time
    configfile  the config file with secret values replaced; the secrets file's key names
    extract     the journal opened read-only; its part for a REF or a period
    logs        the daemon's log for the window; its status over the admin socket
    archive     writing the .tar.gz (0600, never replacing a file)
    bundle      make_bundle(): the members, the manifest

Everything public in them, and the redaction, is importable from here
(``from kiosk.support import X``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kiosk.redact import MIN_LITERAL, Redactor, literals_of, redact, redact_json
from kiosk.support.archive import write_tar
from kiosk.support.bundle import Request, make_bundle
from kiosk.support.configfile import (
    SecretsView,
    read_secrets_view,
    redact_config,
    secrets_names_toml,
)
from kiosk.support.errors import BundleError, BundleUsageError
from kiosk.support.extract import MAX_TRANSACTIONS, REF_MARGIN, Extract, extract, open_read_only
from kiosk.support.logs import (
    JOURNALCTL_TIMEOUT_S,
    MAX_LOG_BYTES,
    STATUS_TIMEOUT_S,
    cap,
    collect_logs,
    daemon_status,
)
from kiosk.support.times import DEFAULT_WINDOW, journal_time, parse_time

__all__ = [
    "DEFAULT_WINDOW",
    "JOURNALCTL_TIMEOUT_S",
    "MAX_LOG_BYTES",
    "MAX_TRANSACTIONS",
    "MIN_LITERAL",
    "REF_MARGIN",
    "STATUS_TIMEOUT_S",
    "BundleError",
    "BundleUsageError",
    "Extract",
    "Redactor",
    "Request",
    "SecretsView",
    "add_parser",
    "cap",
    "cmd_support_bundle",
    "collect_logs",
    "daemon_status",
    "extract",
    "journal_time",
    "literals_of",
    "make_bundle",
    "open_read_only",
    "parse_time",
    "read_secrets_view",
    "redact",
    "redact_config",
    "redact_json",
    "secrets_names_toml",
    "write_tar",
]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``kiosk support-bundle``, for :func:`kiosk.cli.build_parser`."""
    p = sub.add_parser(
        "support-bundle",
        help="logs, config and journal extracts for support, secrets and codes removed",
        description="Write a .tar.gz for support: the journal's part for one transaction"
        " (--ref) or a period (--since/--until; default the last 24 hours), the config, the"
        " daemon's log and status, with every secret and customer code removed. Read-only."
        " Exit 0 written, 1 no journal or unknown REF, 2 a bad option or configuration.",
    )
    p.add_argument(
        "--config", help="TOML config (default $KIOSK_CONFIG, else /etc/kiosk/kiosk.toml)"
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--ref", help="one transaction's reference (as on its receipt)")
    what.add_argument(
        "--since", metavar="T", help="ISO 8601 time, UTC unless offset given, or an age (24h, 7d)"
    )
    p.add_argument("--until", metavar="T", help="end of the period (default now), with --since")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="where to write (default ./kiosk-support-<kiosk id>-<UTC time>.tar.gz; mode 600)",
    )
    p.set_defaults(fn=cmd_support_bundle)


def cmd_support_bundle(args: argparse.Namespace) -> int:
    from kiosk import config

    out = make_bundle(
        Request(
            config=config.resolve_path(args.config),
            ref=args.ref,
            since=args.since,
            until=args.until,
            out=Path(args.out) if args.out else None,
        )
    )
    print(f"{out}: support bundle written (secrets and codes removed); send it to support")
    return 0
