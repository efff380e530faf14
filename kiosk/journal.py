"""The journal: every step of every transaction, durable before it happens.

SQLite through sqlite-utils, WAL, ``synchronous=FULL`` (a commit is fsync'd before it returns).

Tables (``MIGRATIONS``):

- ``transactions``: one row per customer journey; ``state`` is the state machine's state
  (``kiosk.journeys``), ``credited`` the sum of notes credited, ``owed`` the open liability.
- ``events``: append-only log (triggers refuse UPDATE and DELETE), one row per transition,
  note, fault and decision; ``tx_id`` is NULL for kiosk-level events.
- ``effects``: a side effect's *intent* (committed before the side effect) and its *outcome*
  (committed right after): ``intent`` → ``done`` | ``failed`` | ``unknown``. After a crash, an
  ``intent`` row says exactly which step was in flight. ``idem_key`` is unique: the key that
  makes a provider call resumable.
- ``liabilities``: money owed to a customer, open until a technician settles it.
- ``receipts``: the print queue; a receipt that failed stays ``queued`` for reprint.
- ``used_codes``: keyed hashes (HMAC-SHA256) of codes already used. Codes, OTPs, tokenUrls
  and secrets are never written here in the clear.

Start-up cost: steady state runs on the stdlib ``sqlite3`` connection; sqlite-utils (and its
click/dateutil/pluggy chain, 0.2 s here and over a second on a Pi) is imported only when a
migration is pending, to create and record the schema.

One writer: :class:`Journal` is synchronous and owned by one thread; :class:`AsyncJournal`
runs it on a single dedicated thread that the event loop awaits, so the loop never blocks on
disk and writes never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

from kiosk.crashhook import CrashHook
from kiosk.errors import NoJournal, StorageError
from kiosk.journeys import JOURNEYS, TERMINAL

P = ParamSpec("P")
R = TypeVar("R")

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE transactions (
        id INTEGER PRIMARY KEY,
        ref TEXT NOT NULL UNIQUE,
        journey TEXT NOT NULL,
        provider TEXT NOT NULL,
        state TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_due INTEGER NOT NULL DEFAULT 0,
        credited INTEGER NOT NULL DEFAULT 0,
        dispensed INTEGER NOT NULL DEFAULT 0,
        owed INTEGER NOT NULL DEFAULT 0,
        provider_ref TEXT,
        code_hash TEXT,
        reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX transactions_state ON transactions(state);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tx_id INTEGER REFERENCES transactions(id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_tx ON events(tx_id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TABLE effects (
        id INTEGER PRIMARY KEY,
        tx_id INTEGER NOT NULL REFERENCES transactions(id),
        kind TEXT NOT NULL,
        idem_key TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL CHECK (status IN ('intent', 'done', 'failed', 'unknown')),
        amount INTEGER,
        request TEXT NOT NULL DEFAULT '{}',
        outcome TEXT NOT NULL DEFAULT '{}',
        started_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE INDEX effects_tx ON effects(tx_id);
    CREATE TABLE liabilities (
        id INTEGER PRIMARY KEY,
        tx_id INTEGER NOT NULL REFERENCES transactions(id),
        amount INTEGER NOT NULL,
        currency TEXT NOT NULL,
        reason TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'settled')),
        created_at TEXT NOT NULL,
        settled_at TEXT,
        settled_note TEXT
    );
    CREATE TABLE receipts (
        id INTEGER PRIMARY KEY,
        tx_id INTEGER REFERENCES transactions(id),
        kind TEXT NOT NULL,
        document TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'printed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at TEXT NOT NULL,
        printed_at TEXT
    );
    CREATE TABLE used_codes (
        hash TEXT PRIMARY KEY,
        tx_id INTEGER REFERENCES transactions(id),
        at TEXT NOT NULL
    );
    """,
    # 2: the events are hash-chained (tamper evidence); journal_head holds the chain's end
    """
    ALTER TABLE events ADD COLUMN prev_hash TEXT;
    ALTER TABLE events ADD COLUMN hash TEXT;
    CREATE TABLE journal_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    );
    """,
    # 3: the outbox (every provider call that moves money, before it is a request)
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        tx_id INTEGER NOT NULL REFERENCES transactions(id),
        op TEXT NOT NULL,
        idem_key TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL CHECK (status IN ('queued', 'done', 'failed')),
        sealed TEXT,
        request_time_ms INTEGER NOT NULL,
        void_after_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at_ms INTEGER NOT NULL,
        last_error TEXT,
        result TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE INDEX outbox_due ON outbox(status, next_at_ms);
    CREATE INDEX outbox_tx ON outbox(tx_id);
    """,
    # 4: a liability may stand for one effect (an unconfirmed note): owed at most once
    """
    ALTER TABLE liabilities ADD COLUMN effect_id INTEGER REFERENCES effects(id);
    CREATE UNIQUE INDEX liabilities_effect ON liabilities(effect_id) WHERE effect_id IS NOT NULL;
    """,
)

GENESIS: Final = "0" * 64


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Tx:
    id: int
    ref: str
    journey: str
    provider: str
    state: str
    currency: str
    amount_due: int
    credited: int
    dispensed: int
    owed: int
    provider_ref: str | None
    code_hash: str | None
    reason: str | None
    created_at: str
    updated_at: str

    @property
    def closed(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True, slots=True)
class Effect:
    id: int
    tx_id: int
    kind: str
    idem_key: str
    status: str
    amount: int | None
    request: dict[str, Any]
    outcome: dict[str, Any]
    started_at: str
    ended_at: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A side effect's outcome, committed inside a :meth:`Journal.decide`."""

    effect_id: int
    status: str  # done | failed | unknown
    outcome: dict[str, Any] | None = None
    credit: int = 0
    dispensed: int = 0


@dataclass(frozen=True, slots=True)
class Call:
    """A provider call that moves money, for the outbox: ``request`` is sealed (encrypted)
    because it may hold a customer's code; ``public`` goes to the effect in the clear."""

    op: str
    kind: str  # the effect's kind ("pay")
    idem_key: str
    amount: int
    request: dict[str, Any] | None  # None: not kept (only the provider's state can settle it)
    public: dict[str, Any]
    request_time_ms: int
    void_after_ms: int


def _dumps(data: dict[str, Any] | None) -> str:
    return json.dumps(data or {}, sort_keys=True, separators=(",", ":"))


class Journal:
    """Synchronous journal. Use from one thread only (the daemon wraps it in AsyncJournal)."""

    def __init__(self, db: _Db, kiosk_id: str, code_key: bytes) -> None:
        self.db = db
        self.kiosk_id = kiosk_id
        self._code_key = code_key
        self._depth = 0
        self._crash = CrashHook.from_env()
        self._step_kinds: list[str] = []  # events of a transaction in the open commit

    @classmethod
    def open(cls, path: Path, *, kiosk_id: str, code_key: bytes) -> Journal:
        """Open (creating and migrating) the journal at ``path``."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
            db = _Db(conn)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            journal = cls(db, kiosk_id, code_key)
            journal._migrate()
        except sqlite3.Error as exc:
            raise StorageError(f"journal {path}: {exc}; check the disk and the state dir") from exc
        return journal

    @classmethod
    def open_read_only(cls, path: Path, *, kiosk_id: str, code_key: bytes) -> Journal:
        """Open the journal at ``path`` for reading only (technicians' commands): never creates
        the state directory or a journal, never migrates, never writes. Raises
        :class:`~kiosk.errors.NoJournal` when there is none, :class:`StorageError` when it
        cannot be read or its schema is older than this kiosk's (the daemon migrates it).

        A journal in WAL mode needs its ``-shm`` file to be read; when the daemon is stopped and
        the directory is not ours to write, SQLite cannot create it, so the file is read as
        immutable then (no ``-wal`` file: no writer has it open)."""
        try:
            present = path.is_file()
        except OSError as exc:  # a directory on the way we may not search
            raise StorageError(f"journal {path}: cannot read it ({exc}); {_AS_KIOSK}") from exc
        if not present:
            raise NoJournal(path)
        conn = _connect_ro(path)  # connecting reads nothing yet: the first query does
        try:
            try:
                version = _schema_version(conn)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorname not in _NEEDS_SHM or _wal_of(path).exists():
                    raise
                conn.close()
                conn = _connect_ro(path, immutable=True)
                version = _schema_version(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"journal {path}: cannot read it ({exc}); {_AS_KIOSK}") from exc
        if version < len(MIGRATIONS):
            conn.close()
            behind = "has no kiosk tables" if version == 0 else f"is at schema {version}"
            raise StorageError(
                f"journal {path} {behind}, this kiosk reads schema {len(MIGRATIONS)}: start the"
                " daemon once (systemctl restart kiosk) to migrate it"
            )
        return cls(_Db(conn), kiosk_id, code_key)

    def close(self) -> None:
        self.db.conn.close()

    # --- transactions of the database ----------------------------------------------------------

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """One durable commit; nested calls join the outer one (savepoints)."""
        conn = self.db.conn
        name = f"sp{self._depth}"
        conn.execute("BEGIN IMMEDIATE" if self._depth == 0 else f"SAVEPOINT {name}")
        if self._depth == 0:
            self._step_kinds = []
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            conn.execute("ROLLBACK" if self._depth == 0 else f"ROLLBACK TO {name}")
            if self._depth:
                conn.execute(f"RELEASE {name}")
            raise
        else:
            self._depth -= 1
            if self._depth:
                conn.execute(f"RELEASE {name}")
                return
            durable = self._crash is not None and bool(self._step_kinds)
            if durable:
                self._crash.before()  # type: ignore[union-attr]
            conn.execute("COMMIT")
            if durable:
                self._crash.after(self._step_kinds)  # type: ignore[union-attr]

    def _migrate(self) -> None:
        has_table = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
        ).fetchone()
        done = (
            {r["version"] for r in self.db.query("SELECT version FROM _migrations")}
            if has_table
            else set()
        )
        pending = [(v, sql) for v, sql in enumerate(MIGRATIONS, start=1) if v not in done]
        if not pending:
            return
        import sqlite_utils  # only on first boot and after an upgrade

        schema = sqlite_utils.Database(self.db.conn)
        if not has_table:
            schema.table("_migrations").create({"version": int, "applied_at": str}, pk="version")
        for version, script in pending:
            with self.atomic():
                for statement in _split_sql(script):
                    self.db.execute(statement)
                if version == 2:
                    self._chain_existing_events()
                self.db.execute(
                    "INSERT INTO _migrations (version, applied_at) VALUES (?, ?)",
                    [version, now_iso()],
                )

    def _chain_existing_events(self) -> None:
        """Migration 2: link the events written before the chain existed (append-only
        triggers are lifted for this one pass, inside the migration's commit)."""
        rows = list(
            self.db.execute(
                "SELECT seq, tx_id, at, kind, from_state, to_state, data FROM events ORDER BY seq"
            )
        )
        if not rows:
            return
        self.db.execute("DROP TRIGGER events_no_update")
        prev = GENESIS
        for row in rows:
            digest = chain_hash(prev, tuple(row))
            self.db.execute(
                "UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", [prev, digest, row[0]]
            )
            prev = digest
        self.db.execute(
            "INSERT INTO journal_head (id, seq, hash) VALUES (1, ?, ?)", [rows[-1][0], prev]
        )
        self.db.execute(
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
            " BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
        )

    @property
    def schema_version(self) -> int:
        row = self.db.execute("SELECT MAX(version) FROM _migrations").fetchone()
        return int(row[0] or 0)

    # --- writes ---------------------------------------------------------------------------------

    def _event(
        self,
        tx_id: int | None,
        kind: str,
        data: dict[str, Any] | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
    ) -> None:
        if tx_id is not None:
            self._step_kinds.append(kind)
        head = self.db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (int(head[0]) + 1, head[1] or GENESIS) if head else (1, GENESIS)
        row = (seq, tx_id, now_iso(), kind, from_state, to_state, _dumps(data))
        digest = chain_hash(prev, row)
        self.db.execute(
            "INSERT INTO events (seq, tx_id, at, kind, from_state, to_state, data, prev_hash,"
            " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*row, prev, digest],
        )
        self.db.execute(
            "INSERT INTO journal_head (id, seq, hash) VALUES (1, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            [seq, digest],
        )

    def log(self, kind: str, data: dict[str, Any] | None = None, tx_id: int | None = None) -> None:
        """A kiosk-level (or transaction) event with no state change: faults, door, decisions."""
        with self.atomic():
            self._event(tx_id, kind, data)

    def begin(
        self, journey: str, *, currency: str, code_hash: str | None = None, amount_due: int = 0
    ) -> Tx:
        j = JOURNEYS[journey]
        at = now_iso()
        with self.atomic():
            cur = self.db.execute(
                "INSERT INTO transactions (ref, journey, provider, state, currency, amount_due,"
                " code_hash, created_at, updated_at) VALUES ('', ?, ?, ?, ?, ?, ?, ?, ?)",
                [journey, j.provider, j.initial, currency, amount_due, code_hash, at, at],
            )
            tx_id = int(cur.lastrowid or 0)
            ref = f"{self.kiosk_id}-{tx_id:06d}"
            self.db.execute("UPDATE transactions SET ref = ? WHERE id = ?", [ref, tx_id])
            self._event(tx_id, "begin", {"journey": journey}, None, j.initial)
        return self.get(tx_id)

    def transition(
        self, tx_id: int, to_state: str, *, data: dict[str, Any] | None = None, **fields: Any
    ) -> Tx:
        """Move ``tx_id`` to ``to_state`` (checked against its journey) and set ``fields``
        (amount_due, provider_ref, reason) in the same commit."""
        allowed = {"amount_due", "provider_ref", "reason"}
        if not set(fields) <= allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)} on a transaction")
        with self.atomic():
            tx = self.get(tx_id)
            JOURNEYS[tx.journey].check(tx.state, to_state)
            sets = ", ".join(f"{k} = ?" for k in ["state", "updated_at", *fields])
            self.db.execute(
                f"UPDATE transactions SET {sets} WHERE id = ?",  # noqa: S608 - keys allow-listed
                [to_state, now_iso(), *fields.values(), tx_id],
            )
            self._event(tx_id, "transition", {**(data or {}), **fields}, tx.state, to_state)
        return self.get(tx_id)

    def intent(
        self,
        tx_id: int,
        kind: str,
        idem_key: str,
        *,
        amount: int | None = None,
        request: dict[str, Any] | None = None,
    ) -> Effect:
        """Commit the intent of a side effect before doing it. Re-declaring the same
        ``idem_key`` returns the existing effect (a resumed step keeps its key)."""
        with self.atomic():
            existing = self.effect_by_key(idem_key)
            if existing is not None:
                return existing
            cur = self.db.execute(
                "INSERT INTO effects (tx_id, kind, idem_key, status, amount, request, started_at)"
                " VALUES (?, ?, ?, 'intent', ?, ?, ?)",
                [tx_id, kind, idem_key, amount, _dumps(request), now_iso()],
            )
            effect_id = int(cur.lastrowid or 0)
            self._event(
                tx_id, f"{kind}.intent", {"effect": effect_id, "amount": amount, **(request or {})}
            )
        return self.effect(effect_id)

    def outcome(
        self,
        effect_id: int,
        status: str,
        *,
        outcome: dict[str, Any] | None = None,
        credit: int = 0,
        dispensed: int = 0,
    ) -> Effect:
        """Commit a side effect's outcome; ``credit``/``dispensed`` move the transaction's
        totals in the same commit."""
        if status not in ("done", "failed", "unknown"):
            raise ValueError(f"bad outcome status {status!r}")
        with self.atomic():
            eff = self.effect(effect_id)
            self.db.execute(
                "UPDATE effects SET status = ?, outcome = ?, ended_at = ? WHERE id = ?",
                [status, _dumps(outcome), now_iso(), effect_id],
            )
            if credit or dispensed:
                self.db.execute(
                    "UPDATE transactions SET credited = credited + ?, dispensed = dispensed + ?,"
                    " updated_at = ? WHERE id = ?",
                    [credit, dispensed, now_iso(), eff.tx_id],
                )
            self._event(
                eff.tx_id,
                f"{eff.kind}.{status}",
                {"effect": effect_id, "credit": credit, **(outcome or {})},
            )
        return self.effect(effect_id)

    def owe(self, tx_id: int, amount: int, reason: str) -> None:
        """Record a liability to the customer (adds to ``transactions.owed``)."""
        if amount <= 0:
            return
        with self.atomic():
            self._owe(self.get(tx_id), amount, reason)

    def _owe(self, tx: Tx, amount: int, reason: str, effect_id: int | None = None) -> bool:
        if amount <= 0:
            return False
        if (
            effect_id is not None
            and self.db.execute(
                "SELECT 1 FROM liabilities WHERE effect_id = ?", [effect_id]
            ).fetchone()
        ):
            return False  # this note is owed already: owing is idempotent per effect
        self.db.execute(
            "INSERT INTO liabilities (tx_id, amount, currency, reason, created_at, effect_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [tx.id, amount, tx.currency, reason, now_iso(), effect_id],
        )
        self.db.execute("UPDATE transactions SET owed = owed + ? WHERE id = ?", [amount, tx.id])
        self._event(tx.id, "liability", {"amount": amount, "reason": reason, "effect": effect_id})
        return True

    def decide(
        self,
        tx_id: int,
        to_state: str | None,
        *,
        outcome: Outcome | None = None,
        owe: Sequence[tuple[int, str]] = (),
        owe_unconfirmed: bool = False,
        finish_call: tuple[int, str, dict[str, Any]] | None = None,
        receipt: tuple[str, dict[str, Any]] | None = None,
        then: str | None = None,
        settle: Sequence[tuple[int, str]] = (),
        data: dict[str, Any] | None = None,
        **fields: Any,
    ) -> tuple[Tx, int | None]:
        """One decision that moves money, as **one** durable commit: an effect's outcome,
        the liabilities (``owe``: amount and reason; ``owe_unconfirmed``: every stack of
        this transaction whose outcome is ``unknown``, once per note), the end of an outbox
        call (``finish_call``: row id, done|failed, result), the liabilities it pays
        (``settle``: id and note, as a technician's refund), the state change and the receipt
        it calls for (``then``: a second state right after, as paid ⇒ completed when the
        customer has left). A crash leaves all of it or none of it. Returns the transaction
        and the receipt's id."""
        receipt_id: int | None = None
        with self.atomic():
            if outcome is not None:
                self.outcome(
                    outcome.effect_id,
                    outcome.status,
                    outcome=outcome.outcome,
                    credit=outcome.credit,
                    dispensed=outcome.dispensed,
                )
            tx = self.get(tx_id)
            if owe_unconfirmed:
                for eff in self.effects(tx_id, kind="stack", status="unknown"):
                    self._owe(tx, eff.amount or 0, "unconfirmed_note", eff.id)
            for liability_id, note in settle:
                self._settle(liability_id, note)
            for amount, why in owe:
                self._owe(tx, amount, why)
            if finish_call is not None:
                self._finish_call(*finish_call)
            if to_state is not None:
                self.transition(tx_id, to_state, data=data, **fields)
            if then is not None:  # a second step with nothing between (paid ⇒ completed)
                self.transition(tx_id, then)
            if receipt is not None:
                receipt_id = self.queue_receipt(tx_id, *receipt)
        return self.get(tx_id), receipt_id

    def last_event(self, kind: str, *, within: int | None = None) -> dict[str, Any] | None:
        """The latest event of ``kind`` (its data decoded), or None; ``within``: among the last
        that many events only (a bounded look at start-up)."""
        sql, args = "SELECT * FROM events WHERE kind = ?", [kind]
        if within is not None:
            sql += " AND seq > (SELECT COALESCE(MAX(seq), 0) FROM events) - ?"
            args.append(within)  # type: ignore[arg-type]
        for r in self.db.query(sql + " ORDER BY seq DESC LIMIT 1", args):
            return {**r, "data": json.loads(r["data"])}
        return None

    def last_completed(self) -> dict[str, str]:
        """When each provider's last transaction completed (ISO 8601 UTC), by provider."""
        return {
            str(r["provider"]): str(r["at"])
            for r in self.db.query(
                "SELECT provider, MAX(updated_at) AS at FROM transactions"
                " WHERE state = 'completed' GROUP BY provider"
            )
        }

    def cash_since_collection(self) -> tuple[int, dict[int, int]]:
        """The notes stacked (``done``) since the last cash collection, value → count, and the
        last stack effect they include (the next collection counts from there)."""
        tx = self.db.execute(
            "SELECT id FROM transactions WHERE journey = 'cash_collection' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        last = (
            tx
            and self.db.execute(  # through the events' tx index, not a scan of them all
                "SELECT data FROM events WHERE tx_id = ? AND kind = 'cash.collected'", [tx[0]]
            ).fetchone()
        )
        since = int(json.loads(last[0]).get("last_effect", 0)) if last else 0
        rows = self.db.execute(
            "SELECT amount, COUNT(*), MAX(id) FROM effects"
            " WHERE id > ? AND kind = 'stack' AND status = 'done' GROUP BY amount",
            [since],
        ).fetchall()
        notes = {int(amount or 0): int(n) for amount, n, _ in rows}
        return max([since, *(int(r[2]) for r in rows)]), notes

    def liability_totals(self) -> dict[str, tuple[int, int]]:
        """Open liabilities by currency: (how many, their sum in minor units)."""
        return {
            str(code): (int(n), int(total))
            for code, n, total in self.db.execute(
                "SELECT currency, COUNT(*), SUM(amount) FROM liabilities WHERE status = 'open'"
                " GROUP BY currency"
            ).fetchall()
        }

    def moved_between(
        self,
        provider: str,
        journeys: Sequence[str],
        currency: str,
        since: str,
        until: str,
        *,
        besides: int | None = None,
    ) -> int:
        """What ``provider``'s ``journeys`` begun in ``[since, until)`` (journal timestamps)
        moved or may still move, in minor units of ``currency``: each transaction's largest of
        its amount due, credited and dispensed, unless it ended with nothing moved (refused,
        cancelled, void). ``besides``: a transaction left out (the one asking)."""
        if not journeys:
            return 0
        marks = ",".join("?" * len(journeys))  # placeholders only: every value is bound
        sql = (
            "SELECT COALESCE(SUM(MAX(amount_due, credited, dispensed)), 0) FROM transactions"  # noqa: S608
            f" WHERE provider = ? AND journey IN ({marks}) AND currency = ?"
            " AND state NOT IN ('refused', 'cancelled', 'void')"
            " AND created_at >= ? AND created_at < ? AND id != ?"
        )
        args = [provider, *journeys, currency, since, until, -1 if besides is None else besides]
        (total,) = self.db.execute(sql, args).fetchone()
        return int(total)

    def pending_summary(self) -> tuple[int, str | None]:
        """How many transactions are pending at a provider, and the oldest one's last step."""
        n, oldest = self.db.execute(
            "SELECT COUNT(*), MIN(updated_at) FROM transactions WHERE state = 'pending'"
        ).fetchone()
        return int(n), oldest

    def collect_cash(
        self,
        currency: str,
        technician: str,
        render: Callable[[str, dict[int, int]], dict[str, Any]],
        extra: dict[str, Any] | None = None,
    ) -> tuple[Tx, dict[int, int], int | None]:
        """A cash collection as **one** commit: its transaction (``cash_collection``, a
        reference of its own), the count of the notes stacked since the last one (which resets
        the counters), and its receipt (``render(ref, notes)``: the document). Returns the
        transaction, the notes (value → count) and the receipt's id."""
        with self.atomic():
            last_effect, notes = self.cash_since_collection()
            tx = self.begin("cash_collection", currency=currency)
            total = sum(v * n for v, n in notes.items())
            data = {
                "technician": technician,
                "notes": {str(v): n for v, n in sorted(notes.items())},
                "total": total,
                "last_effect": last_effect,
                **(extra or {}),
            }
            self._event(tx.id, "cash.collected", data)
            self.transition(tx.id, "completed")
            receipt_id = self.queue_receipt(tx.id, "collection", render(tx.ref, notes))
        return self.get(tx.id), notes, receipt_id

    def owe_stray(self, amount: int, reason: str, *, journey: str, currency: str) -> Tx:
        """A note credited that no transaction asked for: owed on the latest transaction, or
        on a new ``refused`` one when there is none, in one commit."""
        with self.atomic():
            latest = self.transactions(limit=1)
            if latest:
                tx = latest[0]
            else:
                tx = self.begin(journey, currency=currency)
                tx = self.transition(tx.id, "refused", reason=reason)
            self._owe(tx, amount, reason)
        return self.get(tx.id)

    # --- the outbox -----------------------------------------------------------------------------

    def start_call(self, tx_id: int, to_state: str | None, call: Call) -> tuple[Tx, Effect, int]:
        """The state change, the effect's intent and the outbox row of a money call, in one
        commit, before the request exists. Re-declaring the same key returns what exists."""
        with self.atomic():
            row = self.db.execute(
                "SELECT id FROM outbox WHERE idem_key = ?", [call.idem_key]
            ).fetchone()
            if row is not None:
                eff = self.effect_by_key(call.idem_key)
                assert eff is not None
                return self.get(tx_id), eff, int(row[0])
            if to_state is not None:
                self.transition(tx_id, to_state)
            eff = self.effect_by_key(call.idem_key) or self.intent(
                tx_id, call.kind, call.idem_key, amount=call.amount, request=call.public
            )
            cur = self.db.execute(
                "INSERT INTO outbox (tx_id, op, idem_key, status, sealed, request_time_ms,"
                " void_after_ms, next_at_ms, created_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                [
                    tx_id,
                    call.op,
                    call.idem_key,
                    None if call.request is None else self._seal(call.request, call.idem_key),
                    call.request_time_ms,
                    call.void_after_ms,
                    call.request_time_ms,
                    now_iso(),
                ],
            )
            row_id = int(cur.lastrowid or 0)
            self._event(tx_id, "outbox.queued", {"outbox": row_id, "op": call.op})
        return self.get(tx_id), eff, row_id

    def resolve_call(
        self, row_id: int, outcome: Outcome, then: Call, **fields: Any
    ) -> tuple[Tx, Effect, int]:
        """An outbox call that leads to another (an offline cash-in's order read, then its
        pay): the first one's outcome and end, the transaction's new ``fields`` (amount_due,
        provider_ref) and the next call's row, in one commit."""
        allowed = {"amount_due", "provider_ref"}
        if not set(fields) <= allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)} on a transaction")
        with self.atomic():
            row = self.outbox_row(row_id)
            self.outcome(outcome.effect_id, outcome.status, outcome=outcome.outcome)
            self._finish_call(row_id, "done", outcome.outcome or {})
            sets = ", ".join(f"{k} = ?" for k in ["updated_at", *fields])
            self.db.execute(
                f"UPDATE transactions SET {sets} WHERE id = ?",  # noqa: S608 - keys allow-listed
                [now_iso(), *fields.values(), row["tx_id"]],
            )
            self._event(row["tx_id"], "resolved", dict(fields))
            return self.start_call(row["tx_id"], None, then)

    def call_attempt(
        self, row_id: int, *, delivery: str, error: str, in_doubt: bool, next_at_ms: int
    ) -> dict[str, Any]:
        """One delivery of an outbox call and what came of it (``in_doubt``: the request may
        have been applied and no answer says so yet). Returns the row."""
        with self.atomic():
            row = self.outbox_row(row_id)
            result = dict(row["result"])
            result["in_doubt"] = bool(result.get("in_doubt")) or in_doubt
            self.db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at_ms = ?,"
                " result = ? WHERE id = ?",
                [error or None, next_at_ms, _dumps(result), row_id],
            )
            self._event(
                row["tx_id"],
                "outbox.attempt",
                {"outbox": row_id, "delivery": delivery, "error": error, "in_doubt": in_doubt},
            )
        return self.outbox_row(row_id)

    def mark_in_doubt(self, row_id: int, why: str) -> None:
        """A crash may have cut a delivery short: the request may have been sent."""
        with self.atomic():
            row = self.outbox_row(row_id)
            if row["result"].get("in_doubt"):
                return
            result = {**row["result"], "in_doubt": True}
            self.db.execute("UPDATE outbox SET result = ? WHERE id = ?", [_dumps(result), row_id])
            self._event(row["tx_id"], "outbox.in_doubt", {"outbox": row_id, "why": why})

    def _finish_call(self, row_id: int, status: str, result: dict[str, Any]) -> None:
        if status not in ("done", "failed"):
            raise ValueError(f"bad outbox status {status!r}")
        row = self.outbox_row(row_id)
        if row["status"] != "queued":
            raise ValueError(f"outbox row {row_id} already {row['status']}")
        self.db.execute(
            "UPDATE outbox SET status = ?, sealed = NULL, result = ?, ended_at = ? WHERE id = ?",
            [status, _dumps({**row["result"], **result}), now_iso(), row_id],
        )
        self._event(row["tx_id"], f"outbox.{status}", {"outbox": row_id, **result})

    def outbox_row(self, row_id: int) -> dict[str, Any]:
        rows = list(self.db.query("SELECT * FROM outbox WHERE id = ?", [row_id]))
        if not rows:
            raise KeyError(f"no outbox row {row_id}")
        return {**rows[0], "result": json.loads(rows[0]["result"])}

    def outbox_due(self, now_ms: int, *, limit: int = 100) -> list[dict[str, Any]]:
        """Queued calls whose next attempt is due, oldest first (per transaction in order)."""
        rows = self.db.query(
            "SELECT id FROM outbox WHERE status = 'queued' AND next_at_ms <= ?"
            " ORDER BY next_at_ms, id LIMIT ?",
            [now_ms, limit],
        )
        return [self.outbox_row(r["id"]) for r in list(rows)]

    def next_due_ms(self) -> int | None:
        row = self.db.execute(
            "SELECT MIN(next_at_ms) FROM outbox WHERE status = 'queued'"
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def unseal(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """The request of an outbox row, or None once it was wiped (or never kept)."""
        sealed = row.get("sealed")
        return self._unseal(sealed, row["idem_key"]) if sealed else None

    def _seal(self, request: dict[str, Any], aad: str) -> str:
        import base64
        import os

        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        data = AESGCM(self._seal_key()).encrypt(nonce, _dumps(request).encode(), aad.encode())
        return base64.b64encode(nonce + data).decode()

    def _unseal(self, sealed: str, aad: str) -> dict[str, Any]:
        import base64

        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        raw = base64.b64decode(sealed)
        plain = AESGCM(self._seal_key()).decrypt(raw[:12], raw[12:], aad.encode())
        out: dict[str, Any] = json.loads(plain)
        return out

    def _seal_key(self) -> bytes:
        return hmac.new(self._code_key, b"kiosk outbox seal v1", hashlib.sha256).digest()

    def settle_liability(self, liability_id: int, note: str) -> None:
        with self.atomic():
            self._settle(liability_id, note)

    def _settle(self, liability_id: int, note: str) -> None:
        row = self.db.execute(
            "SELECT tx_id, amount, status FROM liabilities WHERE id = ?", [liability_id]
        ).fetchone()
        if row is None or row[2] != "open":
            raise ValueError(f"no open liability {liability_id}")
        self.db.execute(
            "UPDATE liabilities SET status = 'settled', settled_at = ?, settled_note = ?"
            " WHERE id = ?",
            [now_iso(), note, liability_id],
        )
        self.db.execute("UPDATE transactions SET owed = owed - ? WHERE id = ?", [row[1], row[0]])
        self._event(row[0], "liability.settled", {"liability": liability_id, "note": note})

    def use_code(self, code: str, tx_id: int | None) -> bool:
        """Remember a code by its keyed hash; False if it was used before."""
        digest = self.code_hash(code)
        with self.atomic():
            if self.db.execute("SELECT 1 FROM used_codes WHERE hash = ?", [digest]).fetchone():
                return False
            self.db.execute(
                "INSERT INTO used_codes (hash, tx_id, at) VALUES (?, ?, ?)",
                [digest, tx_id, now_iso()],
            )
        return True

    def code_seen(self, code: str) -> bool:
        digest = self.code_hash(code)
        return (
            self.db.execute("SELECT 1 FROM used_codes WHERE hash = ?", [digest]).fetchone()
            is not None
        )

    def code_hash(self, code: str) -> str:
        return hmac.new(self._code_key, code.encode(), hashlib.sha256).hexdigest()

    def queue_receipt(self, tx_id: int | None, kind: str, document: dict[str, Any]) -> int:
        with self.atomic():
            cur = self.db.execute(
                "INSERT INTO receipts (tx_id, kind, document, created_at) VALUES (?, ?, ?, ?)",
                [tx_id, kind, _dumps(document), now_iso()],
            )
            receipt_id = int(cur.lastrowid or 0)
            self._event(tx_id, "receipt.queued", {"receipt": receipt_id, "kind": kind})
        return receipt_id

    def receipt_printing(self, receipt_id: int) -> None:
        """Committed right before the printer is sent the receipt: after a crash, a receipt
        with an attempt and no result may have come out of the printer."""
        with self.atomic():
            self.db.execute(
                "UPDATE receipts SET attempts = attempts + 1, last_error = NULL WHERE id = ?",
                [receipt_id],
            )
            tx = self.db.execute("SELECT tx_id FROM receipts WHERE id = ?", [receipt_id]).fetchone()
            self._event(tx[0] if tx else None, "receipt.printing", {"receipt": receipt_id})

    def receipt_result(self, receipt_id: int, error: str | None) -> None:
        with self.atomic():
            if error is None:
                self.db.execute(
                    "UPDATE receipts SET status = 'printed', printed_at = ?, last_error = NULL"
                    " WHERE id = ?",
                    [now_iso(), receipt_id],
                )
            else:
                self.db.execute(
                    "UPDATE receipts SET last_error = ? WHERE id = ?", [error, receipt_id]
                )
            tx = self.db.execute("SELECT tx_id FROM receipts WHERE id = ?", [receipt_id]).fetchone()
            self._event(
                tx[0] if tx else None,
                "receipt.printed" if error is None else "receipt.failed",
                {"receipt": receipt_id, "error": error},
            )

    # --- reads ----------------------------------------------------------------------------------

    def get(self, tx_id: int) -> Tx:
        rows = list(self.db.query("SELECT * FROM transactions WHERE id = ?", [tx_id]))
        if not rows:
            raise KeyError(f"no transaction {tx_id}")
        return Tx(**rows[0])

    def find(self, ref: str) -> Tx | None:
        rows = list(self.db.query("SELECT * FROM transactions WHERE ref = ? OR id = ?", [ref, ref]))
        return Tx(**rows[0]) if rows else None

    def transactions(self, *, open_only: bool = False, limit: int = 50) -> list[Tx]:
        where = f"WHERE state NOT IN ({','.join('?' * len(TERMINAL))})" if open_only else ""
        args: list[Any] = sorted(TERMINAL) if open_only else []
        return [
            Tx(**r)
            for r in self.db.query(
                f"SELECT * FROM transactions {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
                [*args, limit],
            )
        ]

    def effect(self, effect_id: int) -> Effect:
        rows = list(self.db.query("SELECT * FROM effects WHERE id = ?", [effect_id]))
        return _effect(rows[0])

    def effect_by_key(self, idem_key: str) -> Effect | None:
        rows = list(self.db.query("SELECT * FROM effects WHERE idem_key = ?", [idem_key]))
        return _effect(rows[0]) if rows else None

    def effects(
        self, tx_id: int, *, kind: str | None = None, status: str | None = None
    ) -> list[Effect]:
        sql, args = "SELECT * FROM effects WHERE tx_id = ?", [tx_id]
        args_: list[Any] = list(args)
        for col, val in (("kind", kind), ("status", status)):
            if val is not None:
                sql += f" AND {col} = ?"
                args_.append(val)
        return [_effect(r) for r in self.db.query(sql + " ORDER BY id", args_)]

    def unconfirmed_stacks(self, statuses: Sequence[str], recent: int) -> list[tuple[int, Effect]]:
        """Stacks in ``statuses`` of the ``recent`` latest transactions, newest first."""
        marks = ",".join("?" * len(statuses))
        rows = self.db.query(
            f"SELECT * FROM effects WHERE kind = 'stack' AND status IN ({marks})"  # noqa: S608
            " AND tx_id > (SELECT COALESCE(MAX(id), 0) - ? FROM transactions)"
            " ORDER BY id DESC",
            [*statuses, recent],
        )
        return [(int(r["tx_id"]), _effect(r)) for r in rows]

    def events(self, tx_id: int | None = None, *, limit: int = 200) -> list[dict[str, Any]]:
        if tx_id is None:
            rows = self.db.query("SELECT * FROM events ORDER BY seq DESC LIMIT ?", [limit])
        else:
            rows = self.db.query("SELECT * FROM events WHERE tx_id = ? ORDER BY seq", [tx_id])
        return [{**r, "data": json.loads(r["data"])} for r in rows]

    def outbox_rows(
        self, tx_id: int | None = None, *, queued_only: bool = False
    ) -> list[dict[str, Any]]:
        """Outbox rows (``sealed`` left out: it is the request, encrypted)."""
        sql, args = (
            "SELECT id, tx_id, op, idem_key, status, request_time_ms, void_after_ms, attempts,"
            " next_at_ms, last_error, result, created_at, ended_at FROM outbox WHERE 1=1",
            [],
        )
        if tx_id is not None:
            sql, args = sql + " AND tx_id = ?", [tx_id]
        if queued_only:
            sql += " AND status = 'queued'"
        return [
            {**r, "result": json.loads(r["result"])}
            for r in self.db.query(sql + " ORDER BY id", args)
        ]

    def liabilities(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        where = "WHERE status = 'open'" if open_only else ""
        return list(self.db.query(f"SELECT * FROM liabilities {where} ORDER BY id"))  # noqa: S608

    def receipts(
        self, tx_id: int | None = None, *, queued_only: bool = False
    ) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM receipts WHERE 1=1", []
        if tx_id is not None:
            sql, args = sql + " AND tx_id = ?", [tx_id]
        if queued_only:
            sql += " AND status = 'queued'"
        return [
            {**r, "document": json.loads(r["document"])}
            for r in self.db.query(sql + " ORDER BY id", args)
        ]


def read_rows(path: Path, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
    """Rows of a journal opened read-only (technicians' tools, benchmarks, the demo), never
    writing, never migrating; [] while it does not exist yet or its tables are not there."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, args))
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


_AS_KIOSK: Final = "run the command as the kiosk's user (sudo -u kiosk) or as root"
_NEEDS_SHM: Final = frozenset({"SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN"})
"""What SQLite says when a read-only WAL reader cannot create the ``-shm`` file."""


def _connect_ro(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection to ``path`` (``mode=ro``, and query_only on top of it)."""
    uri = path.absolute().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0)
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise StorageError(f"journal {path}: cannot open it ({exc}); {_AS_KIOSK}") from exc
    return conn


def _schema_version(conn: sqlite3.Connection) -> int:
    """The highest migration applied; 0 when the file has no ``_migrations`` table."""
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
    ).fetchone():
        return 0
    return int(conn.execute("SELECT MAX(version) FROM _migrations").fetchone()[0] or 0)


def _wal_of(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def chain_hash(prev: str, row: Sequence[Any]) -> str:
    """SHA-256 over the previous hash and the event's columns (seq, tx_id, at, kind,
    from_state, to_state, data as stored), in a canonical JSON array."""
    body = json.dumps([prev, *row], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What :func:`verify_chain` found. ``first_bad`` is the seq of the first event that
    does not hold (changed, out of order, or following a removed one)."""

    ok: bool
    checked: int
    first_bad: int | None = None
    reason: str = ""


def verify_chain(conn: sqlite3.Connection) -> ChainReport:
    """Walk the events in order, recompute every hash and check every link, the sequence
    (a gap is a removed row) and the recorded head (a removed last row)."""
    prev, expected_seq, checked = GENESIS, 1, 0
    cur = conn.execute(
        "SELECT seq, tx_id, at, kind, from_state, to_state, data, prev_hash, hash"
        " FROM events ORDER BY seq"
    )
    for seq, *fields, prev_hash, digest in cur:
        if seq != expected_seq:
            return ChainReport(False, checked, seq, f"events {expected_seq}..{seq - 1} removed")
        if prev_hash != prev:
            return ChainReport(False, checked, seq, "link to the previous event broken")
        if chain_hash(prev, (seq, *fields)) != digest:
            return ChainReport(False, checked, seq, "content changed since it was written")
        prev, expected_seq, checked = digest, seq + 1, checked + 1
    head = conn.execute("SELECT seq, hash FROM journal_head WHERE id = 1").fetchone()
    if checked and (head is None or (head[0], head[1]) != (expected_seq - 1, prev)):
        bad = head[0] if head else expected_seq
        return ChainReport(False, checked, bad, "the last events were removed (head mismatch)")
    return ChainReport(True, checked)


class _Db:
    """The connection, with ``query`` returning dicts (the subset of sqlite-utils' Database
    the journal needs at run time, without its import cost)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, args)

    def query(self, sql: str, args: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        cur = self.conn.execute(sql, args)
        names = [d[0] for d in cur.description or ()]
        for row in cur:
            yield dict(zip(names, row, strict=True))


def _effect(row: dict[str, Any]) -> Effect:
    return Effect(
        **{**row, "request": json.loads(row["request"]), "outcome": json.loads(row["outcome"])}
    )


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    out: list[str] = []
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf.strip())
            buf = ""
    return out


class AsyncJournal:
    """The journal behind one writer thread that the event loop awaits."""

    def __init__(self, journal: Journal, executor: ThreadPoolExecutor) -> None:
        self.sync = journal
        self._executor = executor

    @classmethod
    async def open(cls, path: Path, *, kiosk_id: str, code_key: bytes) -> AsyncJournal:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        loop = asyncio.get_running_loop()
        journal = await loop.run_in_executor(
            executor, lambda: Journal.open(path, kiosk_id=kiosk_id, code_key=code_key)
        )
        return cls(journal, executor)

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` (a method of ``self.sync``) on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def close(self) -> None:
        await self.call(self.sync.close)
        self._executor.shutdown(wait=True)
