"""Signed commands from the fleet: verified, replay-checked, persisted, journaled."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.errors import KioskError
from kiosk.fleet.commands import CommandGate, handle, load_public_key, signing_bytes
from kiosk.fleet.heartbeat import iso
from kiosk.journal import AsyncJournal
from tests.conftest import KEY

NOW = 1_738_324_800.0
FLEET = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


def signed(key: Ed25519PrivateKey = FLEET, **over: Any) -> dict[str, Any]:
    cmd: dict[str, Any] = {
        "seq": 17,
        "kiosk": "KSK-0001",
        "cmd": "out_of_service",
        "args": {"reason": "cash collection at 14:00"},
        "issued_at": iso(NOW - 60),
    }
    cmd.update(over)
    cmd = {k: v for k, v in cmd.items() if v is not None}
    return {**cmd, "sig": base64.b64encode(key.sign(signing_bytes(cmd))).decode()}


def gate(tmp_path: Path, key: Any = None, **kw: Any) -> CommandGate:
    return CommandGate(
        FLEET.public_key() if key is None else key,
        "KSK-0001",
        tmp_path / "fleet-commands.json",
        clock=lambda: NOW,
        **kw,
    )


def test_a_valid_command_is_accepted_and_its_seq_survives(tmp_path: Path) -> None:
    g = gate(tmp_path)
    assert g.accept(signed()) == (True, "accepted")
    assert g.last_seq == 17
    assert json.loads((tmp_path / "fleet-commands.json").read_text()) == {"last_seq": 17}
    assert [p.name for p in tmp_path.iterdir()] == ["fleet-commands.json"]  # no temp left
    again = gate(tmp_path)  # after a restart
    assert again.last_seq == 17
    ok, why = again.accept(signed())
    assert not ok and why.startswith("replayed: seq 17")
    assert again.accept(signed(seq=16, cmd="in_service", args={}))[0] is False
    assert again.accept(signed(seq=18, cmd="in_service", args={})) == (True, "accepted")


APPROVE = {"ref": "KSK-0001-000017", "amount": {"currency": "AED", "minor": 150000}}


@pytest.mark.parametrize(
    "over",
    [
        {"cmd": "in_service", "args": None},  # args left out: {}
        {"cmd": "reprint", "args": {"ref": "KSK-0001-000017"}},
        {"cmd": "restart", "args": {}},
        {"cmd": "restart", "args": {"reason": "update"}},
        {"cmd": "approve", "args": APPROVE},
        {"issued_at": iso(NOW + 240)},  # a fleet clock a little ahead
        {"issued_at": iso(NOW - 23 * 3600)},
        {"issued_at": "2025-01-31T15:59:00+04:00"},
    ],
)
def test_what_is_accepted(tmp_path: Path, over: dict[str, Any]) -> None:
    assert gate(tmp_path).accept(signed(**over)) == (True, "accepted")


def _forged() -> dict[str, Any]:
    cmd = signed()
    cmd["sig"] = base64.b64encode(bytes(64)).decode()
    return cmd


def _tampered() -> dict[str, Any]:
    cmd = signed()
    cmd["args"] = {"reason": "something else"}
    return cmd


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (_forged(), "bad signature"),
        (_tampered(), "bad signature"),
        (signed(OTHER), "bad signature"),
        ({**signed(), "sig": "not base64!"}, "bad signature"),
        ({k: v for k, v in signed().items() if k != "sig"}, "no signature"),
        (signed(kiosk="KSK-0002"), "for kiosk 'KSK-0002', not this one (KSK-0001)"),
        (signed(cmd="format_disk"), "unknown command 'format_disk'"),
        (signed(issued_at=iso(NOW - 24 * 3600 - 1)), "too old: issued 24.0 h ago"),
        (signed(issued_at=iso(NOW + 6 * 60)), "issued 6.0 min in the future"),
        (signed(issued_at="2025-01-31T12:00:00"), "malformed: issued_at"),
        (signed(issued_at="soon"), "malformed: issued_at"),
        (signed(seq=0), "malformed: seq"),
        (signed(seq="18"), "malformed: seq"),
        (signed(seq=True), "malformed: seq"),
        (signed(args={}), "malformed args for out_of_service: reason: required"),
        (signed(args={"reason": ""}), "malformed args for out_of_service: reason"),
        (signed(args=["x"]), "malformed: args must be an object"),
        (signed(cmd="in_service", args={"now": True}), "unexpected args now"),
        (signed(cmd="reprint", args={"ref": "../etc"}), "ref: expected"),
        (
            signed(cmd="approve", args={"ref": "K-1", "amount": {"currency": "AED", "minor": 1.5}}),
            "amount: expected",
        ),
        (signed(cmd="approve", args={"ref": "K-1"}), "amount: expected"),
        (signed(extra="x"), "malformed: unexpected fields extra"),
        ("a string", "not a JSON object"),
    ],
)
def test_what_is_refused_and_why(tmp_path: Path, cmd: Any, reason: str) -> None:
    g = gate(tmp_path)
    ok, why = g.accept(cmd)
    assert not ok
    assert reason in why
    assert g.last_seq == 0 and not (tmp_path / "fleet-commands.json").exists()


def test_no_key_refuses_everything(tmp_path: Path) -> None:
    g = CommandGate(None, "KSK-0001", tmp_path / "s.json", clock=lambda: NOW)
    assert g.accept(signed()) == (False, "no fleet public key configured (fleet.public_key_file)")


def test_a_lost_state_file_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "fleet-commands.json").write_text("{garbage")
    ok, why = gate(tmp_path).accept(signed())
    assert not ok and "command state lost" in why and "restore it" in why


def test_a_seq_that_cannot_be_recorded_is_refused(tmp_path: Path) -> None:
    g = CommandGate(FLEET.public_key(), "KSK-0001", tmp_path / "gone" / "s.json", clock=lambda: NOW)
    ok, why = g.accept(signed())
    assert not ok and why.startswith("cannot record seq 17") and g.last_seq == 0


def test_load_public_key(tmp_path: Path) -> None:
    pub = FLEET.public_key()
    pem = tmp_path / "fleet.pem"
    pem.write_bytes(
        pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    raw = tmp_path / "fleet.b64"
    raw.write_text(
        base64.b64encode(
            pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ).decode()
        + "\n"
    )
    for path in (pem, raw):
        g = CommandGate(load_public_key(path), "KSK-0001", tmp_path / f"{path.name}.s")
        assert g.accept(signed(issued_at=iso(time.time()))) == (True, "accepted")

    private = tmp_path / "private.pem"
    private.write_bytes(
        FLEET.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    garbage = tmp_path / "garbage"
    garbage.write_text("hello")
    for bad, what in (
        (tmp_path / "missing.pem", "cannot read"),
        (private, "not an Ed25519"),
        (garbage, "not an Ed25519"),
    ):
        with pytest.raises(KioskError, match=what) as info:
            load_public_key(bad)
        assert str(bad) in str(info.value)


def test_handle_journals_each_and_runs_the_accepted(tmp_path: Path) -> None:
    ran: list[dict[str, Any]] = []

    async def run(cmd: dict[str, Any]) -> str:
        ran.append(cmd)
        if cmd["cmd"] == "reprint":
            raise ValueError("no transaction KSK-0001-000099")
        return f"done: {cmd['cmd']}"

    commands = [
        signed(seq=21, cmd="reprint", args={"ref": "KSK-0001-000099"}),
        signed(seq=20, cmd="in_service", args={}),  # out of order: handled first
        signed(seq=20, cmd="in_service", args={}),  # replayed in the same batch
        signed(OTHER, seq=30),
        signed(seq=22, kiosk="KSK-0009"),
    ]

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        j = await AsyncJournal.open(tmp_path / "journal.db", kiosk_id="KSK-0001", code_key=KEY)
        try:
            out = await handle(commands, gate(tmp_path), run, j)
            events = await j.call(j.sync.events)
        finally:
            await j.close()
        return out, events

    out, events = asyncio.run(main())
    assert [c["seq"] for c in ran] == [20, 21]
    assert [(e["seq"], e["accepted"], e.get("ok")) for e in out] == [
        (20, True, True),
        (20, False, None),
        (21, True, False),
        (22, False, None),
        (30, False, None),
    ]
    fleet_events = [
        (e["kind"], e["data"]) for e in reversed(events) if e["kind"].startswith("fleet.")
    ]
    assert fleet_events == [
        (
            "fleet.command",
            {"seq": 20, "cmd": "in_service", "accepted": True, "reason": "accepted", "args": {}},
        ),
        (
            "fleet.command.result",
            {"seq": 20, "cmd": "in_service", "ok": True, "result": "done: in_service"},
        ),
        (
            "fleet.command",
            {
                "seq": 20,
                "cmd": "in_service",
                "accepted": False,
                "reason": fleet_events[2][1]["reason"],
            },
        ),
        (
            "fleet.command",
            {
                "seq": 21,
                "cmd": "reprint",
                "accepted": True,
                "reason": "accepted",
                "args": {"ref": "KSK-0001-000099"},
            },
        ),
        (
            "fleet.command.result",
            {
                "seq": 21,
                "cmd": "reprint",
                "ok": False,
                "result": "failed: ValueError: no transaction KSK-0001-000099",
            },
        ),
        (
            "fleet.command",
            {
                "seq": 22,
                "cmd": "out_of_service",
                "accepted": False,
                "reason": fleet_events[5][1]["reason"],
            },
        ),
        (
            "fleet.command",
            {
                "seq": 30,
                "cmd": "out_of_service",
                "accepted": False,
                "reason": fleet_events[6][1]["reason"],
            },
        ),
    ]
    assert fleet_events[2][1]["reason"].startswith("replayed")
    assert fleet_events[5][1]["reason"].startswith("for kiosk 'KSK-0009'")
    assert fleet_events[6][1]["reason"].startswith("bad signature")
    for event in events:  # the signatures never reach the journal
        assert "sig" not in event["data"]
        assert all(c["sig"] not in json.dumps(event["data"]) for c in commands)
