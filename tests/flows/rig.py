"""An in-process kiosk for flow tests: the real flow, journal, provider clients and sandbox
(over loopback), simulated validator and printer, the real panel on gpiozero's MockFactory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from gpiozero.pins.mock import MockFactory

from drivers.panel import Panel, PanelState
from drivers.printer.sim import SimPrinter
from drivers.validator.sim import SimValidator
from kiosk import config
from kiosk.flows.context import Context
from kiosk.journal import AsyncJournal, Tx
from kiosk.providers.cashii.client import CashiiClient
from kiosk.providers.payby.client import PayByClient, Signer, Verifier
from kiosk.providers.payby.config import read_public_key
from kiosk.providers.paysera.client import PayseraClient
from kiosk.providers.paysera.mac import MacSigner
from kiosk.providers.rapyd.client import RapydClient
from kiosk.providers.rapyd.signing import Signer as RapydSigner
from kiosk.reachability import Reachability
from kiosk.sandbox.server import Sandbox, start_sandbox
from kiosk.simkiosk import KioskFiles, sandbox_kiosk


@dataclass
class Rig:
    ctx: Context
    sandbox: Sandbox
    validator: SimValidator
    printer: SimPrinter
    panel: Panel
    factory: MockFactory
    files: KioskFiles
    sleeps: list[float]
    codes: asyncio.Queue[str]
    """What the camera reads next (a journey's second code)."""

    def hook(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.sandbox.url}/_sandbox/{path}", data, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode()

    def order(self, amount: str = "150.00") -> dict[str, Any]:
        return self.hook("payby/orders", {"amount": amount, "currency": "AED"})  # type: ignore[no-any-return]

    def balance(self) -> str:
        return str(
            self.hook(f"payby/balance/{self.ctx.config.providers['payby'].partner_id}")["balances"][
                "AED"
            ]
        )

    async def until(self, check: Callable[[], Any], timeout: float = 5.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (value := check()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("condition not met")
            await asyncio.sleep(0.01)
        return value

    async def until_state(self, state: PanelState) -> None:
        await self.until(lambda: self.panel.state == state)

    async def tx(self) -> Tx:
        j = self.ctx.journal
        (tx,) = await j.call(j.sync.transactions, limit=1)
        return tx

    async def _handled(self) -> int:
        j = self.ctx.journal
        events = await j.call(j.sync.events, None, limit=10_000)
        return sum(e["kind"] in ("stack.done", "stack.unknown", "note.returned") for e in events)

    async def insert(self, value: int, timeout: float = 5.0) -> None:
        """Insert a note and wait until the flow has dealt with it (credited or returned)."""
        before = await self._handled()
        self.validator.insert(value)
        deadline = asyncio.get_running_loop().time() + timeout
        while await self._handled() == before:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"note {value} not handled")
            await asyncio.sleep(0.01)

    def press(self, pin: int) -> None:
        self.factory.pin(pin).drive_low()
        self.factory.pin(pin).drive_high()


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    balance: str = "1000.00",
    inactivity_timeout_s: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Rig]:
    with start_sandbox(tmp_path / "sandbox") as sandbox:
        files = sandbox_kiosk(
            tmp_path / "kiosk", sandbox, balance=balance, inactivity_timeout_s=inactivity_timeout_s
        )
        cfg = config.load(files.config)
        secrets = config.load_secrets(cfg.secrets_file)
        journal = await AsyncJournal.open(
            cfg.journal_path, kiosk_id=cfg.kiosk_id, code_key=secrets.journal_key
        )
        factory = MockFactory()
        panel = Panel(pin_factory=factory)
        factory.pin(26).drive_low()
        await panel.open()
        validator = SimValidator(
            currency="AED",
            state_file=cfg.state_dir / "validator.json",
            channels={1: 1000, 2: 5000, 3: 10000, 4: 20000},
        )
        await validator.open()
        printer = SimPrinter(cfg.receipts_dir, columns=48)
        sleeps: list[float] = []

        async def fast_sleep(s: float) -> None:
            sleeps.append(s)
            await asyncio.sleep(0)

        timeout = httpx.Timeout(2.0)
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as http:
            p = cfg.providers["payby"]
            reach = Reachability(clock=lambda: sandbox.clock.now_ms() / 1000)
            client = PayByClient(
                http,
                on_reply=reach.recorder("payby"),
                base_url=p.base_url,
                partner_id=p.partner_id,
                timeout=timeout,
                clock=sandbox.clock.now_ms,  # "time passing" at the sandbox moves the kiosk too
                signer=Signer(secrets.providers["payby"].private_key),
                verifier=Verifier(read_public_key(p, cfg.file)),
            )
            q = cfg.providers["paysera"]
            paysera = PayseraClient(
                http,
                base_url=q.base_url,
                signer=MacSigner(
                    q.client_id,
                    secrets.providers["paysera"].mac_key,
                    clock=lambda: sandbox.clock.now_ms() // 1000,
                ),
                timeout=timeout,
                on_reply=reach.recorder("paysera"),
            )
            rp = cfg.providers["rapyd"]
            rapyd = RapydClient(
                http,
                base_url=rp.base_url,
                signer=RapydSigner(
                    rp.access_key,
                    secrets.providers["rapyd"].secret_key,
                    clock=lambda: sandbox.clock.now_ms() / 1000,
                ),
                timeout=timeout,
                on_reply=reach.recorder("rapyd"),
            )
            cashii = CashiiClient(
                http,
                base_url=cfg.providers["cashii"].base_url,
                api_key=secrets.providers["cashii"].api_key,
                timeout=timeout,
                on_reply=reach.recorder("cashii"),
            )
            codes: asyncio.Queue[str] = asyncio.Queue()
            ctx = Context(
                config=cfg,
                journal=journal,
                validator=validator,
                printer=printer,
                panel=panel,
                clients={"payby": client, "paysera": paysera, "rapyd": rapyd, "cashii": cashii},
                read_code=codes.get,
                sleep=fast_sleep,
                clock_ms=sandbox.clock.now_ms,
                reachability=reach,
            )
            try:
                yield Rig(ctx, sandbox, validator, printer, panel, factory, files, sleeps, codes)
            finally:
                await validator.close()
                panel.close()
                factory.reset()
                await journal.close()


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]
