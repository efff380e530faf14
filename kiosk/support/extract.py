"""The journal's part for one transaction or a period, read from the journal opened read-only
(never migrated, leaving nothing behind): :func:`open_read_only`, :func:`extract`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from kiosk.errors import StorageError
from kiosk.redact import redact
from kiosk.support.errors import BundleError
from kiosk.support.times import DEFAULT_WINDOW, journal_time

if TYPE_CHECKING:
    import sqlite3

REF_MARGIN: Final = timedelta(minutes=5)
MAX_TRANSACTIONS: Final = 10_000


@contextlib.contextmanager
def open_read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """The journal at ``path``, read-only, never migrated, leaving nothing behind: beside a
    daemon (its ``-wal`` and ``-shm`` exist) through them; closed cleanly (neither exists)
    ``immutable``, so SQLite creates neither; a ``-wal`` without its ``-shm`` (after a crash)
    from a copy in a temporary directory."""
    import shutil
    import sqlite3
    import tempfile

    if not path.is_file():
        raise BundleError(
            f"no journal at {path}: has the kiosk run with this state directory?"
            " (check kiosk.state_dir in the config, or pass --config)"
        )
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    with contextlib.ExitStack() as stack:
        if wal.exists() and shm.exists():
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        elif not wal.exists():
            uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kiosk-support-")))
            try:
                shutil.copyfile(path, tmp / "journal.db")
                shutil.copyfile(wal, tmp / "journal.db-wal")
            except OSError as exc:
                raise StorageError(f"journal {path}: cannot read it ({exc.strerror})") from exc
            uri = f"file:{quote(str(tmp / 'journal.db'))}"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"journal {path}: {exc}; check the file and its rights") from exc
        stack.callback(conn.close)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN")  # one snapshot for every table
            yield conn
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"journal {path}: {exc}; is it a kiosk journal? (kiosk journal verify)"
            ) from exc


def _columns(conn: sqlite3.Connection, table: str, leave_out: Sequence[str]) -> str:
    import sqlite3

    names = [r["name"] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    if not names:
        raise sqlite3.OperationalError(f"no table {table}")
    return ", ".join(f'"{n}"' for n in names if n not in leave_out)


def _select(
    conn: sqlite3.Connection,
    table: str,
    where: str,
    args: Sequence[Any],
    *,
    leave_out: Sequence[str] = (),
    json_cols: Sequence[str] = (),
    order: str = "id",
) -> list[dict[str, Any]]:
    """Rows of ``table``; the columns in ``leave_out`` are never read."""
    cols = _columns(conn, table, leave_out)
    sql = f'SELECT {cols} FROM "{table}" WHERE {where} ORDER BY {order}'  # noqa: S608 - constants
    rows = [dict(r) for r in conn.execute(sql, args)]
    for row in rows:
        for col in json_cols:
            if isinstance(row.get(col), str):
                with contextlib.suppress(ValueError):
                    row[col] = json.loads(row[col])
    return rows


def _transaction(conn: sqlite3.Connection, tx: dict[str, Any]) -> dict[str, Any]:
    tx_id = [tx["id"]]
    return {
        "transaction": tx,
        "events": _select(
            conn, "events", "tx_id = ?", tx_id,
            leave_out=("prev_hash", "hash"), json_cols=("data",), order="seq",
        ),
        "effects": _select(conn, "effects", "tx_id = ?", tx_id, json_cols=("request", "outcome")),
        "liabilities": _select(conn, "liabilities", "tx_id = ?", tx_id),
        "outbox": _select(
            conn, "outbox", "tx_id = ?", tx_id, leave_out=("sealed",), json_cols=("result",)
        ),
        "receipts": _select(conn, "receipts", "tx_id = ?", tx_id, json_cols=("document",)),
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Extract:
    journal: dict[str, Any]
    since: datetime
    until: datetime


_NO_HASH: Final = ("code_hash",)  # a code's keyed hash: not needed for support


def extract(
    conn: sqlite3.Connection, *, ref: str | None, since: datetime | None, until: datetime
) -> Extract:
    """The journal's part for ``ref`` (its window: its first event minus :data:`REF_MARGIN`
    to its last plus it), or for the period ``[since, until)``."""
    from kiosk.journal import verify_chain

    if ref is not None:
        items, since, until = _by_ref(conn, ref)
        asked: dict[str, Any] = {"ref": items[0]["transaction"]["ref"]}
        truncated = False
    else:
        since = since or until - DEFAULT_WINDOW
        items, truncated = _in_period(conn, journal_time(since), journal_time(until))
        asked = {"since": journal_time(since), "until": journal_time(until)}
    lo, hi = journal_time(since), journal_time(until)
    report = verify_chain(conn)
    doc = {
        "asked": asked,
        "window": {"since": lo, "until": hi},
        "chain": {
            "ok": report.ok,
            "checked": report.checked,
            "first_bad": report.first_bad,
            "reason": report.reason,
        },
        "transactions": items,
        "truncated": truncated,
        "kiosk_events": _select(
            conn, "events", "tx_id IS NULL AND at >= ? AND at < ?", [lo, hi],
            leave_out=("prev_hash", "hash"), json_cols=("data",), order="seq",
        ),
        "kiosk_receipts": _select(
            conn, "receipts", "tx_id IS NULL AND created_at >= ? AND created_at < ?", [lo, hi],
            json_cols=("document",),
        ),
    }  # fmt: skip
    return Extract(doc, since, until)


def _by_ref(conn: sqlite3.Connection, ref: str) -> tuple[list[dict[str, Any]], datetime, datetime]:
    found = _select(conn, "transactions", "ref = ? OR id = ?", [ref, ref], leave_out=_NO_HASH)
    if not found:
        raise BundleError(
            f"no transaction {redact(ref)} in the journal: `kiosk journal` lists the"
            " references (as printed on receipts, e.g. KSK-0001-000042)"
        )
    item = _transaction(conn, found[0])
    times = [found[0]["created_at"], found[0]["updated_at"], *(e["at"] for e in item["events"])]
    when = [datetime.fromisoformat(t).astimezone(UTC) for t in times]
    return [item], min(when) - REF_MARGIN, max(when) + REF_MARGIN


def _in_period(conn: sqlite3.Connection, lo: str, hi: str) -> tuple[list[dict[str, Any]], bool]:
    """Every transaction created, or with an event, in ``[lo, hi)`` (at most
    :data:`MAX_TRANSACTIONS`), and whether some were left out."""
    txs = _select(
        conn,
        "transactions",
        "(created_at >= ? AND created_at < ?) OR id IN (SELECT tx_id FROM events"
        " WHERE tx_id IS NOT NULL AND at >= ? AND at < ?)",
        [lo, hi, lo, hi],
        leave_out=_NO_HASH,
    )
    items = [_transaction(conn, tx) for tx in txs[:MAX_TRANSACTIONS]]
    return items, len(txs) > len(items)
