"""The control channel end to end over a real Unix socket."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import segno

from drivers.errors import CommandRefused, DeviceFault, PortError
from drivers.panel import PanelEvent, PanelState
from drivers.printer.base import Document, Line
from drivers.sim import SimControl, SimRig, serve_control
from drivers.validator.base import Fault, FaultCleared, FaultKind, Note, NoteEscrowed, NoteRejected


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SimRig]:
    rig = SimRig.build(tmp_path / "rig", poll_interval=0.01, hold=0.5)
    yield rig
    rig.close()


def with_server(rig: SimRig, sock: Path, body: Callable[[SimControl], Awaitable[object]]) -> None:
    """Open the rig's devices, serve the control channel, run ``body``, shut down."""

    async def main() -> None:
        await rig.validator.open()
        await rig.validator.enable()
        await rig.printer.open()
        await rig.reader.open()
        await rig.panel.open()
        server = await serve_control(rig, sock)
        try:
            await body(SimControl(sock, timeout=2))
        finally:
            server.close()
            await server.wait_closed()
            await rig.validator.close()

    asyncio.run(main())


def test_customer_and_technician(rig: SimRig, tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    code = tmp_path / "code.png"
    segno.make_qr("EVP1234567890").save(str(code), scale=5)

    async def body(ctl: SimControl) -> None:
        call = asyncio.to_thread

        # the customer shows a code: the camera sees it
        reply = await call(ctl.show, code)
        assert Path(reply["frame"]).parent == rig.replay_dir
        assert await asyncio.wait_for(rig.reader.next_code(), 2) == "EVP1234567890"

        # inserts a note, the kiosk stacks it
        reply = await call(ctl.insert, 10000)
        assert reply["event"] == {
            "type": "NoteEscrowed",
            "note": {"channel": 5, "value": 10000, "currency": "EUR"},
        }
        assert await rig.validator.next_event() == NoteEscrowed(Note(5, 10000, "EUR"))
        credited: list[Note] = []

        async def on_credit(note: Note) -> None:
            credited.append(note)

        await rig.validator.stack(on_credit)
        reply = await call(ctl.insert_fake)
        assert reply["event"] == {"type": "NoteRejected", "reason": "fake"}
        assert await rig.validator.next_event() == NoteRejected("fake")

        # presses confirm, then cancel
        await call(ctl.press, "confirm")
        assert await asyncio.wait_for(rig.panel.next_event(), 1) is PanelEvent.CONFIRM
        await call(ctl.press, "cancel", 0.01)
        assert await asyncio.wait_for(rig.panel.next_event(), 1) is PanelEvent.CANCEL
        await call(ctl.press, "service_key")  # the technician's key (approvals)
        assert await asyncio.wait_for(rig.panel.next_event(), 1) is PanelEvent.SERVICE_KEY

        # the technician: a jam, cleared; the door; paper out
        reply = await call(ctl.fault, "jam")
        assert reply["event"]["kind"] == "jam"
        assert await rig.validator.next_event() == Fault(FaultKind.JAM)
        await call(ctl.clear_fault)
        assert await rig.validator.next_event() == FaultCleared()
        assert (await call(ctl.door, True))["door_open"] is True
        assert await asyncio.wait_for(rig.panel.next_event(), 1) is PanelEvent.DOOR_OPEN
        await call(ctl.door, False)
        assert await asyncio.wait_for(rig.panel.next_event(), 1) is PanelEvent.DOOR_CLOSED
        await call(ctl.paper, "out")
        with pytest.raises(DeviceFault):
            await rig.printer.print(Document("r1", (Line("x"),)))
        await call(ctl.paper, "ok")
        await call(ctl.cover, True)
        assert not (await rig.printer.status()).ready
        await call(ctl.cover, False)
        await call(ctl.online, False)
        assert not (await rig.printer.status()).online
        await call(ctl.online, True)
        await rig.printer.print(Document("r1", (Line("x"),)))

        rig.panel.show(PanelState.INSERT_NOTES)
        state = await call(ctl.state)
        assert state["ok"] is True
        assert state["validator"]["cashbox"] == {"10000": 1}
        assert state["validator"]["escrow"] is None
        assert state["printer"]["printed"] == ["r1"] and state["printer"]["ready"]
        assert state["panel"]["state"] == "insert_notes"
        assert state["panel"]["lights"]["amber"] == "on"
        assert state["panel"]["outputs"] == {
            "green": False,
            "amber": True,
            "red": False,
            "buzzer": False,
        }
        assert state["panel"]["door_open"] is False
        assert (await call(ctl.empty_cashbox))["cashbox"] == {"10000": 1}
        assert credited == [Note(5, 10000, "EUR")]

        # the same code again right away is the same scan; after a blank frame it is new
        await call(ctl.show, code)
        await call(ctl.hide)
        await call(ctl.show, code)
        assert await asyncio.wait_for(rig.reader.next_code(), 2) == "EVP1234567890"

    with_server(rig, sock, body)


def test_bad_requests_get_error_replies(rig: SimRig, tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"

    def raw(lines: list[bytes]) -> list[dict[str, Any]]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"".join(lines))
            f = s.makefile("rb")
            return [json.loads(f.readline()) for _ in lines]

    async def body(ctl: SimControl) -> None:
        replies = await asyncio.to_thread(
            raw,
            [
                b"this is not json\n",
                b"[1, 2]\n",
                b'{"cmd": "dance"}\n',
                b'{"cmd": "insert"}\n',
                b'{"cmd": "insert", "value": "100"}\n',
                b'{"cmd": "insert", "value": true}\n',
                b'{"cmd": "fault", "kind": "gremlins"}\n',
                b'{"cmd": "press", "button": "panic"}\n',
                b'{"cmd": "show", "path": "relative.png"}\n',
                b'{"cmd": "show", "path": "/nonexistent/x.png"}\n',
                b'{"cmd": "paper", "state": "soggy"}\n',
                b'{"cmd": "ping"}\n',
            ],
        )
        assert [r["ok"] for r in replies] == [False] * 11 + [True]
        assert "unknown cmd" in replies[2]["error"]
        assert "jam" in replies[6]["error"]
        assert "absolute" in replies[8]["error"]
        # the server survived, and a too-long line only drops that connection
        too_long = await asyncio.to_thread(raw, [b"x" * 70000 + b"\n"])
        assert too_long == [{"ok": False, "error": "line too long"}]
        with pytest.raises(CommandRefused, match="unknown cmd"):
            await asyncio.to_thread(ctl.call, "dance")
        assert (await asyncio.to_thread(ctl.call, "dance", check=False))["ok"] is False
        assert (await asyncio.to_thread(ctl.state))["ok"]

    with_server(rig, sock, body)


def test_client_from_another_process(rig: SimRig, tmp_path: Path) -> None:
    sock = tmp_path / "ctl.sock"
    script = (
        "import json, sys\n"
        "from drivers.sim import SimControl\n"
        "ctl = SimControl(sys.argv[1])\n"
        "ctl.wait_ready()\n"
        "print(json.dumps([ctl.insert(2000), ctl.state()['validator']['escrow']]))\n"
    )

    async def body(ctl: SimControl) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(sock), stdout=subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0
        reply, escrow = json.loads(out)
        assert reply["event"]["type"] == "NoteEscrowed"
        assert escrow == {"channel": 3, "value": 2000, "currency": "EUR"}

    with_server(rig, sock, body)


def test_client_errors_when_no_server(tmp_path: Path) -> None:
    ctl = SimControl(tmp_path / "none.sock", timeout=0.2)
    with pytest.raises(PortError, match="simulator running"):
        ctl.state()
    with pytest.raises(PortError):
        ctl.wait_ready(timeout=0.1)


def test_stale_socket_is_replaced_but_not_a_regular_file(rig: SimRig, tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    with_server(rig, stale, lambda ctl: asyncio.to_thread(ctl.ping))

    not_a_socket = tmp_path / "file.sock"
    not_a_socket.write_text("keep me")
    with pytest.raises(PortError, match="not a socket"):
        with_server(rig, not_a_socket, lambda ctl: asyncio.sleep(0))
    assert not_a_socket.read_text() == "keep me"


def test_rig_keeps_validator_memory_across_builds(tmp_path: Path) -> None:
    first = SimRig.build(tmp_path)
    try:

        async def crash() -> None:
            await first.validator.open()
            await first.validator.enable()
            first.validator.insert(5000)

        asyncio.run(crash())
    finally:
        first.close()
    second = SimRig.build(tmp_path)
    try:
        report = asyncio.run(second.validator.open())
        assert report.in_escrow == Note(4, 5000, "EUR")
        assert not second.panel.door_open
    finally:
        second.close()
