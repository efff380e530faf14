import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from kiosk.journal import MIGRATIONS, AsyncJournal, Journal
from tests.conftest import KEY


def test_pragmas_and_migrations_are_recorded(journal: Journal, tmp_path: Path) -> None:
    assert journal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert journal.schema_version == len(MIGRATIONS)
    again = Journal.open(tmp_path / "journal.db", kiosk_id="KT1", code_key=KEY)
    assert again.schema_version == len(MIGRATIONS)
    again.close()


def test_transitions_follow_the_state_machine(journal: Journal) -> None:
    tx = journal.begin("payby_cashin", currency="AED")
    assert (tx.state, tx.ref) == ("resolving", "KT1-000001")
    with pytest.raises(ValueError, match="no transition resolving -> paid"):
        journal.transition(tx.id, "paid")
    tx = journal.transition(tx.id, "accepting", amount_due=15000, provider_ref="1316")
    assert (tx.state, tx.amount_due, tx.provider_ref) == ("accepting", 15000, "1316")
    with pytest.raises(ValueError, match="cannot set"):
        journal.transition(tx.id, "paying", credited=99)
    kinds = [(e["from_state"], e["to_state"]) for e in journal.events(tx.id)]
    assert kinds == [(None, "resolving"), ("resolving", "accepting")]


def test_events_are_append_only(journal: Journal) -> None:
    tx = journal.begin("payby_cashin", currency="AED")
    for sql in ("UPDATE events SET kind = 'x'", "DELETE FROM events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            journal.db.execute(sql)
    assert len(journal.events(tx.id)) == 1


def test_intent_then_outcome_moves_totals_atomically(journal: Journal) -> None:
    tx = journal.transition(
        journal.begin("payby_cashin", currency="AED").id, "accepting", amount_due=15000
    )
    eff = journal.intent(tx.id, "stack", "KT1-000001-note1", amount=10000)
    assert eff.status == "intent" and journal.get(tx.id).credited == 0
    assert journal.intent(tx.id, "stack", "KT1-000001-note1").id == eff.id  # resumable
    journal.outcome(eff.id, "done", credit=10000)
    assert journal.get(tx.id).credited == 10000
    assert [e.status for e in journal.effects(tx.id)] == ["done"]
    with pytest.raises(ValueError):
        journal.outcome(eff.id, "maybe")


def test_a_failed_atomic_block_leaves_nothing(journal: Journal) -> None:
    tx = journal.begin("payby_cashin", currency="AED")
    with pytest.raises(RuntimeError), journal.atomic():
        journal.owe(tx.id, 500, "test")
        raise RuntimeError("power cut")
    assert journal.liabilities() == [] and journal.get(tx.id).owed == 0


def test_liabilities_open_and_settle(journal: Journal) -> None:
    tx = journal.begin("payby_cashin", currency="AED")
    journal.owe(tx.id, 5000, "ended_by_cancel")
    (row,) = journal.liabilities()
    assert (row["amount"], row["currency"], row["status"]) == (5000, "AED", "open")
    journal.settle_liability(row["id"], "refunded in cash by tech 7")
    assert journal.liabilities() == [] and journal.get(tx.id).owed == 0
    with pytest.raises(ValueError):
        journal.settle_liability(row["id"], "twice")


def test_codes_are_kept_only_as_keyed_hashes(journal: Journal, tmp_path: Path) -> None:
    code = "https://checkout.sandbox.payby.test/pay-page/main?ft=SECRET-TOKEN-123"
    tx = journal.begin("payby_cashin", currency="AED", code_hash=journal.code_hash(code))
    assert journal.use_code(code, tx.id) and not journal.use_code(code, tx.id)
    assert journal.code_seen(code)
    journal.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("journal.db*"))
    assert b"SECRET-TOKEN-123" not in raw


def test_async_journal_runs_on_one_writer_thread(tmp_path: Path) -> None:
    async def main() -> set[str]:
        j = await AsyncJournal.open(tmp_path / "j.db", kiosk_id="KT1", code_key=KEY)
        names: set[str] = set()

        def begin() -> None:
            names.add(threading.current_thread().name)
            j.sync.begin("payby_cashin", currency="AED")

        await asyncio.gather(*(j.call(begin) for _ in range(20)))
        assert len(await j.call(j.sync.transactions)) == 20
        await j.close()
        return names

    names = asyncio.run(main())
    assert len(names) == 1 and next(iter(names)).startswith("journal")
