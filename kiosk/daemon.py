"""The kiosk daemon (``kiosk run``): one customer at a time, unattended, under systemd.

Start-up: open the journal, build and open the devices, settle every transaction left open
by a crash (``flows.recovery``), then tell systemd READY=1 and ping its watchdog. Then wait
for a code; each code starts a journey that owns the devices until it ends. A missing or
faulted device puts the kiosk out of service (red LED, codes refused) until it recovers.
SIGTERM stops between journeys or, inside one, at once: the journal already holds every step,
and the next start recovers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from drivers.panel import PanelEvent, PanelState
from drivers.printer.base import PaperState, PrinterStatus
from drivers.validator.base import FaultCleared, FaultKind, PowerUpReport
from kiosk import memory
from kiosk.admin import Handler, serve_admin
from kiosk.config import Config, Secrets
from kiosk.devices import PRINTER, READER, GarbleWatch, Guarded
from kiosk.errors import DeviceError, PayloadError
from kiosk.fleet.runner import Facts, Fleet
from kiosk.fleet.view import DeviceView, ProviderView
from kiosk.flows.context import Context, Sources
from kiosk.hardware import Hardware, build
from kiosk.journal import AsyncJournal
from kiosk.lockout import Lockout
from kiosk.money import Money
from kiosk.providers.registry import connect_all, providers, starter
from kiosk.reachability import Reachability
from kiosk.router import route
from kiosk.sdnotify import Notifier, watchdog_interval_s
from kiosk.tamper import Tamper

log = logging.getLogger("kiosk.daemon")
T = TypeVar("T")
FAULT_WORDS = {
    "jam": "a note is jammed in the bill validator: open it and clear the note path",
    "fraud": "the bill validator detected a fraud attempt: check the note path and the door",
    "cashbox_full": "the cashbox is full: empty it (kiosk cash collect)",
    "cashbox_removed": "the cashbox is out of the bill validator: put it back",
    "failure": "the bill validator reports a failure: power it off and on, then kiosk selftest",
    "disconnected": "the bill validator does not answer",
}
Job = tuple[Callable[[], Awaitable[Any]], "asyncio.Future[Any]"]

IDLE_TICK_S = 30.0  # how often an idle kiosk checks its printer
REOPEN_S = 2.0  # how often a lost validator is opened again
NO_RECEIPT_CONFIRM_S = 10.0  # how long a customer has to accept a journey without a receipt
RESULT_HOLD_S = 3.0  # how long DONE / REFUSED stay on the panel
STALL_S = 4 * IDLE_TICK_S  # the idle loop comes round at least every IDLE_TICK_S
JOURNEY_MAX_S = 15 * 60.0  # the longest a journey (or a technician's command) may hold the loop
JOURNAL_PROBE_S = 10.0  # the journal's writer thread must answer within this
WATCH_S = 1.0  # how often the lines (bad frames) and, during a journey, the door are looked at


class Daemon:
    def __init__(self, config: Config, secrets: Secrets, notifier: Notifier | None = None) -> None:
        self.config, self.secrets = config, secrets
        self.notifier = notifier or Notifier()
        self.stopping = asyncio.Event()
        self.validator_ok = False
        self.busy = asyncio.Lock()  # held by whatever drives the devices: a journey, a test payout
        self._printer_word = ""
        self._printer_ready = True
        self.printer_ok = True  # opened (else the idle tick opens it again)
        self.reader_ok = True
        self._paper = "ok"
        self._levels: dict[int, int] | None = None  # the recycler's, read by the idle loop
        self.fleet_hold: str | None = None  # out of service by a fleet command: its reason
        self._auth_news: list[
            tuple[str, str | None]
        ] = []  # credentials refused/accepted, to journal
        self.lockout = Lockout(config.limits)  # too many refused codes: no code for a while
        self._http: dict[str, Any] = {}  # each provider's HTTP client (connect_all's order)
        self.service: str | None = None  # service mode: "door open" | "door closed" (confirm)
        self._jobs: asyncio.Queue[Job] = asyncio.Queue()  # technicians' commands, for the loop
        self._looping = False  # the idle loop runs (else a command runs where it is asked)
        self.beat_at = time.monotonic()  # the idle loop's last round (the watchdog reads it)
        self.tamper: Tamper | None = None  # the tamper latches (built with the journal)
        self._garbled: dict[str, str] = {}  # device -> why it was closed for garbage

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        c = self.config
        started = time.monotonic()
        journal = await AsyncJournal.open(
            c.journal_path, kiosk_id=c.kiosk_id, code_key=self.secrets.journal_key
        )
        hw: Hardware | None = None
        connections: list[Any] = []  # each provider client's HTTP client, closed at the end
        try:
            self.tamper = Tamper(journal)
            self.tamper.service_mode = lambda: self.service is not None
            await self.tamper.restore()
            hw = await build(c)
            await hw.panel.open()
            await self._open_printer(hw)
            await self._open_reader(hw)
            power_up = await self._open_validator(hw)
            reach = Reachability()
            clients, connections = connect_all(
                c,
                self.secrets,
                reach.recorder,
                reach.clock_recorder,
                lambda name: lambda said: self._auth(reach, name, said),
            )
            self._http = dict(zip(clients, (conn.http for conn in connections), strict=True))
            ctx = Context(
                config=c,
                journal=journal,
                validator=hw.validator,
                printer=hw.printer,
                panel=hw.panel,
                clients=clients,
                dispenser=hw.dispenser,
                reachability=reach,
                read_code=hw.reader.next_code,
                tamper=self.tamper,
            )
            if not self.validator_ok:
                ctx.out_of_service.set()
            if hw.panel.door_open:
                await self._enter_service(ctx, "open at start")
            await self._restore_lockout(journal)
            from kiosk.flows.recovery import recover

            settled = await recover(ctx, power_up or PowerUpReport())  # local only: fast
            await self._ack_power_up(hw)
            for tx in settled:
                log.warning("recovered %s -> %s", tx.ref, tx.state)
            from kiosk import receipts

            if await receipts.print_left_at_start(journal, hw.printer):
                log.warning("printed the receipts a crash had left in the queue")
            await journal.call(
                journal.sync.log,
                "daemon.ready",
                {"recovered": len(settled), "simulate": c.simulate},
            )
            log.info(
                "ready in %.0f ms (kiosk %s%s)",
                (time.monotonic() - started) * 1000,
                c.kiosk_id,
                ", simulated hardware" if c.simulate else "",
            )
            # The admin socket first: READY means a technician's command is answered.
            admin = await serve_admin(c.state_dir / "admin.sock", self._admin_handlers(ctx))
            self.notifier.ready(f"ready; recovered {len(settled)}")
            watchdog = asyncio.create_task(self._watchdog(journal))
            # Pending payments are settled in the background, whatever the providers do.
            forwarder = asyncio.create_task(ctx.outbox().run())
            serve = asyncio.create_task(self._serve(ctx, hw))
            watch = asyncio.create_task(self._watch(ctx, hw))
            fleet = await self._start_fleet(ctx)  # after the loop: customers come first
            memory.trim()  # what start-up freed goes back to the system
            stop = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({serve, stop, forwarder}, return_when=asyncio.FIRST_COMPLETED)
            self.notifier.stopping()
            admin.close()
            await fleet.stop()
            for task in (serve, stop, watchdog, forwarder, watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for task in (serve, forwarder):  # a dead loop stops the daemon: systemd restarts it
                if task.done() and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
            await journal.call(journal.sync.log, "daemon.stopped")
            return 0
        finally:
            for conn in connections:
                await conn.aclose()
            if hw is not None:
                await hw.close()
            await journal.close()

    async def _open_printer(self, hw: Hardware) -> None:
        """A printer that cannot be opened is not ready (out of service unless receipts are
        optional); the idle tick opens it again: it may be plugged in later, and a daemon that
        refused to start would soon hit systemd's start limit and stay down."""
        try:
            await hw.printer.open()
        except DeviceError as exc:
            if self.printer_ok:
                log.error(
                    "printer: cannot open (%s): out of service until it answers; check its"
                    " cable, power and [hardware.printer] port",
                    exc.message,
                )
            self.printer_ok, self._printer_ready = False, False
            self._printer_word = "not ready (cannot open)"
            return
        if not self.printer_ok:
            log.info("printer: open")
        self.printer_ok = True
        self._garbled.pop(PRINTER, None)

    async def _open_reader(self, hw: Hardware) -> None:
        """The same for the code reader (a camera or a scanner)."""
        try:
            await hw.reader.open()
        except DeviceError as exc:
            if self.reader_ok:
                log.error(
                    "code reader: cannot open (%s): out of service until it answers; check its"
                    " cable and [hardware.reader]",
                    exc.message,
                )
            self.reader_ok = False
            return
        if not self.reader_ok:
            log.info("code reader: open")
        self.reader_ok = True
        self._garbled.pop(READER, None)

    async def _open_validator(self, hw: Hardware) -> PowerUpReport | None:
        try:
            report = await hw.validator.open()
        except DeviceError as exc:
            if self.validator_ok or not hasattr(self, "_validator_logged"):
                log.error(
                    "validator: cannot open (%s): out of service; check its cable, power and"
                    " [hardware.validator] port; opening it again every %.0f s",
                    exc.message,
                    REOPEN_S,
                )
                self._validator_logged = True
            self.validator_ok = False
            return None
        if not self.validator_ok:
            log.info("validator: open")
        self.validator_ok = True
        return report

    async def _ack_power_up(self, hw: Hardware) -> None:
        """Acknowledge the device's power-up report only now that recovery committed it
        (ID-003: a VEND VALID left un-acked by a host crash)."""
        ack = getattr(hw.validator, "ack_power_up", None)
        if ack is not None and self.validator_ok:
            try:
                await ack()
            except DeviceError as exc:
                log.error("validator: power-up acknowledgement failed: %s", exc.message)

    async def _watchdog(self, journal: AsyncJournal) -> None:
        """Ping systemd's watchdog only while the main loop is alive: the idle loop came round
        lately (a journey may hold it up to ``JOURNEY_MAX_S``) and the journal's writer thread
        answers. A stalled kiosk stops pinging, and systemd restarts it (recovery settles what
        was open)."""
        interval = watchdog_interval_s()
        if interval is None:
            return
        said = ""
        while True:
            problem = self.stalled() or await _journal_stalled(journal)
            if problem is None:
                self.notifier.watchdog()
            if (problem or "") != said:
                if problem:
                    log.error("watchdog: %s; systemd will restart the daemon", problem)
                else:
                    log.warning("watchdog: the main loop is alive again")
                said = problem or ""
            await asyncio.sleep(interval)

    def stalled(self) -> str | None:
        """Why the main loop looks stuck, or None: the idle loop has not come round for longer
        than ``STALL_S`` (``JOURNEY_MAX_S`` while a journey or a technician's command runs)."""
        since = time.monotonic() - self.beat_at
        limit = JOURNEY_MAX_S if self.busy.locked() else STALL_S
        if since > limit:
            what = (
                "a journey has held" if self.busy.locked() else "the idle loop has not come round"
            )
            return f"{what} for {since:.0f} s"
        return None

    async def _start_fleet(self, ctx: Context) -> Fleet:
        """Heartbeats, metrics and the local endpoints (:mod:`kiosk.fleet`), beside the loop:
        a fleet that is down or slow never delays a customer."""
        fleet = Fleet(
            self.config,
            ctx.journal,
            lambda: self.facts(ctx),
            lambda cmd: self._fleet_command(ctx, cmd),
            capacity=self.config.validator.cashbox_capacity,
        )
        for name, http in self._http.items():  # each provider's request times, by provider
            http.event_hooks = fleet.metrics.httpx_hooks(name)
        ctx.approvals.on_open = fleet.nudge  # a wait for approval: a heartbeat now, not in 60 s
        try:
            await fleet.start()
        except OSError as exc:  # the port is taken: the kiosk serves customers all the same
            log.error("fleet: local endpoints on %s:%d: %s", self.config.fleet.listen,
                      self.config.fleet.port, exc)  # fmt: skip
        return fleet

    def facts(self, ctx: Context) -> Facts:
        """The daemon's state for the fleet, from what it holds (no device I/O)."""
        why = tuple(self.reasons(ctx, providers=True))
        state = "out_of_service" if why else ("busy" if self.busy.locked() else "in_service")
        fault = str(ctx.fault) if ctx.fault is not None else None
        lost = self._garbled.get("validator") or "not answering"
        devices = [
            DeviceView(
                "validator",
                self.validator_ok and fault is None,
                lost if not self.validator_ok else (fault or "ok"),
                {"model": getattr(ctx.validator, "name", "?"), "fault": fault},
            ),
            DeviceView(
                "printer",
                self._printer_ready,
                "ok" if self._printer_ready else self._printer_word or "?",
                {"paper": self._paper},
            ),
            DeviceView(
                "door", not ctx.panel.door_open, "open" if ctx.panel.door_open else "closed"
            ),
        ]  # the camera is not monitored yet: absent rather than always "up"
        if ctx.dispenser is not None:
            levels = self._levels or {}
            value = sum(v * n for v, n in levels.items())
            devices.append(
                DeviceView(
                    "recycler",
                    self._levels is not None,
                    "ok" if self._levels is not None else "levels unread",
                    {
                        "levels": {str(v): n for v, n in sorted(levels.items())},
                        "value": value,
                        "currency": self.config.currency.code,
                    },
                )
            )
        providers = tuple(
            ProviderView(
                name,
                bool(p.get("reachable", True)),
                float(p.get("for_s", 0.0)),  # type: ignore[arg-type]
                p.get("clock_skew_s"),  # type: ignore[arg-type]
                auth_refused="auth_refused" in p,
            )
            for name, p in ctx.reachability.status().items()
        )
        tamper = self.tamper.views() if self.tamper is not None else ()
        return Facts(
            state=state,
            reasons=why,
            devices=tuple(devices),
            providers=providers,
            tamper=tamper,
            approvals=ctx.approvals.views(),
        )

    async def _fleet_command(self, ctx: Context, cmd: dict[str, Any]) -> str:
        """An accepted fleet command (verified and journaled by :mod:`kiosk.fleet.commands`)."""
        name, args = cmd["cmd"], cmd.get("args") or {}
        if name == "out_of_service":
            self.fleet_hold = str(args.get("reason") or "no reason given")
            return "out of service"
        if name == "in_service":
            self.fleet_hold = None
            return "back in service"
        if name == "reprint":
            from kiosk import technician

            reply = await self._between_customers(lambda: technician.reprint(ctx, args["ref"]))
            return f"{len(reply['receipts'])} receipt(s) printed again"
        if name == "restart":
            self.stopping.set()  # systemd starts it again (Restart=always)
            return "restarting"
        if name == "approve":  # the gate checked its form; kiosk.approvals decides
            amount = Money.of(int(args["amount"]["minor"]), str(args["amount"]["currency"]))
            approved = ctx.approvals.grant(str(args["ref"]), "fleet", amount)
            return f"{args['ref']}: {approved} approved"
        return f"{name}: not run on this kiosk"

    async def _between_customers(self, job: Callable[[], Awaitable[T]]) -> T:
        """Run a technician's command that drives the devices inside the idle loop, between
        customers: the loop is the one reader of the devices' events (a refill's notes, a
        payout's), so none is taken for a stray. Refused while a customer is served."""
        if self.busy.locked():
            raise ValueError("a journey is running; try again when the kiosk is idle")
        if not self._looping:  # no idle loop (tests, start-up): run here
            async with self.busy:
                return await job()
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait((job, done))
        result: T = await done
        return result

    async def _run_job(self, job: Job) -> None:
        run, done = job
        async with self.busy:
            try:
                result = await run()
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
                return
        if not done.done():
            done.set_result(result)

    async def _serve(self, ctx: Context, hw: Hardware) -> None:
        """The idle loop: wait for a code, a panel event, a device event or a technician's
        command (:meth:`_between_customers`)."""
        self._looping = True
        try:
            await self._rounds(ctx, hw)
        finally:
            self._looping = False  # a technician's command runs where it is asked again

    async def _rounds(self, ctx: Context, hw: Hardware) -> None:
        while True:
            self.beat_at = time.monotonic()
            if hw.panel.door_open and self.service != "door open":
                # opened while a journey held the panel (it takes only its buttons' events)
                await self._enter_service(ctx, "opened during a journey")
            why = self.reasons(ctx)
            hw.panel.show(PanelState.OUT_OF_SERVICE if why else PanelState.READY)
            self.notifier.status(f"out of service: {'; '.join(why)}" if why else "ready")
            waits: dict[str, Callable[[], Awaitable[object]]] = {
                "panel": hw.panel.next_event,
                "admin": self._jobs.get,
            }
            if self.reader_ok:
                waits["code"] = functools.partial(_or_error, hw.reader.next_code)
            if self.validator_ok:
                waits["validator"] = functools.partial(_or_error, hw.validator.next_event)
            sources = Sources(**waits)
            all_open = self.validator_ok and self.printer_ok and self.reader_ok
            try:
                got = await sources.next(IDLE_TICK_S if all_open else REOPEN_S)
            finally:
                left = await sources.close()
            self.beat_at = time.monotonic()
            if got is None and not left:
                await self._idle_tick(ctx, hw)
                continue
            events = ([got] if got is not None else []) + left
            # Every device and panel event first, in order; then the code (if one was read).
            for name, event in events:
                if isinstance(event, DeviceError):
                    await self._source_failed(ctx, hw, name, event)
                elif name != "code":
                    await self._idle_event(ctx, hw, name, event)
            for name, event in events:
                if name == "code" and not isinstance(event, DeviceError):
                    await self._code(ctx, hw, event)

    async def _idle_event(self, ctx: Context, hw: Hardware, name: str, event: object) -> None:
        j = ctx.journal
        if name == "admin":
            await self._run_job(event)  # type: ignore[arg-type]
        elif name == "validator":
            await self._device_event(ctx, event)
            await self._drop_lost_validator(ctx, hw)
        elif event == PanelEvent.DOOR_OPEN:
            await self._enter_service(ctx, "opened")
        elif event == PanelEvent.DOOR_CLOSED:
            await j.call(j.sync.log, "door.closed")
            if self.service is not None:
                self.service = "door closed"
                log.warning("door closed: press the green button to return to service")
        elif event == PanelEvent.CONFIRM and self.service == "door closed":
            self.service = None
            await j.call(j.sync.log, "service.left", {"by": "panel"})
            log.warning("service mode ended on the panel: back in service")
            if self.tamper is not None:
                await self.tamper.clear("panel")  # the technician inspected and confirmed

    async def _enter_service(self, ctx: Context, how: str) -> None:
        """The door opened: out of service until it is closed and a technician presses green."""
        j = ctx.journal
        await j.call(j.sync.log, "door.open", {"how": how})
        if self.service != "door open":
            await j.call(j.sync.log, "service.entered", {"why": f"door {how}"})
            log.warning("door %s: service mode (out of service until closed and confirmed)", how)
        self.service = "door open"

    def reasons(self, ctx: Context, *, providers: bool = False) -> list[str]:
        """Why the kiosk is out of service, each in words; [] when it serves customers.
        ``providers``: also when no provider answers (``kiosk status``; the panel stays
        ready then: a journey may still run offline, and its own check refuses it)."""
        why = []
        if self.service == "door open":
            why.append("door open (service mode)")
        elif self.service == "door closed":
            why.append("service mode: the door is closed, press the green button to end it")
        if self.tamper is not None:
            why += self.tamper.reasons()
        if not self.validator_ok:
            lost = self._garbled.get("validator")
            why.append(
                f"the bill validator {lost}" if lost else "the bill validator does not answer"
            )
        elif ctx.fault is not None:
            why.append(FAULT_WORDS.get(str(ctx.fault), f"the bill validator reports {ctx.fault}"))
        elif ctx.out_of_service.is_set():
            why.append("a device failed during a journey (see the last errors)")
        if self.fleet_hold is not None:
            why.append(f"out of service by the fleet: {self.fleet_hold}")
        if (locked := self.lockout.reason()) is not None:
            why.append(locked)
        if not self.reader_ok:
            lost = self._garbled.get(READER)
            why.append(
                f"the code reader {lost}"
                if lost
                else "the code reader (camera or scanner) does not answer"
            )
        if not self._printer_ready and not self.config.printer.allow_no_receipt:
            why.append(f"printer: {self._printer_word.removeprefix('not ready (')[:-1]}")
        down = [n for n in ctx.clients if ctx.reachability.is_down(n)]
        if providers and ctx.clients and len(down) == len(ctx.clients):
            why.append("no payment provider answers (" + ", ".join(down) + ")")
        return why

    async def _code(self, ctx: Context, hw: Hardware, text: str) -> None:
        latched = self.tamper is not None and bool(self.tamper.latched)
        if (
            ctx.out_of_service.is_set()
            or self.service is not None
            or self.fleet_hold is not None
            or self.lockout.reason()
            or latched
        ):  # (a printer out of paper is the journey's to refuse: it journals the reason)
            log.info("code refused: out of service")
            hw.panel.show(PanelState.REFUSED)
            await asyncio.sleep(RESULT_HOLD_S)
            return
        async with self.busy:
            door = asyncio.create_task(self._door_watch(ctx, hw))
            try:
                await self._journey(ctx, text)
            except OSError as exc:  # a DeviceError, or the journal's disk (StorageError)
                # The journal holds every step; recovery settles the transaction.
                log.error("journey stopped by a device error (%s): out of service", exc)
                await ctx.journal.call(
                    ctx.journal.sync.log, "device.error", {"call": "journey", "error": str(exc)}
                )
                ctx.out_of_service.set()
                await self._lose_device(hw, getattr(exc, "device", ""))
            finally:
                door.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await door
            await self._door_closed_behind(ctx, hw)
        await self._drop_lost_validator(ctx, hw)
        await asyncio.sleep(RESULT_HOLD_S)

    async def _printer_status(self, ctx: Context) -> PrinterStatus:
        """The printer's live status; a printer that cannot answer is not ready. Logs
        transitions only ("printer: paper out" once, "printer: ready" once)."""
        try:
            status = await ctx.printer.status()
        except DeviceError as exc:
            status = PrinterStatus(online=False, paper=PaperState.OUT, error=True)
            log.debug("printer: status failed: %s", exc.message)
        word = "ready" if status.ready else f"not ready ({_printer_problem(status)})"
        self._printer_ready, self._paper = status.ready, str(status.paper)
        if word != self._printer_word:
            log.log(logging.INFO if status.ready else logging.WARNING, "printer: %s", word)
            await ctx.journal.call(ctx.journal.sync.log, "printer.status", {"status": word})
            self._printer_word = word
        return status

    async def _receipt_possible(self, ctx: Context) -> bool:
        """No journey that needs a receipt starts while the printer is not ready, unless the
        operator allows it and the customer presses confirm (nothing is printed then)."""
        if (await self._printer_status(ctx)).ready:
            return True
        if not self.config.printer.allow_no_receipt:
            return False
        ctx.panel.show(PanelState.REFUSED)  # red blink + long beep: "no receipt"; confirm?
        sources = Sources(panel=ctx.panel.next_event)
        try:
            while (got := await sources.next(NO_RECEIPT_CONFIRM_S)) is not None:
                if got[1] == PanelEvent.CONFIRM:
                    await ctx.journal.call(ctx.journal.sync.log, "receipt.declined")
                    return True
                if got[1] == PanelEvent.CANCEL:
                    return False
            return False
        finally:
            await sources.close()

    async def _journey(self, ctx: Context, text: str) -> None:
        c = self.config
        try:
            request = route(text, configs=c.providers)
        except PayloadError as exc:
            log.info("code refused: %s", exc)  # the message never holds the code
            await ctx.journal.call(ctx.journal.sync.log, "code.refused", {"reason": str(exc)})
            ctx.panel.show(PanelState.REFUSED)
            await self._code_refused(ctx)
            return
        if not await self._receipt_possible(ctx):
            log.info("code refused: the printer is not ready (%s)", self._printer_word)
            await ctx.journal.call(
                ctx.journal.sync.log, "code.refused", {"reason": "printer not ready"}
            )
            ctx.panel.show(PanelState.REFUSED)
            return
        module = starter(request.kind)
        if module is None or module.JOURNEY.provider not in ctx.clients:
            log.info("code refused: %s journeys are not configured on this kiosk", request.kind)
            await ctx.journal.call(
                ctx.journal.sync.log, "code.refused", {"reason": f"{request.kind}: not available"}
            )
            ctx.panel.show(PanelState.REFUSED)
            return
        ctx.panel.show(PanelState.READING)
        tx = await module.run(ctx, request)
        log.info("%s: ended %s", tx.ref, tx.state)
        # the provider or the kiosk said no, nothing moved (a good code left unapproved: no one
        # trying codes)
        if tx.state == "refused" and not (tx.reason or "").startswith("approval_"):
            await self._code_refused(ctx)

    async def _restore_lockout(self, journal: AsyncJournal) -> None:
        """A restart does not lift a lock on codes: its end is in the journal."""
        event = await journal.call(journal.sync.last_event, "codes.locked", within=2000)
        if event is not None:
            self.lockout.until = float(event["data"].get("until", 0))

    async def _code_refused(self, ctx: Context) -> None:
        until = self.lockout.refused()
        if until is not None:
            n = self.config.limits.refused_codes
            await ctx.journal.call(
                ctx.journal.sync.log, "codes.locked", {"until": until, "refused": n}
            )
            log.warning("%d codes refused in a row: %s", n, self.lockout.reason())

    async def _device_event(self, ctx: Context, event: object) -> None:
        """A validator event in the idle loop (no journey listens): see flows.device_events."""
        from kiosk.flows import device_events

        await device_events.handle(ctx, event)
        if isinstance(event, FaultCleared) and not self.validator_ok:
            ctx.out_of_service.set()

    async def _drop_lost_validator(self, ctx: Context, hw: Hardware) -> None:
        """A validator that stopped answering is closed; the idle loop opens it again, which
        brings its power-up report (a note returned, a note stacked) into recovery."""
        if ctx.fault is not FaultKind.DISCONNECTED or not self.validator_ok:
            return
        log.error("validator: lost; opening it again every %.0f s", REOPEN_S)
        self.validator_ok = False
        try:
            await hw.validator.close()
        except DeviceError as exc:
            log.warning("validator: close failed: %s", exc.message)

    async def _source_failed(self, ctx: Context, hw: Hardware, name: str, exc: DeviceError) -> None:
        """Waiting for a code or a validator event failed (a camera unplugged, a port gone):
        that device is out of service, journaled, closed and opened again by the idle tick."""
        log.error("%s: out of service (%s); opening it again", exc.device, exc.message)
        j = ctx.journal
        await j.call(j.sync.log, "device.error", {"call": f"{name} wait", "error": str(exc)})
        if name == "code" and self.reader_ok:
            self.reader_ok = False
            await _close(hw.reader, "code reader")
        elif name == "validator" and self.validator_ok:
            ctx.out_of_service.set()
            self.validator_ok = False
            await _close(hw.validator, "validator")

    async def _lose_device(self, hw: Hardware, device: str) -> None:
        """A journey stopped by ``device``'s error: that device is closed and opened again by
        the idle tick; so is the validator in every case (its power-up report, read again,
        brings a note in flight into recovery, which settles the open transaction)."""
        if device == PRINTER and self.printer_ok:
            self.printer_ok, self._printer_ready = False, False
            self._printer_word = "not ready (lost during a journey)"
            await _close(hw.printer, "printer")
        elif device == READER and self.reader_ok:
            self.reader_ok = False
            await _close(hw.reader, "code reader")
        if self.validator_ok:
            self.validator_ok = False
            await _close(hw.validator, "validator")

    async def _watch(self, ctx: Context, hw: Hardware) -> None:
        """Every ``WATCH_S``: a line sending garbage (:class:`~kiosk.devices.GarbleWatch`) puts
        its device out of service, journaled, and has it closed and opened again between
        customers, like a device that vanished."""
        watches = {name: GarbleWatch() for name in ("validator", PRINTER, READER)}
        while True:
            await asyncio.sleep(WATCH_S)
            for name, device in (
                ("validator", hw.validator),
                (PRINTER, hw.printer),
                (READER, hw.reader),
            ):
                if not isinstance(device, Guarded) or name in self._garbled:
                    continue
                bad = watches[name].check(device.line_errors)
                if bad is not None:
                    try:
                        await self._garbage(ctx, hw, name, bad)
                    except Exception:  # the watch goes on (the journal's error is logged)
                        log.exception("%s: out of service for garbage failed", name)

    async def _garbage(self, ctx: Context, hw: Hardware, name: str, bad: int) -> None:
        from kiosk.devices import GARBLED_WINDOW_S

        within = f"{bad} bad frames in {GARBLED_WINDOW_S:.0f} s"
        why = f"does not answer: its line sends garbage ({within})"
        log.error("%s: %s: out of service; opening it again", name, why)
        j = ctx.journal
        await j.call(
            j.sync.log,
            "device.garbled",
            {"device": name, "bad_frames": bad, "within_s": GARBLED_WINDOW_S},
        )
        self._garbled[name] = why
        if name == "validator":
            ctx.out_of_service.set()
        elif name == PRINTER:
            self._printer_ready, self._printer_word = False, f"not ready ({why})"
        if self._looping:  # between customers: a journey using the device ends first
            job = functools.partial(self._close_garbled, hw, name)
            self._jobs.put_nowait((job, asyncio.get_running_loop().create_future()))
        else:
            await self._close_garbled(hw, name)

    async def _close_garbled(self, hw: Hardware, name: str) -> None:
        """Close a device whose line sent garbage; the idle tick opens it again."""
        if name == "validator" and self.validator_ok:
            self.validator_ok = False
            await _close(hw.validator, "validator")
        elif name == PRINTER and self.printer_ok:
            self.printer_ok = False
            await _close(hw.printer, "printer")
        elif name == READER and self.reader_ok:
            self.reader_ok = False
            await _close(hw.reader, "code reader")

    async def _door_closed_behind(self, ctx: Context, hw: Hardware) -> None:
        """The door opened and closed again while a journey held the panel (and its events)."""
        if self.service == "door open" and not hw.panel.door_open:
            await self._idle_event(ctx, hw, "panel", PanelEvent.DOOR_CLOSED)

    async def _door_watch(self, ctx: Context, hw: Hardware) -> None:
        """While a journey holds the panel (it takes only its buttons' events), the door is
        looked at every ``WATCH_S``: opened, it is journaled then (with the transaction in
        progress) and the kiosk is in service mode for the fleet at once; the journey goes on
        to its end (its money rules hold), and no new one starts."""
        while True:
            await asyncio.sleep(WATCH_S)
            if hw.panel.door_open and self.service != "door open":
                try:
                    await self._enter_service(ctx, "opened during a journey")
                except Exception:  # the journey must not be stopped by its watcher
                    log.exception("door: journaling the opening failed")
                    self.service = "door open"

    async def _idle_tick(self, ctx: Context, hw: Hardware) -> None:
        memory.trim()
        if not self.printer_ok:
            await self._open_printer(hw)
        if not self.reader_ok:
            await self._open_reader(hw)
        if self.printer_ok:
            await self._printer_status(ctx)
        if ctx.dispenser is not None and self.validator_ok:
            try:
                self._levels = dict(await ctx.dispenser.levels())
            except DeviceError as exc:
                log.debug("recycler: levels unreadable: %s", exc.message)
                self._levels = None
        if not self.validator_ok:
            report = await self._open_validator(hw)
            if report is not None:
                self._garbled.pop("validator", None)
                from kiosk.flows.recovery import recover

                await recover(ctx, report)
                await self._ack_power_up(hw)
                ctx.fault = None
                ctx.out_of_service.clear()
        await self._probe_providers(ctx)

    async def _probe_providers(self, ctx: Context) -> None:
        """Probe each provider that is down (unreachable, or refusing our keys) with its cheap
        read; one that answers it accepts the kiosk's credentials again."""
        from kiosk.errors import ProviderError

        for name, client in ctx.clients.items():
            provider = providers()[name]
            if provider.probe and ctx.reachability.is_down(name):
                with contextlib.suppress(ProviderError):  # the probe's outcome is recorded
                    await provider.resolve("probe")(client, ctx.config)
                    self._auth(ctx.reachability, name, None)
        await self._journal_auth_news(ctx)

    def _auth(self, reach: Reachability, name: str, said: str | None) -> None:
        """``name`` refused the kiosk's credentials (``said``: its words) or accepted them
        again (None): logged at ERROR once per change, journaled from the idle loop."""
        said = said[:200] if said is not None else None
        if not reach.auth(name, said):
            return
        if said is not None:
            log.error(
                "%s refuses the kiosk's credentials (%s): its journeys are out of service until"
                " it accepts them; check the keys with: kiosk provider check %s",
                name,
                said,
                name,
            )
        else:
            log.warning("%s accepts the kiosk's credentials again: back in service", name)
        self._auth_news.append((name, said))

    async def _journal_auth_news(self, ctx: Context) -> None:
        j = ctx.journal
        while self._auth_news:
            name, said = self._auth_news.pop(0)
            if said is not None:
                await j.call(j.sync.log, "provider.auth_refused", {"provider": name, "said": said})
            else:
                await j.call(j.sync.log, "provider.auth_accepted", {"provider": name})

    async def _devices(self, ctx: Context, idle: bool) -> dict[str, str]:
        """Each device in words, for ``kiosk status`` (the recycler's levels only when idle)."""
        validator = getattr(ctx.validator, "name", "bill validator")
        if not self.validator_ok:
            lost = self._garbled.get("validator") or "not answering"
            v_state = f"{lost} (opened again every few seconds)"
        elif ctx.fault is not None:
            v_state = f"fault: {ctx.fault}"
        else:
            v_state = "ok"
        out = {
            "validator": f"{validator}: {v_state}",
            "printer": self._printer_word or "not checked yet",
            "door": "open" if ctx.panel.door_open else "closed",
        }
        if ctx.dispenser is not None:
            out["recycler"] = "busy (a journey runs)"
            if idle:
                from kiosk.flows.cash import money_levels

                try:
                    held = money_levels(ctx.config.currency.code, await ctx.dispenser.levels())
                    out["recycler"] = f"holds {held['total']}: " + ", ".join(held["lines"])
                except DeviceError as exc:
                    out["recycler"] = f"levels unreadable ({exc.message})"
        return out

    def _admin_handlers(self, ctx: Context) -> dict[str, Handler]:
        j = ctx.journal

        async def status(req: dict[str, Any]) -> dict[str, Any]:
            from kiosk import status as words
            from kiosk.limits import left_by_provider

            open_txs = await j.call(j.sync.transactions, open_only=True)
            owed = await j.call(j.sync.liability_totals)
            idle = not self.busy.locked()  # the devices are a journey's while it runs
            if idle and self.printer_ok:
                await self._printer_status(ctx)
            why = self.reasons(ctx, providers=True)
            cur, now_ms = self.config.currency.code, ctx.clock_ms
            return {
                "kiosk": self.config.kiosk_id,
                "state": "out_of_service" if why else ("ready" if idle else "busy"),
                "reasons": why,
                "service_mode": self.service,
                "tamper": [
                    {"kind": k, "since": v.get("at"), "detail": v.get("detail", "")}
                    for k, v in sorted((self.tamper.latched if self.tamper else {}).items())
                ],
                "devices": await self._devices(ctx, idle),
                "open_transactions": [t.ref for t in open_txs],
                "pending": words.pending(open_txs),
                "liabilities": words.liabilities(owed),
                "open_liabilities": sum(n for n, _ in owed.values()),
                "outbox_queued": len(await j.call(j.sync.outbox_rows, queued_only=True)),
                "providers": ctx.reachability.status(),
                "left_today": words.left_today(
                    await j.call(left_by_provider, j.sync, self.config.providers, cur, now_ms()),
                    cur,
                ),
                "waiting_approval": {r: str(m) for r, m in ctx.approvals.waiting().items()},
                "last_errors": words.last_errors(await j.call(j.sync.events, None, limit=500)),
            }

        async def payout(req: dict[str, Any]) -> dict[str, Any]:
            amount = req.get("amount")
            if type(amount) is not int or amount <= 0:
                raise ValueError("amount must be a positive integer of minor units")
            from drivers.essp.core import MAX_AMOUNT as MAX_PAYOUT_WIRE  # PAYOUT AMOUNT's 4 bytes

            if amount > MAX_PAYOUT_WIRE:
                raise ValueError(
                    f"amount {amount} does not fit the device's payout command"
                    f" (at most {MAX_PAYOUT_WIRE} minor units)"
                )
            if self.busy.locked():
                raise ValueError("a journey is running; try again when the kiosk is idle")
            if ctx.dispenser is not None:
                held = sum(v * n for v, n in (await ctx.dispenser.levels()).items())
                if amount > held:
                    raise ValueError(f"the recycler holds {held} minor units; cannot pay {amount}")
            from kiosk.flows.cashout import local_cashout

            tx = await self._between_customers(lambda: local_cashout(ctx, amount))
            return {
                "ref": tx.ref,
                "state": tx.state,
                "reason": tx.reason,
                "dispensed": tx.dispensed,
                "owed": tx.owed,
                "currency": tx.currency,
            }

        async def levels(req: dict[str, Any]) -> dict[str, Any]:
            from kiosk.flows import cash

            held = await self._between_customers(lambda: cash.levels(ctx))
            return cash.money_levels(ctx.config.currency.code, held)

        async def technician(req: dict[str, Any]) -> dict[str, Any]:
            from kiosk import technician as tech
            from kiosk.flows import cash

            who = str(req.get("technician") or "unknown")
            jobs: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
                "reprint": lambda: tech.reprint(ctx, str(req.get("ref", ""))),
                "test_page": lambda: tech.test_page(ctx),
                "refill": lambda: cash.refill(ctx, who),
                "collect": lambda: cash.collect(ctx, who),
            }
            return await self._between_customers(jobs[req["cmd"]])

        async def refund(req: dict[str, Any]) -> dict[str, Any]:
            from kiosk.providers.registry import journey_module

            ref, amount = req.get("ref"), req.get("amount")
            if not isinstance(ref, str) or not (amount is None or isinstance(amount, str)):
                raise ValueError('expected {"ref": "...", "amount": "12.50" or null}')
            tx = await j.call(j.sync.find, ref)
            if tx is None:
                raise ValueError(f"no transaction {ref}")
            module = journey_module(tx.journey)
            if module is None or not hasattr(module, "refund"):
                raise ValueError(f"{tx.ref} ({tx.journey}) has nothing the kiosk can refund")
            who = str(req.get("technician") or "technician")
            reply: dict[str, Any] = await self._between_customers(
                lambda: module.refund(ctx, tx, amount, who)
            )
            return reply

        async def tamper_clear(req: dict[str, Any]) -> dict[str, Any]:
            who = str(req.get("technician") or "unknown")

            async def clear() -> list[str]:
                return await self.tamper.clear(f"technician {who}") if self.tamper else []

            # in the idle loop, which shows the panel's new state as soon as it is done
            kinds = await self._between_customers(clear)
            return {"cleared": kinds, "reasons": self.reasons(ctx)}

        handlers: dict[str, Handler] = {
            "status": status,
            "tamper_clear": tamper_clear,
            "refund": refund,
            "payout": payout,
            "levels": levels,
            "reprint": technician,
            "test_page": technician,
            "collect": technician,
            "refill": technician,
        }
        return {name: _clean_errors(name, h) for name, h in handlers.items()}


async def _or_error(wait: Callable[[], Awaitable[T]]) -> T | DeviceError:
    """An event wait whose device error comes back as the event (the idle loop goes on)."""
    try:
        return await wait()
    except DeviceError as exc:
        return exc


async def _close(device: Any, name: str) -> None:
    try:
        await device.close()
    except DeviceError as exc:
        log.warning("%s: close failed: %s", name, exc.message)


async def _journal_stalled(journal: AsyncJournal) -> str | None:
    try:
        await asyncio.wait_for(journal.call(lambda: journal.sync.schema_version), JOURNAL_PROBE_S)
    except TimeoutError:
        return f"the journal has not answered for {JOURNAL_PROBE_S:.0f} s"
    return None


def _clean_errors(name: str, handler: Handler) -> Handler:
    """Any exception inside an admin handler becomes a clean error reply, never a traceback
    on the technician's screen nor a dead daemon."""

    async def wrapped(req: dict[str, Any]) -> dict[str, Any]:
        try:
            return await handler(req)
        except ValueError:
            raise  # the admin socket replies {"ok": false, "error": ...}
        except Exception as exc:
            log.exception("admin %s failed", name)
            raise ValueError(f"{name} failed: {type(exc).__name__}: {exc}") from exc

    return wrapped


def _printer_problem(status: PrinterStatus) -> str:
    if not status.online:
        return "offline"
    if status.cover_open:
        return "cover open"
    if status.paper is PaperState.OUT:
        return "paper out"
    return "error"
