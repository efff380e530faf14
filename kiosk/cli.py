"""The ``kiosk`` command. Subcommands import what they need when they run (start-up time).

Exit status: 0 success, 1 failure, 2 bad configuration or usage (the message names the file,
the key and the expected form), 3 where a command documents it, 70 an internal error (a bug: one
line, the traceback with ``-v``), 130 interrupted, 141 the reader of the output went away
(``kiosk journal | head``: as a process killed by SIGPIPE). No command prints a traceback
but ``kiosk run``, whose crash systemd must see.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from kiosk.errors import ConfigError, DeviceError, KioskError, StorageError, UsageError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EX_SOFTWARE = 70  # sysexits.h: an internal error
EXIT_PIPE = 128 + 13  # SIGPIPE, as the shell shows a process the signal killed

log = logging.getLogger("kiosk.cli")


def _setup_logging(verbose: bool) -> None:
    """stderr (journald under systemd), every record through the redacting filter: no code,
    OTP, tokenUrl or key reaches a log, whoever wrote the line (:mod:`kiosk.redact`)."""
    from kiosk.redact import RedactingFilter

    level = os.environ.get("KIOSK_LOG_LEVEL", "DEBUG" if verbose else "INFO").upper()
    if level not in LOG_LEVELS:
        print(f"KIOSK_LOG_LEVEL={level.lower()}: one of {', '.join(LOG_LEVELS)}; using INFO",
              file=sys.stderr)  # fmt: skip
        level = "INFO"
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:  # on the handlers: child loggers' records too
        handler.addFilter(RedactingFilter())
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _load(args: argparse.Namespace, simulate: bool = False):  # type: ignore[no-untyped-def]
    from kiosk import config

    cfg = config.load(config.resolve_path(args.config), simulate=simulate)
    return cfg, config.load_secrets(cfg.secrets_file)


def cmd_run(args: argparse.Namespace) -> int:
    from gpiozero.exc import GPIOZeroError

    from kiosk.config import check_key_files
    from kiosk.daemon import Daemon
    from kiosk.statelock import StateLock

    cfg, secrets = _load(args, simulate=args.simulate)
    lock = StateLock(cfg.state_dir)  # one daemon per state directory
    try:
        lock.acquire()
    except OSError as exc:
        if isinstance(exc, KioskError):  # StateLocked: another daemon runs here
            raise
        raise StorageError(
            f"state directory {cfg.state_dir}: {exc.strerror or exc}: check kiosk.state_dir in"
            f" {cfg.file} and that the daemon's user may write there"
        ) from exc
    try:
        check_key_files(cfg, secrets)  # a bad key: a message now, not after the devices opened
        return asyncio.run(Daemon(cfg, secrets).run())
    except DeviceError as exc:  # a device the daemon could not open and does not wait for
        if exc.device not in _SERIAL_DEVICES:
            raise  # the panel's GPIO: its message says what to do
        log.debug("kiosk run: stopped by a device", exc_info=True)
        raise DeviceError(*_device_of(cfg, exc)) from exc
    except GPIOZeroError as exc:  # gpiozero refusing later than the panel's set-up
        from kiosk.hardware import gpio_error

        raise gpio_error(exc) from exc
    finally:
        lock.release()


_SERIAL_DEVICES = frozenset({"validator", "recycler", "printer", "code reader"})


def _device_of(cfg: Any, exc: DeviceError) -> tuple[str, str]:
    """(device, message) for a device error at start-up: the device whose configured port the
    error names, and what to check (a camera's or a missing library's message says it)."""
    from kiosk.errors import DecoderMissing

    text, v, p, r = exc.message, cfg.validator, cfg.printer, cfg.reader
    if isinstance(exc, DecoderMissing):
        return "code reader", text
    serial = [
        ("validator", v.driver != "sim" and v.port, "[hardware.validator] port"),
        ("printer", p.driver == "escpos" and p.port, "[hardware.printer] port"),
        ("code reader", r.driver == "scanner" and r.port, "[hardware.reader] port"),
    ]
    for device, port, key in serial:
        if port and port in text:
            return (
                device,
                f"{text}: check that it is plugged in and powered, and {key} in {cfg.file}",
            )
    if r.driver in ("usb", "picamera2") and "camera" in text:
        return "camera", text
    return "a device", f"{text}: check the devices and the [hardware] section of {cfg.file}"


def cmd_demo(args: argparse.Namespace) -> int:
    from kiosk.demo import run_demo

    return run_demo(Path(args.out) if args.out else None, validator=args.validator)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from kiosk.sandbox.server import serve_forever

    serve_forever(Path(args.dir), args.host, args.port)
    return 0


def _check_link(link: str) -> Path:
    """``--link``: not a file we did not make, in a directory we may write (made if missing)."""
    from drivers.errors import PortError
    from drivers.pty import check_link_path

    try:
        check_link_path(Path(link))
    except PortError as exc:
        raise UsageError(f"--link {exc}") from exc
    _writable_dir("--link", Path(link).parent, "the link to the pty")
    return Path(link)


def _writable_dir(flag: str, path: Path, what: str) -> Path:
    from kiosk.paths import writable_dir

    return writable_dir(flag, path, what)


def cmd_sim_setup(args: argparse.Namespace) -> int:
    from kiosk.simkiosk import setup_by_hand

    try:
        files = setup_by_hand(
            Path(args.dir).resolve(),
            sandbox_url=args.sandbox,
            validator=args.validator,
            validator_port=args.validator_port or "sim",
            payout=args.payout,
        )
    except KioskError as exc:  # bad arguments, an unwritable dir, no sandbox: usage, exit 2
        raise UsageError(str(exc)) from exc
    print(files.config)
    return 0


def cmd_sim_validator(args: argparse.Namespace) -> int:
    from kiosk.errors import MoneyError
    from kiosk.money import currency

    try:
        currency(args.currency)  # refuse an unknown currency before anything starts
    except MoneyError as exc:
        raise UsageError(f"--currency: {exc}") from exc
    from kiosk.simserve import DEFAULT_NOTES, serve_validator

    notes = _notes(args.notes, args.protocol) if args.notes else DEFAULT_NOTES
    levels = _levels(args.levels, args.protocol, notes) if args.levels else None
    _check_link(args.link)
    control = Path(args.control) if args.control else None
    if control is not None:
        _writable_dir("--control", control.parent, "the control socket")
    asyncio.run(
        serve_validator(args.protocol, Path(args.link), args.currency, control, notes, levels)
    )
    return 0


_CHANNELS = {"essp": 24, "id003": 8}  # eSSP channels 1-24; ID-003 escrow codes 0x61-0x68


def _minor(text: str) -> int | None:
    """A count or an amount in minor units, or None (int() alone would take '1_000', and
    fail on '²' or on five thousand digits)."""
    text = text.strip()
    return int(text) if text.isdecimal() and text.isascii() and len(text) <= 12 else None


def _notes(text: str, protocol: str) -> tuple[int, ...]:
    """``--notes 500,1000,2000``: each channel's value, positive minor units."""
    most = _CHANNELS[protocol]
    values = [_minor(item) for item in text.split(",")]
    if not all(values) or len(values) > most:  # None or 0 among them
        raise UsageError(
            f"--notes {text}: expected up to {most} note values in minor units separated by"
            " commas, e.g. 500,1000,2000"
        )
    return tuple(v for v in values if v)


def _levels(text: str, protocol: str, notes: tuple[int, ...]) -> dict[int, int]:
    """``--levels 1000x10,2000x10``: the SMART Payout's float, note value -> count."""
    if protocol != "essp":
        raise UsageError("--levels is the eSSP SMART Payout's float: use it with --protocol essp")
    levels: dict[int, int] = {}
    for item in text.split(","):
        value_text, _, count_text = item.partition("x")
        value, count = _minor(value_text), _minor(count_text)
        if value is None or count is None:
            raise UsageError(
                f"--levels {text}: expected VALUExCOUNT pairs separated by commas, in minor"
                " units, e.g. 1000x10,2000x10,5000x10"
            )
        if value not in notes:
            raise UsageError(
                f"--levels {text}: {value} is not a note of this validator"
                f" ({', '.join(map(str, notes))}; see --notes)"
            )
        levels[value] = count
    return levels


def cmd_decode(args: argparse.Namespace) -> int:
    from kiosk import config
    from kiosk.decodecmd import decode_files

    configs = None  # each provider's defaults
    path = config.resolve_path(args.config)
    if args.config or path.exists():  # a kiosk's own allow-lists, when there is a config
        configs = config.load(path).providers
    files = [Path(f) for f in args.files]
    return decode_files(files, decoder=args.decoder, configs=configs)


def cmd_bench(args: argparse.Namespace) -> int:
    from kiosk.bench import footprint

    return footprint(idle_s=args.idle_s, runs=args.runs)


FUZZ_TARGETS = ("router", "config", "essp", "id003", "admin", "providers")


def cmd_bench_fuzz(args: argparse.Namespace) -> int:
    """``kiosk bench fuzz TARGET --seconds N``: one parser under hostile input for N seconds."""
    import importlib

    target, seconds, seed = args.target, args.seconds, args.seed
    if target in ("essp", "id003", "admin"):
        from kiosk.fuzz.frames import fuzz_frames

        return fuzz_frames(target, seconds, seed)
    module = importlib.import_module(f"kiosk.fuzz.{target}")
    status: int = getattr(module, f"fuzz_{target}")(seconds, seed)
    return status


def cmd_bench_heartbeat(args: argparse.Namespace) -> int:
    from kiosk.fleet.bench import heartbeat

    return heartbeat(transactions=args.transactions, runs=args.runs, footprint=not args.no_daemon)


def cmd_bench_qr(args: argparse.Namespace) -> int:
    from kiosk.qrbench import run_qr_bench

    return run_qr_bench(args.frames, args.seed)


def cmd_bench_validator(args: argparse.Namespace) -> int:
    from kiosk.bench import validator

    return validator(protocol=args.protocol, notes=args.notes, poll_interval=args.poll_ms / 1000)


def cmd_bench_outbox(args: argparse.Namespace) -> int:
    from kiosk.bench_outbox import outbox

    return outbox(drain=args.drain, pending=args.pending)


def cmd_bench_journey(args: argparse.Namespace) -> int:
    from kiosk.bench_journey import journey

    return journey(journeys=args.journeys)


def cmd_bench_chaos(args: argparse.Namespace) -> int:
    from kiosk.chaos import main as chaos

    return chaos(args)


def cmd_bench_crashpoints(args: argparse.Namespace) -> int:
    from kiosk.crashpoints import main as crashpoints

    return crashpoints(args)


def cmd_config_check(args: argparse.Namespace) -> int:
    from kiosk.config import check_key_files

    cfg, secrets = _load(args)
    check_key_files(cfg, secrets)  # every key parsed as it will be used: the fleet's, providers'
    from kiosk.receipts import load_templates

    load_templates(cfg.printer.templates_dir)  # an operator's receipt templates are checked
    print(
        f"{cfg.file}: ok (kiosk {cfg.kiosk_id}, {cfg.currency.code}, "
        f"{'simulated' if cfg.simulate else 'real'} hardware)"
    )
    return 0


def _journal(args: argparse.Namespace, *, write: bool = False):  # type: ignore[no-untyped-def]
    """The kiosk's journal, read-only unless ``write``: a technician's command never creates
    the state directory or an empty journal (:class:`~kiosk.errors.NoJournal` when absent)."""
    from kiosk.journal import Journal

    cfg, secrets = _load(args)
    path, kiosk_id, key = cfg.journal_path, cfg.kiosk_id, secrets.journal_key
    reader = Journal.open_read_only(path, kiosk_id=kiosk_id, code_key=key)
    if not write:
        return reader
    reader.close()  # it is there and readable: a write needs the daemon's journal, never a new one
    return Journal.open(path, kiosk_id=kiosk_id, code_key=key)


def cmd_journal(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from kiosk.money import Money

    j = _journal(args)
    if args.ref == "verify":
        return _journal_verify(j, as_json=args.json)
    if args.ref:
        tx = j.find(args.ref)
        if tx is None:
            print(f"no transaction {args.ref}", file=sys.stderr)
            return 1
        shown = {
            "transaction": asdict(tx),
            "effects": [asdict(e) for e in j.effects(tx.id)],
            "liabilities": [r for r in j.liabilities(open_only=False) if r["tx_id"] == tx.id],
            "outbox": j.outbox_rows(tx.id),
            "events": j.events(tx.id),
        }
        if args.json:
            print(json.dumps(shown, indent=2, default=str))
        else:
            print(_transaction_words(shown))
        return 0
    txs = j.transactions(open_only=args.open, limit=args.limit)
    if args.json:
        print(json.dumps([asdict(tx) for tx in txs], indent=2, default=str))
        return 0
    for tx in txs:
        print(
            f"{tx.ref}  {tx.created_at}  {tx.journey:<15} {tx.state:<12} "
            f"due {Money.of(tx.amount_due, tx.currency)}  in {Money.of(tx.credited, tx.currency)}"
            f"{'  OWED ' + str(Money.of(tx.owed, tx.currency)) if tx.owed else ''}"
            f"{'  (' + tx.reason + ')' if tx.reason and tx.state == 'pending' else ''}"
        )
    return 0


def _transaction_words(shown: dict[str, Any]) -> str:
    """One transaction as a technician reads it: amounts as money, each step on a line."""
    from kiosk.money import Money

    tx = shown["transaction"]
    code = tx["currency"]

    def m(minor: int | None) -> str:
        return str(Money.of(minor or 0, code))

    lines = [
        f"{tx['ref']}  {tx['journey']}  {tx['state'].upper()}"
        + (f" ({tx['reason']})" if tx["reason"] else ""),
        f"  created {tx['created_at'][:19].replace('T', ' ')} UTC, last step"
        f" {tx['updated_at'][:19].replace('T', ' ')} UTC",
        f"  due {m(tx['amount_due'])}, cash in {m(tx['credited'])}, paid out"
        f" {m(tx['dispensed'])}, owed {m(tx['owed'])}",
    ]
    if tx["provider_ref"]:
        lines.append(f"  {tx['provider']} reference: {tx['provider_ref']}")
    lines.append("money steps:")
    for e in shown["effects"]:
        lines.append(f"  {e['kind']:<10} {m(e['amount']):>14}  {e['status']:<8} {e['idem_key']}")
    for r in shown["liabilities"]:
        settled = f" - settled: {r['settled_note']}" if r["status"] == "settled" else ""
        lines.append(f"owed: {Money.of(r['amount'], r['currency'])} ({r['reason']}), {r['status']}"
                     f"{settled}  [liability #{r['id']}]")  # fmt: skip
    for row in shown["outbox"]:
        lines.append(f"provider call: {row['op']} {row['status']} after {row['attempts']}"
                     f" attempt(s)")  # fmt: skip
    lines.append("events:")
    for e in shown["events"]:
        move = f" {e['from_state']} -> {e['to_state']}" if e["to_state"] else ""
        lines.append(f"  {e['at'][:19].replace('T', ' ')}  {e['kind']}{move}")
    return "\n".join(lines)


def _journal_verify(j, *, as_json: bool) -> int:  # type: ignore[no-untyped-def]
    from kiosk.journal import verify_chain

    report = verify_chain(j.db.conn)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "first_bad": report.first_bad,
                    "reason": report.reason,
                }
            )
        )
    elif report.ok:
        print(f"journal chain intact: {report.checked} events")
    else:
        print(
            f"journal chain BROKEN at event {report.first_bad}: {report.reason}"
            f" ({report.checked} events before it hold)",
            file=sys.stderr,
        )
    return 0 if report.ok else 1


def cmd_provider_check(args: argparse.Namespace) -> int:
    from kiosk.provider_check import check

    cfg, secrets = _load(args)
    ok, message = check(cfg, secrets, args.name)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_reconcile(args: argparse.Namespace) -> int:
    from kiosk.reconcile import main as reconcile

    cfg, secrets = _load(args)
    _journal(args).close()  # refuse cleanly, creating nothing, when there is no journal to read
    return reconcile(cfg, secrets, args.since, args.json)


def cmd_liabilities(args: argparse.Namespace) -> int:
    from kiosk.money import Money

    if args.settle is not None:
        if not args.note:
            print("--note is required to settle a liability", file=sys.stderr)
            return 2
        j = _journal(args, write=True)
        try:
            j.settle_liability(args.settle, args.note)
        except ValueError as exc:
            print(f"{exc}: see kiosk liabilities --all", file=sys.stderr)
            return 1
        print(f"liability {args.settle} settled")
        return 0
    j = _journal(args)
    rows = j.liabilities(open_only=not args.all)
    for r in rows:
        tx = j.get(r["tx_id"])
        print(
            f"#{r['id']}  {tx.ref}  {Money.of(r['amount'], r['currency'])}  {r['reason']}  "
            f"{r['status']}  {r['created_at']}"
        )
    if not rows:
        print("no liabilities")
    return 0


def _admin(args: argparse.Namespace, cmd: str, **kw: object) -> dict[str, Any]:
    from kiosk import admin, config

    cfg = config.load(config.resolve_path(args.config))
    sock = cfg.state_dir / "admin.sock"
    try:
        reply = admin.call(sock, {"cmd": cmd, **kw})
    except (OSError, ValueError) as exc:  # cut off, timed out, or not a JSON line back
        if isinstance(exc, KioskError):
            raise
        raise KioskError(
            f"the daemon on {sock} did not answer {cmd!r} ({type(exc).__name__}: {exc}):"
            " see journalctl -u kiosk"
        ) from exc
    if not reply.get("ok"):
        raise KioskError(str(reply.get("error")))
    return reply


def cmd_receipt(args: argparse.Namespace) -> int:
    if args.receipt == "reprint":
        reply = _admin(args, "reprint", ref=args.ref)
        for r in reply["receipts"]:
            state = "printed" if r["printed"] else "NOT printed (still queued)"
            print(f"{reply['ref']}: receipt {r['receipt']} ({r['kind']}) {state}")
        return 0 if all(r["printed"] for r in reply["receipts"]) else 1
    reply = _admin(args, "test_page")
    print(
        f"test page {reply['ref']}: {'printed' if reply['printed'] else 'NOT printed'} "
        f"(paper {reply['status']})"
    )
    return 0 if reply["printed"] else 1


def cmd_cash(args: argparse.Namespace) -> int:
    """``kiosk cash collect|levels|refill``, through the running daemon."""
    if args.cash == "levels":
        reply = _admin(args, "levels")
        print(f"the recycler holds {reply['total']}")
        for line in reply["lines"]:
            print(f"  {line}")
        return 0
    if args.cash == "refill":
        print("feed the notes into the validator; press green when done (red stops too)")
        reply = _admin(args, "refill", technician=args.technician)
        print(f"{reply['ref']}: loaded {reply['loaded']}; the recycler holds {reply['total']}")
        for line in reply["lines"]:
            print(f"  in: {line}")
        return 0
    reply = _admin(args, "collect", technician=args.technician)
    print(f"{reply['ref']}: collected {reply['total']} (counters reset)")
    for line in reply["lines"] or ["no notes since the last collection"]:
        print(f"  {line}")
    kept = reply.get("kept")
    if isinstance(kept, dict):
        print(f"  kept in the recycler for payouts: {kept['total']}")
    queued = "NOT printed (queued: kiosk receipt reprint)"
    print(f"receipt {'printed' if reply['printed'] else queued}")
    return 0


def cmd_tamper(args: argparse.Namespace) -> int:
    """``kiosk tamper clear``: lift the tamper latches (a fraud attempt, a cashbox removed
    outside service mode) once the validator and the cashbox were inspected."""
    reply = _admin(args, "tamper_clear", technician=args.technician)
    cleared = reply["cleared"]
    print(f"cleared: {', '.join(cleared)}" if cleared else "no tamper latch was set")
    for why in reply["reasons"]:
        print(f"  still out of service: {why}")
    return 0


def cmd_refund(args: argparse.Namespace) -> int:
    reply = _admin(args, "refund", ref=args.ref, amount=args.amount, technician=args.technician)
    status = reply["status"]
    line = {
        "refunded": f"{reply['amount']} refunded ({reply['refund_no']})",
        "failed": f"refund of {reply['amount']} FAILED ({reply.get('why')}); nothing moved",
        "pending": f"refund of {reply['amount']} sent, not confirmed yet; the kiosk follows it"
        f" ({reply['refund_no']}: kiosk journal {reply['ref']})",
    }[str(status)]
    print(f"{reply['ref']}: {line}; still owed: {reply['owed']}")
    return {"refunded": 0, "pending": 3}.get(str(status), 1)


def cmd_sim_printer(args: argparse.Namespace) -> int:
    from drivers.escpos.sim import run_simulator

    _check_link(args.link)
    out = _writable_dir("--out", Path(args.out), "the rendered receipts")

    async def serve() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        from drivers.escpos.sim import EscposSimulator
        from drivers.sim.control import PrinterRig, serve_control

        sim = EscposSimulator(out, columns=args.columns)
        task = asyncio.create_task(
            run_simulator(Path(args.link), out, columns=args.columns, sim=sim)
        )
        server = await serve_control(PrinterRig(sim), Path(args.control)) if args.control else None
        print(
            f"ESC/POS printer simulator on {args.link}; receipts in {args.out}"
            + (f"; control socket {args.control}" if args.control else ""),
            flush=True,
        )
        await stop.wait()
        task.cancel()
        if server is not None:
            server.close()

    asyncio.run(serve())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from kiosk.status import words

    reply = _admin(args, "status")
    reply.pop("ok")
    print(json.dumps(reply, indent=2) if args.json else words(reply))
    return 0 if reply["state"] != "out_of_service" else 3


def cmd_payout(args: argparse.Namespace) -> int:
    from kiosk import config
    from kiosk.money import Money

    cfg = config.load(config.resolve_path(args.config))
    amount = Money.from_decimal(args.amount, cfg.currency.code)
    reply = _admin(args, "payout", amount=amount.minor)
    paid = Money.of(int(str(reply["dispensed"])), cfg.currency.code)
    print(
        f"{reply['ref']}: {reply['state']} - paid out {paid} of {amount}"
        + (f" ({reply['reason']})" if reply.get("reason") else "")
    )
    return 0 if reply["state"] == "completed" else 1


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (``command``) only what that command needs: the daemon's
    ``kiosk run`` does not import the benches', simulators' and provisioning's modules just to
    build its parser (two megabytes of a Pi's memory for as long as it runs)."""
    tools = command is None

    p = argparse.ArgumentParser(prog="kiosk", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--config", help="TOML config (default $KIOSK_CONFIG, else /etc/kiosk/kiosk.toml)"
        )
        return sp

    r = with_config(sub.add_parser("run", help="run the daemon"))
    r.add_argument("--simulate", action="store_true", help="simulated hardware")
    r.set_defaults(fn=cmd_run)

    d = sub.add_parser("demo", help="the journeys on simulated hardware against the local sandbox")
    d.add_argument("--out", help="directory for the receipts, journal and logs (default: temp)")
    d.add_argument(
        "--validator",
        choices=["sim", "id003", "essp"],
        default="sim",
        help="the validator: interface-level simulator (default) or a protocol simulator "
        "spoken to byte for byte over a pseudo-terminal",
    )
    d.set_defaults(fn=cmd_demo)

    s = sub.add_parser("sandbox", help="the local provider sandbox (every provider) on loopback")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8700)
    s.add_argument("--dir", default="./sandbox-state", help="the sandbox's ledger and keys")
    s.set_defaults(fn=cmd_sandbox)

    sim = sub.add_parser("sim", help="device simulators on pseudo-terminals")
    simsub = sim.add_subparsers(dest="sim", required=True)
    ss = simsub.add_parser("setup", help="write a simulated kiosk to run the daemon by hand")
    ss.add_argument("--dir", required=True, help="where the config, secrets and state go")
    ss.add_argument("--sandbox", metavar="URL", help="a running `kiosk sandbox` to register at")
    ss.add_argument("--validator", choices=["sim", "essp", "id003"], default="sim")
    ss.add_argument(
        "--validator-port", metavar="PATH", help="an external `kiosk sim validator --link PATH`"
    )
    ss.add_argument("--payout", action="store_true", help="the eSSP unit is a SMART Payout")
    ss.set_defaults(fn=cmd_sim_setup)
    sv = simsub.add_parser("validator", help="a bill validator speaking eSSP or ID-003")
    sv.add_argument("--protocol", choices=["essp", "id003"], required=True)
    sv.add_argument("--link", required=True, help="path of the symlink to the pty to create")
    sv.add_argument("--currency", default="EUR")
    sv.add_argument("--notes", help="channel values in minor units, e.g. 500,1000,2000")
    sv.add_argument("--control", help="a Unix socket for the control channel (JSON lines)")
    sv.add_argument("--levels", help="eSSP SMART Payout float, e.g. 1000x10,2000x10,5000x10")
    sv.set_defaults(fn=cmd_sim_validator)
    sp = simsub.add_parser("printer", help="an ESC/POS printer that renders receipts to PNG")
    sp.add_argument("--link", required=True, help="path of the symlink to the pty to create")
    sp.add_argument("--out", required=True, help="directory for the rendered receipts")
    sp.add_argument("--columns", type=int, default=48, help="48 for 80 mm paper, 32 for 58 mm")
    sp.add_argument("--control", help="a Unix socket to script paper, cover and online state")
    sp.set_defaults(fn=cmd_sim_printer)
    if tools or command == "sim":
        from kiosk.fleet.sim import add_sim_parser as sim_fleet_parser

        sim_fleet_parser(simsub)

    dc = with_config(sub.add_parser("decode", help="decode images: one JSON line per file"))
    dc.add_argument("files", nargs="+", metavar="FILE")
    dc.add_argument("--decoder", default="auto", choices=["auto", "kiosk", "zxing", "pyzbar"])
    dc.set_defaults(fn=cmd_decode)

    b = sub.add_parser("bench", help="benchmarks a technician can run on a Pi")
    bsub = b.add_subparsers(dest="bench", required=True)
    fp = bsub.add_parser("footprint", help="start-up time, memory, idle CPU")
    fp.add_argument("--idle-s", type=float, default=10.0, help="idle window for the CPU figure")
    fp.add_argument("--runs", type=int, default=3, help="start-ups to time (median printed)")
    fp.set_defaults(fn=cmd_bench)
    bz = bsub.add_parser("fuzz", help="one parser under hostile input for a while")
    bz.add_argument("target", choices=FUZZ_TARGETS, help="the parser")
    bz.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    bz.add_argument("--seed", type=int, default=1, help="the seed (a failure names its case)")
    bz.set_defaults(fn=cmd_bench_fuzz)
    bh = bsub.add_parser(
        "heartbeat", help="CPU to build and sign a heartbeat and to serve a scrape; the daemon"
        " with the fleet on"
    )  # fmt: skip
    bh.add_argument("--transactions", type=int, default=5000, help="in the bench's journal")
    bh.add_argument("--runs", type=int, default=50, help="heartbeats and scrapes timed")
    bh.add_argument("--no-daemon", action="store_true", help="skip the daemon's footprint")
    bh.set_defaults(fn=cmd_bench_heartbeat)
    bv = bsub.add_parser("validator", help="escrow -> credit committed latency, p50 and p99")
    bv.add_argument("--protocol", choices=["essp", "id003"], default="essp")
    bv.add_argument("--notes", type=int, default=100)
    bv.add_argument("--poll-ms", type=float, default=200.0, help="idle poll cycle")
    bv.set_defaults(fn=cmd_bench_validator)
    bq = bsub.add_parser("qr", help="decoders side by side on a seeded corpus of hard frames")
    bq.add_argument("--frames", type=int, default=400)
    bq.add_argument("--seed", type=int, default=1)
    bq.set_defaults(fn=cmd_bench_qr)
    bj = bsub.add_parser("journey", help="the kiosk's own (CPU) time per journey")
    bj.add_argument("--journeys", type=int, default=50)
    bj.set_defaults(fn=cmd_bench_journey)
    bo = bsub.add_parser("outbox", help="outbox drain rate; READY with a backlog of pending rows")
    bo.add_argument("--drain", type=int, default=1000, help="pending payments to drain")
    bo.add_argument("--pending", type=int, default=10_000, help="backlog for the READY time")
    bo.set_defaults(fn=cmd_bench_outbox)
    if tools or command == "bench":
        from kiosk.chaos import add_arguments as chaos_arguments
        from kiosk.crashpoints import add_arguments as crashpoint_arguments

        bc = bsub.add_parser(
            "crashpoints", help="SIGKILL the daemon before and after every durable step; invariants"
        )
        crashpoint_arguments(bc)
        bc.set_defaults(fn=cmd_bench_crashpoints)
        bch = bsub.add_parser(
            "chaos", help="random SIGKILLs and injected faults; the same invariants"
        )
        chaos_arguments(bch)
        bch.set_defaults(fn=cmd_bench_chaos)

    c = sub.add_parser("config", help="configuration")
    csub = c.add_subparsers(dest="config_cmd", required=True)
    with_config(
        csub.add_parser("check", help="check the config and secrets; exit 2 if bad")
    ).set_defaults(fn=cmd_config_check)

    jr = with_config(
        sub.add_parser(
            "journal",
            help="list transactions, show one, or verify the hash chain",
            description="kiosk journal [--open] [--json]: list; kiosk journal REF: one"
            " transaction with its effects, liabilities, outbox and events; kiosk journal"
            " verify: check the events' hash chain (exit 1 naming the first bad event).",
        )
    )
    jr.add_argument(
        "ref", nargs="?", help="a transaction reference (e.g. KSK1-000042), or 'verify'"
    )
    jr.add_argument("--open", action="store_true", help="only transactions not yet ended")
    jr.add_argument("--limit", type=int, default=50)
    jr.add_argument("--json", action="store_true", help="machine-readable output")
    jr.set_defaults(fn=cmd_journal)

    pv = sub.add_parser("provider", help="provider credentials")
    pvsub = pv.add_subparsers(dest="provider_cmd", required=True)
    pc = with_config(
        pvsub.add_parser("check", help="one authenticated call: do the credentials work?")
    )
    pc.add_argument("name", help="the provider (a name from the registry, e.g. payby)")
    pc.set_defaults(fn=cmd_provider_check)

    rc_ = with_config(
        sub.add_parser("reconcile", help="compare the journal with each provider's own view")
    )
    rc_.add_argument("--since", help="only transactions created from this ISO time on (UTC)")
    rc_.add_argument("--json", action="store_true", help="machine-readable output")
    rc_.set_defaults(fn=cmd_reconcile)

    st = with_config(sub.add_parser("status", help="ask the running daemon how it is"))
    st.add_argument("--json", action="store_true", help="the status document, for scripts")
    st.set_defaults(fn=cmd_status)
    po = with_config(sub.add_parser("payout", help="test dispense through the running daemon"))
    po.add_argument("amount", help="major units, e.g. 20.00")
    po.set_defaults(fn=cmd_payout)

    rc = sub.add_parser("receipt", help="receipts, through the running daemon")
    rsub = rc.add_subparsers(dest="receipt", required=True)
    rr = with_config(rsub.add_parser("reprint", help="print a transaction's receipts again"))
    rr.add_argument("ref", help="the transaction reference on the receipt")
    rr.set_defaults(fn=cmd_receipt)
    with_config(rsub.add_parser("test", help="print a test page")).set_defaults(fn=cmd_receipt)
    ca = sub.add_parser("cash", help="the cashbox and the recycler, through the running daemon")
    casub = ca.add_subparsers(dest="cash", required=True)
    for name, text in (
        ("collect", "record a cash collection (count per note, counters reset), print its receipt"),
        ("levels", "what the recycler holds for payouts, per note"),
        ("refill", "load the recycler: feed notes through the validator, press green when done"),
    ):
        cp = with_config(casub.add_parser(name, help=text))
        if name != "levels":
            cp.add_argument("--technician", default="unknown", help="who does it")
        cp.set_defaults(fn=cmd_cash)

    ta = sub.add_parser("tamper", help="the tamper latches, through the running daemon")
    tasub = ta.add_subparsers(dest="tamper", required=True)
    tc = with_config(
        tasub.add_parser(
            "clear",
            help="lift the tamper latches (fraud, cashbox removed) after inspecting the kiosk",
        )
    )
    tc.add_argument("--technician", default="unknown", help="who clears them (journaled)")
    tc.set_defaults(fn=cmd_tamper)

    rf = with_config(
        sub.add_parser(
            "refund",
            help="refund a finished cash-out's provider order (PayBy) through the running daemon",
            description="Refund (part of) the provider order of a finished cash-out: by default"
            " what the kiosk owes on it. Exit 0 refunded, 1 refused or failed, 3 not confirmed"
            " yet (the kiosk follows it).",
        )
    )
    rf.add_argument("ref", help="the transaction reference on the receipt")
    rf.add_argument("--amount", help="major units in the order's currency, e.g. 20.00")
    rf.add_argument("--technician", default="technician", help="who refunds")
    rf.set_defaults(fn=cmd_refund)

    li = with_config(sub.add_parser("liabilities", help="money owed to customers"))
    li.add_argument("--all", action="store_true", help="include settled ones")
    li.add_argument("--settle", type=int, metavar="ID", help="mark liability ID as settled")
    li.add_argument("--note", help="how it was settled (with --settle)")
    li.set_defaults(fn=cmd_liabilities)

    if tools or command == "provision":
        from kiosk.provision import add_parser as provision_parser

        provision_parser(sub)
    if tools or command == "selftest":
        from kiosk.selftest import add_parser as selftest_parser

        selftest_parser(sub)
    if tools or command == "support-bundle":
        from kiosk.support import add_parser as support_bundle_parser

        support_bundle_parser(sub)
    if not tools and command not in sub.choices:
        return build_parser()  # a misspelt command: argparse lists every choice
    return p


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the top level's options take no values), or
    None (``kiosk``, ``kiosk --help``): then the whole parser is built."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_of(words)).parse_args(words)
    _setup_logging(args.verbose)
    try:
        return _run(args)
    except BrokenPipeError:  # the reader went away (``| head``): quiet, as after SIGPIPE
        _stdout_to_devnull()
        return EXIT_PIPE


def _run(args: argparse.Namespace) -> int:
    """The command, each error mapped to one line on stderr and an exit status."""
    try:
        status = int(args.fn(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return status
    except BrokenPipeError:
        raise
    except ConfigError as exc:
        print(f"kiosk: configuration error: {exc}", file=sys.stderr)
        return 2
    except KioskError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))  # 2 for UsageError, a refusal (StateLocked)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line for the technician, never a traceback
        from kiosk.devices import is_device_error

        if is_device_error(exc):  # a device or port the command drove itself could not be used
            print(f"kiosk: {exc}", file=sys.stderr)
            return 2
        what = " ".join(f"{type(exc).__name__}: {exc}".split())
        if args.command == "run":  # the daemon: systemd (and journald) must see the crash
            log.error("kiosk run: crashed: %s", what, exc_info=True)
            _quiet_excepthook(exc)
            raise
        from kiosk.redact import redact

        log.debug("kiosk %s: internal error", args.command, exc_info=True)
        print(f"kiosk: internal error: {redact(what)} (run it again with -v for the details;"
              " please report it)", file=sys.stderr)  # fmt: skip
        return EX_SOFTWARE


def _quiet_excepthook(logged: BaseException) -> None:
    """The interpreter's last word on ``logged`` is dropped: its traceback is in the log
    already, through the redacting filter (printed again it would not be redacted)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if value is not logged:
            previous(kind, value, tb)

    sys.excepthook = hook


def _stdout_to_devnull() -> None:
    """Point fd 1 at /dev/null: the interpreter flushes stdout once more on its way out, and
    that flush would fail again (the Python docs' recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real fd 1 (stdout replaced in-process)
        pass


if __name__ == "__main__":
    sys.exit(main())
