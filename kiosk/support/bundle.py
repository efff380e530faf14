"""One bundle: :func:`make_bundle` reads the config, the journal's part, the logs and the
status, redacts each, and writes them with their manifest
(:func:`~kiosk.support.archive.write_tar`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kiosk.errors import StorageError
from kiosk.redact import Redactor, redact
from kiosk.support.archive import write_tar
from kiosk.support.configfile import (
    SecretsView,
    read_secrets_view,
    redact_config,
    secrets_names_toml,
)
from kiosk.support.errors import BundleError, BundleUsageError
from kiosk.support.extract import extract, open_read_only
from kiosk.support.logs import cap, collect_logs, daemon_status
from kiosk.support.times import DEFAULT_WINDOW, journal_time, parse_time


def _firmware() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kiosk")
    except PackageNotFoundError:
        return "unknown"


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


@dataclass(frozen=True, slots=True)
class Request:
    config: Path
    ref: str | None
    since: str | None
    until: str | None
    out: Path | None


def make_bundle(req: Request, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Path:
    """Write the bundle of ``req``; its path."""
    import sqlite3

    from kiosk import config

    at = now()
    since, until = _period(req, at)
    cfg = config.load(req.config)
    view = read_secrets_view(cfg.secrets_file)
    redactor = Redactor(view.literals)
    out = req.out or Path(f"kiosk-support-{cfg.kiosk_id}-{at.strftime('%Y%m%dT%H%M%SZ')}.tar.gz")
    if out.exists() or out.is_symlink():
        raise BundleError(f"{out} exists: remove it or choose another --out")
    with open_read_only(cfg.journal_path) as conn:
        try:
            ex = extract(conn, ref=req.ref, since=since, until=until)
        except sqlite3.OperationalError as exc:
            raise StorageError(
                f"journal {cfg.journal_path}: {exc}: not a kiosk journal, or a newer one"
            ) from exc
    journal_doc = redactor.value(ex.journal)
    try:
        config_text = cfg.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        config_text = f"# {cfg.file}: not readable ({type(exc).__name__})\n"
    logs, log_source = collect_logs(cfg.state_dir, ex.since, ex.until)
    members = [
        ("config.toml", (redact_config(config_text, redactor) + "\n" + secrets_names_toml(view))),
        ("journal.json", _dumps(journal_doc)),
        ("logs.txt", cap(redactor.text(logs))),
        ("status.json", _dumps(redactor.value(daemon_status(cfg.state_dir)))),
    ]
    data = [(name, text.encode()) for name, text in members]
    about = {
        "kiosk_id": cfg.kiosk_id,
        "location": cfg.location,
        "firmware": _firmware(),
        "created_at": journal_time(at),
        "asked": {"ref": req.ref, "since": req.since, "until": req.until},
        "window": journal_doc["window"],
        "transactions": len(journal_doc["transactions"]),
        "chain_ok": journal_doc["chain"]["ok"],
        "config_file": str(cfg.file),
        "logs": log_source,
    }
    manifest = _manifest(redactor.value(about), view, data)
    write_tar(out, [("manifest.json", _dumps(manifest).encode()), *data], at)
    return out


def _period(req: Request, at: datetime) -> tuple[datetime | None, datetime]:
    """``--since`` and ``--until`` as times (``since`` None with ``--ref``)."""
    if req.until is not None and req.since is None:
        raise BundleUsageError("--until needs --since (or use --ref for one transaction)")
    until = parse_time(req.until, "--until", at) if req.until else at
    since = parse_time(req.since, "--since", at) if req.since else None
    if req.ref is None and since is None:
        since = until - DEFAULT_WINDOW
    if since is not None and since >= until:
        raise BundleUsageError(f"--since {req.since} is not before --until {req.until or 'now'}")
    return since, until


def _manifest(
    about: dict[str, Any], view: SecretsView, members: Sequence[tuple[str, bytes]]
) -> dict[str, Any]:
    """``about`` (redacted already), the secrets file's key names (names only: never a
    value), and each member's size and SHA-256."""
    return {
        **about,
        "secrets_file": {
            "path": redact(str(view.path), view.literals),
            "readable": view.readable,
            "note": view.note,
            "keys": {name: "<redacted>" for name in view.names},
        },
        "files": [
            {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in members
        ],
    }
