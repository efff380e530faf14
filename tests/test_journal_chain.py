"""The events are hash-chained: a row changed, removed or added out of order is found, and
`kiosk journal verify` names the first bad one."""

from __future__ import annotations

from pathlib import Path

import pytest

import kiosk.journal as journal_mod
from kiosk.journal import Call, Journal, verify_chain
from tests.conftest import KEY


def _some_events(j: Journal) -> None:
    for _ in range(3):
        tx = j.begin("payby_cashin", currency="AED")
        j.transition(tx.id, "accepting", amount_due=15000)
        j.log("door.open")


def _tamper(j: Journal, sql: str, args: list[object]) -> None:
    """What someone with the SD card and sqlite3 could do: lift the triggers, write."""
    j.db.execute("DROP TRIGGER events_no_update")
    j.db.execute("DROP TRIGGER events_no_delete")
    j.db.execute(sql, args)


def test_an_untouched_journal_verifies(journal: Journal) -> None:
    _some_events(journal)
    report = verify_chain(journal.db.conn)
    assert report.ok and report.checked == 9


def test_a_changed_event_is_named(journal: Journal) -> None:
    _some_events(journal)
    _tamper(journal, "UPDATE events SET data = '{\"amount\":1}' WHERE seq = ?", [4])
    report = verify_chain(journal.db.conn)
    assert (report.ok, report.first_bad, report.checked) == (False, 4, 3)
    assert "changed" in report.reason


def test_a_removed_event_is_named(journal: Journal) -> None:
    _some_events(journal)
    _tamper(journal, "DELETE FROM events WHERE seq = ?", [5])
    report = verify_chain(journal.db.conn)
    assert (report.ok, report.first_bad) == (False, 6)
    assert "removed" in report.reason


def test_removing_the_last_events_is_found_by_the_head(journal: Journal) -> None:
    _some_events(journal)
    _tamper(journal, "DELETE FROM events WHERE seq >= ?", [8])
    report = verify_chain(journal.db.conn)
    assert not report.ok and "last events were removed" in report.reason


def test_a_journal_from_before_the_chain_is_chained_by_its_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.db"
    with monkeypatch.context() as m:
        m.setattr(journal_mod, "MIGRATIONS", journal_mod.MIGRATIONS[:1])
        old = Journal.open(path, kiosk_id="KT1", code_key=KEY)
        old.db.execute(
            "INSERT INTO transactions (ref, journey, provider, state, currency, created_at,"
            " updated_at) VALUES ('KT1-000001', 'payby_cashin', 'payby', 'resolving', 'AED',"
            " 'x', 'x')"
        )
        old.db.execute("INSERT INTO events (tx_id, at, kind) VALUES (1, 'x', 'begin')")
        old.close()
    j = Journal.open(path, kiosk_id="KT1", code_key=KEY)
    j.log("door.open")
    report = verify_chain(j.db.conn)
    assert report.ok and report.checked == 2
    j.close()


def test_outbox_requests_are_sealed_never_in_the_clear(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal.open(path, kiosk_id="KT1", code_key=KEY)
    tx = j.begin("payby_cashin", currency="AED")
    tx = j.transition(tx.id, "accepting", amount_due=100)
    token = "https://checkout.payby.com/pay?t=SECRET-TOKEN-123"
    call = Call(
        op="payby.pay",
        kind="pay",
        idem_key="KT1-000001-pay",
        amount=100,
        request={"token_url": token},
        public={"order_no": "1"},
        request_time_ms=1,
        void_after_ms=2,
    )
    _, _, row_id = j.start_call(tx.id, "paying", call)
    j.close()
    on_disk = b"".join(f.read_bytes() for f in tmp_path.glob("journal.db*"))
    assert b"SECRET-TOKEN-123" not in on_disk
    again = Journal.open(path, kiosk_id="KT1", code_key=KEY)
    assert again.unseal(again.outbox_row(row_id)) == {"token_url": token}
    with pytest.raises(Exception):  # noqa: B017 - another kiosk's key cannot open it
        Journal.open(path, kiosk_id="KT1", code_key=b"x" * 32).unseal(again.outbox_row(row_id))
    again.close()


def test_kiosk_journal_verify_exits_1_naming_the_event(config_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from kiosk import config
    from kiosk.cli import main

    cfg = config.load(config_file)
    j = Journal.open(cfg.journal_path, kiosk_id=cfg.kiosk_id, code_key=KEY)
    _some_events(j)
    assert main(["journal", "verify", "--config", str(config_file)]) == 0
    assert "intact: 9 events" in capsys.readouterr().out
    _tamper(j, "UPDATE events SET kind = 'x' WHERE seq = 2", [])
    j.close()
    assert main(["journal", "verify", "--config", str(config_file)]) == 1
    assert "BROKEN at event 2" in capsys.readouterr().err
    assert main(["journal", "--json", "--config", str(config_file)]) == 0
    assert '"ref": "KT1-000001"' in capsys.readouterr().out
