"""kiosk sim fleet: simulated kiosks pushing to a loopback fleet and Pushgateway; their walk,
fast-forwarded without a network."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from kiosk.fleet import heartbeat
from kiosk.fleet.metrics import reason_slug
from kiosk.fleet.push import verify
from kiosk.fleet.sim import (
    DOOR_OPEN,
    FAULT_WORDS,
    JOURNEYS,
    PAPER_OUT,
    SERVICE_WAIT,
    Fault,
    SimFleetError,
    SimKiosk,
    Summary,
    World,
    add_sim_parser,
    cmd_sim_fleet,
    no_provider,
    run_fleet,
)

SCHEMA = Draft202012Validator(json.loads(heartbeat.SCHEMA_PATH.read_text()))
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Loopback:
    """A tiny HTTP/1.1 server on loopback (keep-alive): records each request, answers 200 {};
    ``stop`` closes it and every connection, ``start`` again opens the same port."""

    requests: list[Request] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = first.split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Request(method, path, headers, body, time.time()))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.handlers.discard(task)
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            writer.close()
        for task in list(self.handlers):  # Python 3.11 has no Server.close_clients()
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)


def run(coro: Any, timeout_s: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def keys(path: Path) -> dict[str, str]:
    doc = json.loads(path.read_text())
    assert doc["schema"] == "kiosk.sim-fleet-keys/1"
    return {k["device_id"]: k["public_key"] for k in doc["kiosks"]}


def check_heartbeat(req: Request, public: dict[str, str]) -> dict[str, Any]:
    """A heartbeat as the fleet gets it: valid, canonical, signed by its kiosk's key."""
    assert (req.method, req.path) == ("POST", "/heartbeat")
    doc: dict[str, Any] = json.loads(req.body)
    errors = [e.message for e in SCHEMA.iter_errors(doc)]
    assert not errors, errors
    assert heartbeat.canonical(doc) == req.body
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-kiosk-device"] == doc["device_id"]
    assert verify(req.body, req.headers["x-kiosk-signature"], public[doc["device_id"]])
    return doc


def test_fifty_kiosks_push_signed_valid_heartbeats_and_metrics(tmp_path: Path) -> None:
    fleet, gateway, lines = Loopback(), Loopback(), []

    async def main() -> Summary:
        await fleet.start()
        await gateway.start()
        try:
            return await run_fleet(
                50,
                url=f"{fleet.url}/heartbeat",
                pushgateway=gateway.url,
                interval_s=1,
                duration_s=2.7,
                seed=5,
                keys_file=tmp_path / "keys.json",
                report=lines.append,
            )
        finally:
            await fleet.stop()
            await gateway.stop()

    summary = run(main())
    public = keys(tmp_path / "keys.json")
    ids = {f"SIM-{i:05d}" for i in range(1, 51)}
    assert len(public) == 50

    seqs: dict[str, list[int]] = defaultdict(list)
    for req in fleet.requests:
        doc = check_heartbeat(req, public)
        seqs[doc["kiosk_id"]].append(doc["seq"])
        sent_at = datetime.fromisoformat(doc["sent_at"].replace("Z", "+00:00")).timestamp()
        assert abs(sent_at - req.at) < 2  # fleet time runs with the wall clock
    assert set(seqs) == ids
    assert all(s == list(range(1, len(s) + 1)) and len(s) >= 2 for s in seqs.values())
    # each heartbeat the fleet got was counted sent, or failed when its answer came after the
    # kiosk's timeout (half the interval: on a loaded machine a few do)
    assert summary.sent <= len(fleet.requests) <= summary.sent + summary.failed
    assert len(fleet.requests) >= 100 and summary.dry_run is False

    paths = {r.path for r in gateway.requests}
    assert paths == {f"/metrics/job/kiosk/kiosk/{k}" for k in ids}
    for r in gateway.requests:
        assert r.method == "PUT" and r.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
        (info,) = families["kiosk_info"].samples
        assert r.path.endswith(info.labels["kiosk"])
        assert {"kiosk_in_service", "kiosk_device_up", "kiosk_cashbox_notes"} <= set(families)
    assert summary.pushes <= len(gateway.requests) <= summary.pushes + summary.push_failed

    assert lines[0].startswith("kiosk sim fleet: 50 kiosks every 1 s, seed 5; heartbeats to ")
    assert any(line.startswith("+1s 50 kiosks; heartbeats ") for line in lines[1:-1])
    assert lines[-1].startswith("summary: 50 kiosks") and "ms per heartbeat" in lines[-1]


def test_the_fleet_down_then_up_counts_failures_and_resumes() -> None:
    fleet, gateway, lines = Loopback(), Loopback(), []

    async def main() -> tuple[Summary, int]:
        await fleet.start()
        await gateway.start()
        try:
            task = asyncio.create_task(
                run_fleet(
                    10,
                    url=f"{fleet.url}/heartbeat",
                    pushgateway=gateway.url,
                    interval_s=1,
                    duration_s=4.3,
                    seed=2,
                    report=lines.append,
                )
            )
            await asyncio.sleep(1.05)  # every kiosk ticks once or twice while they are down
            await fleet.stop()
            await gateway.stop()
            before = len(fleet.requests)
            await asyncio.sleep(1.45)
            await fleet.start()  # the same ports
            await gateway.start()
            return await task, before
        finally:
            await fleet.stop()
            await gateway.stop()

    summary, before = run(main())
    assert summary.failed >= 10 and summary.push_failed >= 10
    assert summary.sent <= len(fleet.requests) <= summary.sent + summary.failed  # see above
    assert summary.pushes <= len(gateway.requests) <= summary.pushes + summary.push_failed
    after = [json.loads(r.body) for r in fleet.requests[before:]]
    first_back: dict[str, dict[str, Any]] = {}
    for doc in after:
        first_back.setdefault(doc["kiosk_id"], doc)
    assert len(first_back) == 10  # every kiosk resumed
    assert all(doc["missed"] >= 1 for doc in first_back.values())  # and says what it missed
    assert any(", 0 failed" not in line for line in lines[1:-1])
    assert any(" sent, 0 failed" in line for line in lines[-3:-1])  # the last intervals are fine


def test_a_dry_run_checks_what_it_would_send(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = run(
        run_fleet(
            20,
            url=None,
            pushgateway=None,
            interval_s=1,
            duration_s=1.2,
            seed=9,
            report=lines.append,
        )
    )
    assert summary.dry_run and summary.sent == summary.failed == summary.pushes == 0
    assert summary.checked == summary.built >= 20 and summary.invalid == 0
    assert summary.bytes > 1000 * summary.checked  # about 1.5 KiB each
    assert "dry run" in lines[0] and "built and checked (dry run)" in lines[1]
    assert summary.cpu_ms_per_heartbeat > 0 and summary.skipped == 0
    assert "behind" not in lines[-1]
    summary.skipped = 7
    assert "behind: 7 ticks skipped, the simulator could not keep up" in summary.text()


def walk(seed: int, index: int, steps: int, dt: float = 60.0) -> list[Any]:
    k = SimKiosk(index, seed, world=World(seed), epoch=1_750_000_000.0)
    out: list[Any] = [k.view()]
    for _ in range(steps):
        activity = k.step(dt)
        out.append((k.view(), k.faults(), k.silent, k.boots, activity))
    return out


def test_the_walk_is_reproducible_from_the_seed() -> None:
    a, b = walk(3, 7, 400), walk(3, 7, 400)
    assert a == b
    assert walk(4, 7, 400) != a and walk(3, 8, 400) != a
    assert sum(x[0] != y[0] for x, y in itertools.pairwise(a[1:])) > 300  # it does move
    one, two = SimKiosk(7, 3, epoch=0), SimKiosk(7, 3, epoch=0)
    assert one.device_id == two.device_id and one.kiosk_id == "SIM-00007"
    assert one.identity.public_b64 != two.identity.public_b64  # a fresh key each time
    # a long step is walked in parts: the same as the parts one by one
    k1, k2 = SimKiosk(2, 1, epoch=0), SimKiosk(2, 1, epoch=0)
    k1.step(600)
    for _ in range(10):
        k2.step(60)
    assert k1.view() == k2.view()


def test_over_days_every_fault_comes_and_goes() -> None:
    """Eight kiosks for eight days, one minute a step: every kind of fault occurs and clears,
    in the daemon's words; the cash, the outbox and the pending rise and fall."""
    world = World(11)
    came: set[Fault] = set()
    went: set[Fault] = set()
    reasons: set[str] = set()
    states: set[str] = set()
    rose_fell: dict[str, list[bool]] = defaultdict(lambda: [False, False])
    for index in range(1, 9):
        k = SimKiosk(index, 11, world=world, epoch=1_750_000_000.0)
        before, last = k.faults(), k.view()
        for n in range(8 * 1440):
            k.step(60.0)
            now = k.faults()
            came |= now - before
            went |= before - now
            before = now
            if now:
                reasons.update(k.reasons())
            if n % 7:
                continue
            view = k.view()
            states.add(view.state)
            for name, old, new in (
                ("cashbox", last.cashbox_notes, view.cashbox_notes),
                ("outbox", last.outbox_depth, view.outbox_depth),
                ("pending", last.pending, view.pending),
                ("liabilities", last.liabilities_count, view.liabilities_count),
                ("recycler", _recycler(last), _recycler(view)),
            ):
                rose_fell[name][0] |= new > old
                rose_fell[name][1] |= new < old
            if n % 97 == 0:  # a sample of odd states, through the schema
                doc = heartbeat.build(view, n + 1, 0)
                assert not list(SCHEMA.iter_errors(doc)), view
            last = view
    assert came == set(Fault), set(Fault) - came
    assert went == set(Fault), set(Fault) - went
    words = {DOOR_OPEN, SERVICE_WAIT, PAPER_OUT, *FAULT_WORDS.values()}
    assert words <= reasons, words - reasons
    assert any(r.startswith("no payment provider answers (") for r in reasons)
    assert states == {"in_service", "busy", "out_of_service"}
    assert all(up and down for up, down in rose_fell.values()), dict(rose_fell)


def _recycler(view: Any) -> int:
    return sum(int(d.detail["value"]) for d in view.devices if d.name == "recycler")


def test_a_kiosk_goes_silent_and_comes_back_rebooted() -> None:
    k = SimKiosk(1, 11, epoch=0)
    seen = set()
    for _ in range(40 * 1440):
        k.step(60)
        if k.silent == "power":
            booted = k.boots
            while k.silent == "power":
                k.step(60)
            assert k.boots == booted + 1
            assert k.view().now - k.view().started_at < 60  # uptime from zero
            seen.add("power")
        elif k.silent == "link":
            seen.add("link")
        if seen == {"power", "link"}:
            break
    assert seen == {"power", "link"}


def test_the_words_are_the_daemons() -> None:
    from kiosk import daemon
    from kiosk.providers.registry import journey_modules

    for kind, words in FAULT_WORDS.items():
        assert daemon.FAULT_WORDS[kind] == words
    source = Path(daemon.__file__).read_text()
    for words in (DOOR_OPEN, SERVICE_WAIT, '"no payment provider answers ("', '"paper out"'):
        assert words in source
    assert 'f"printer: {' in source
    names: dict[str, list[str]] = defaultdict(list)
    for module in journey_modules():
        names[module.JOURNEY.provider].append(module.JOURNEY.name)
    assert {p: tuple(sorted(n)) for p, n in names.items()} == JOURNEYS
    slugs = {
        DOOR_OPEN: "door_open",
        SERVICE_WAIT: "service_mode",
        PAPER_OUT: "printer",
        FAULT_WORDS["jam"]: "validator_fault",
        FAULT_WORDS["cashbox_full"]: "validator_fault",
        no_provider(["payby", "rapyd"]): "providers_down",
    }
    assert {words: reason_slug(words) for words in slugs} == slugs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiosk")
    sub = p.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("sim")
    add_sim_parser(sim.add_subparsers(dest="sim", required=True))
    return p


def test_the_command_runs_dry_and_writes_the_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parser().parse_args(
        ["sim", "fleet", "--kiosks", "5", "--interval-s", "1", "--duration-s", "1.3",
         "--seed", "4", "--print-keys", str(tmp_path / "keys.json")]
    )  # fmt: skip
    assert args.fn is cmd_sim_fleet and args.url is None and args.concurrency == 50
    assert cmd_sim_fleet(args) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "summary: 5 kiosks" in out and ", 0 invalid," in out
    assert len(keys(tmp_path / "keys.json")) == 5
    defaults = parser().parse_args(["sim", "fleet"])
    assert (defaults.kiosks, defaults.interval_s, defaults.duration_s) == (100, 60.0, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["--kiosks", "0"],
        ["--kiosks", "many"],
        ["--kiosks", "100000"],
        ["--interval-s", "0.5"],
        ["--interval-s", "nan"],
        ["--duration-s", "-1"],
        ["--url", "ftp://fleet.example/hb"],
        ["--url", "fleet.example"],
        ["--pushgateway", "http://"],
        ["--concurrency", "0"],
    ],
)
def test_bad_arguments_are_a_clean_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["sim", "fleet", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {argv[0]}: " in err and "Traceback" not in err


def test_bad_arguments_to_run_fleet_raise_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SimFleetError, match=r"--interval-s 0\.1: expected at least 1"):
        run(run_fleet(1, url=None, pushgateway=None, interval_s=0.1, duration_s=1, seed=1))
    with pytest.raises(SimFleetError, match="--url"):
        run(run_fleet(1, url="x", pushgateway=None, interval_s=1, duration_s=1, seed=1))
    args = parser().parse_args(
        ["sim", "fleet", "--kiosks", "2", "--duration-s", "1",
         "--print-keys", str(tmp_path / "missing" / "keys.json")]
    )  # fmt: skip
    assert cmd_sim_fleet(args) == 2


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_fleet_is_counted_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = closed_port()
    args = parser().parse_args(
        ["sim", "fleet", "--kiosks", "3", "--interval-s", "1", "--duration-s", "1.2",
         "--url", f"http://127.0.0.1:{port}/hb", "--pushgateway", f"http://127.0.0.1:{port}"]
    )  # fmt: skip
    assert cmd_sim_fleet(args) == 1  # nothing was delivered
    out, err = capsys.readouterr()
    assert re.search(r"; 0 sent, [1-9][0-9]* failed;", out), out
    assert re.search(r"pushes: 0 to the Pushgateway, [1-9][0-9]* failed", out), out
    assert "Traceback" not in err


def test_ctrl_c_ends_with_the_summary() -> None:
    script = (
        "import argparse, sys\n"
        "from kiosk.fleet.sim import add_sim_parser\n"
        "p = argparse.ArgumentParser(prog='kiosk')\n"
        "add_sim_parser(p.add_subparsers(dest='sim'))\n"
        "args = p.parse_args(sys.argv[1:])\n"
        "sys.exit(args.fn(args))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "fleet", "--kiosks", "20", "--interval-s", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert "Ctrl-C ends" in proc.stdout.readline()
        assert "+1s 20 kiosks" in proc.stdout.readline()  # it runs: now interrupt it
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "summary: 20 kiosks" in out and "Traceback" not in err
