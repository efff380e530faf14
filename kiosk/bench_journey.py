"""``kiosk bench journey [--journeys N]``: the kiosk's own time per journey.

Six journeys run ``N`` times each in this process with the real flows, journal (on disk,
fsync'd), provider clients (PayBy signing and verifying, Paysera's MAC, Rapyd's signature,
Cashii's Bearer key),
receipts and panel, against simulated devices with no delay and ``kiosk sandbox`` in its own
process (the providers are other machines):

- PayBy Cash Top Up: 150.00 AED, notes of 100 and 50, paid, receipt;
- Paysera cash-out: 100.00 AED from the kiosk envelope's amount (limits, cool-down and code
  checks, create, reserve with a fresh reservation code, confirm through the outbox), paid out
  by a delay-free stand-in recycler (:class:`InstantRecycler`), receipt;
- Paysera cash-in: notes of 100 and 50 to an ``EVP`` wallet, the green CONFIRM button ends,
  create with the allowance, reserve to the wallet, confirm, receipt;
- Rapyd cash-out: 100.00 AED from the envelope with an OTP and the phone number (limits and
  recycler checks, open session, withdraw through the outbox, close), paid out by the same
  recycler, receipt;
- Rapyd cash-in: the start code, notes of 100 and 50, CONFIRM, then the envelope with the OTP
  read from the camera (``Context.read_code``), open session, deposit through the outbox,
  close, receipt;
- Cashii cash-out: 100.00 AED from the envelope's amount (limit and recycler checks, create the
  payment, the pay slip with its QR, read the payment until ``paid``), paid out by the same
  recycler, receipt. The customer pays the payment in the app (the sandbox's ``pay`` hook) as
  soon as it exists, just before the kiosk's first read of it (:class:`PaysAtOnce`): that read
  says ``paid``, so the journey never sleeps its ``poll_interval_s``, as the others never wait
  for a device's delay; the CPU of the customer's hook call is the app's, not the kiosk's, and
  is left out of the kiosk time.

Each Rapyd OTP is made at the sandbox (the customer's app) just before its journey's clock
starts: it lives 30 s, too short to make them all beforehand.

"The kiosk's own time" is the CPU time this process used during the journey: every thread
(the journal's writer too), but neither the simulated devices' delays nor the network and the
providers' work, which are waits. Wall time is shown beside it. Target on the development
machine: p99 ≤ 50 ms of kiosk time per journey, for every journey (the exit status is 0 only
if each one meets it).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.validator.base import PayoutResult

TARGET_MS = 50.0
CASHOUT_MINOR = 10000  # AED 100.00 a Paysera cash-out pays
NOTES = (10000, 5000)  # what each cash-in journey inserts
RAPYD_PHONES = ("+971501110001", "+971501110002")  # the cash-out and the cash-in customers
CASHII_PAYER = "5550001110000001"  # the Cashii customer's account


class InstantRecycler:
    """A note recycler with no delay (the :class:`~drivers.validator.base.NoteDispenser`
    interface): pays any amount its levels make exactly, at once."""

    def __init__(self, levels: dict[int, int]) -> None:
        self.stored = dict(levels)

    async def levels(self) -> dict[int, int]:
        return dict(self.stored)

    def _plan(self, amount: int) -> dict[int, int] | None:
        plan, left = {}, amount
        for value in sorted(self.stored, reverse=True):
            take = min(self.stored[value], left // value)
            if take:
                plan[value] = take
            left -= take * value
        return plan if left == 0 else None

    async def can_pay(self, amount: int) -> bool:
        return self._plan(amount) is not None

    async def payout(self, amount: int) -> PayoutResult:
        plan = self._plan(amount) or {}
        for value, n in plan.items():
            self.stored[value] -= n
        paid = sum(v * n for v, n in plan.items())
        return PayoutResult(amount, paid, "" if paid == amount else "error")

    async def halt(self) -> None:
        return None

    async def smart_empty(self) -> dict[int, int]:
        moved, self.stored = self.stored, {}
        return moved


class PaysAtOnce:
    """Cashii's client as the kiosk uses it, with the customer beside it: just before the
    kiosk's first read of a payment, the customer pays it in the app (the sandbox's ``pay``
    hook, a blocking call: nothing of the kiosk runs meanwhile). ``app_cpu_s`` sums the CPU
    those calls took in this process, to be left out of the kiosk's time. ``account``: who
    pays."""

    def __init__(self, client: Any, pay: Callable[[str, str], None]) -> None:
        self.client, self.pay = client, pay
        self.account = ""
        self.paid: set[str] = set()
        self.app_cpu_s = 0.0

    async def create(self, *args: Any, **kwargs: Any) -> str:
        payment_id: str = await self.client.create(*args, **kwargs)
        return payment_id

    async def get(self, payment_id: str) -> Any:
        if payment_id not in self.paid:
            self.paid.add(payment_id)
            cpu = time.process_time()
            self.pay(payment_id, self.account)
            self.app_cpu_s += time.process_time() - cpu
        return await self.client.get(payment_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@dataclass
class Work:
    """What the customers bring, made at the sandbox before the clock runs: one item per run."""

    payby: list[str] = field(default_factory=list)  # tokenUrls
    cashout: list[str] = field(default_factory=list)  # reservation codes
    cashin: list[int] = field(default_factory=list)  # wallet ids
    rapyd_cashout: list[str] = field(default_factory=list)  # phone numbers (OTP made per run)
    rapyd_cashin: list[str] = field(default_factory=list)  # phone numbers (OTP made per run)
    cashii: list[str] = field(default_factory=list)  # the paying accounts


@dataclass(frozen=True)
class Journey:
    key: str
    title: str


JOURNEYS = (
    Journey("payby", "PayBy Cash Top Up (150.00, notes 100 + 50)"),
    Journey("cashout", "Paysera cash-out (100.00 from the envelope, recycler pays out)"),
    Journey("cashin", "Paysera cash-in (EVP wallet, notes 100 + 50, CONFIRM)"),
    Journey("rapyd_cashout", "Rapyd cash-out (100.00 by OTP from the envelope, recycler pays out)"),
    Journey("rapyd_cashin", "Rapyd cash-in (notes 100 + 50, CONFIRM, then the OTP code)"),
    Journey("cashii", "Cashii cash-out (100.00 from the envelope, pay slip, paid, recycler pays)"),
)


async def _run(
    url: str, files: Any, work: Work, root: Path
) -> dict[str, list[tuple[float, float]]]:
    import urllib.parse

    import httpx
    from gpiozero.pins.mock import MockFactory

    from drivers.panel import Panel, PanelState
    from drivers.printer.sim import SimPrinter
    from drivers.validator.sim import SimValidator
    from kiosk import config
    from kiosk.flows.cashii_cashout import CashiiCashOut
    from kiosk.flows.context import Context
    from kiosk.flows.payby_cashin import PayByCashIn
    from kiosk.flows.paysera_cashin import PayseraCashIn
    from kiosk.flows.paysera_cashout import PayseraCashOut
    from kiosk.flows.rapyd_cashin import RapydCashIn
    from kiosk.flows.rapyd_cashout import RapydCashOut
    from kiosk.journal import AsyncJournal, Tx
    from kiosk.money import Money
    from kiosk.providers.rapyd.codes import RapydCashIn as RapydStart
    from kiosk.providers.registry import connect_all

    cfg = config.load(files.config)
    secrets = config.load_secrets(cfg.secrets_file)
    journal = await AsyncJournal.open(
        cfg.journal_path, kiosk_id=cfg.kiosk_id, code_key=secrets.journal_key
    )
    validator = SimValidator(currency="AED", channels={1: 1000, 2: 5000, 3: 10000, 4: 20000})
    await validator.open()
    printer = SimPrinter(root / "receipts", columns=48)
    await printer.open()
    factory = MockFactory()
    panel = Panel(cfg.panel, pin_factory=factory)
    await panel.open()
    clients, connections = connect_all(cfg, secrets)
    payouts = len(work.cashout) + len(work.rapyd_cashout) + len(work.cashii) + 1
    recycler = InstantRecycler({5000: 10 * payouts})
    app = httpx.Client(timeout=10.0)  # the Cashii customer's app (blocking: see PaysAtOnce)

    def pay(payment_id: str, account: str) -> None:
        app.post(f"{url}/_sandbox/cashii/payments/{payment_id}/pay", json={"account": account})
        app_reply = app.get(f"{url}/_sandbox/cashii/payments/{payment_id}")
        if app_reply.json().get("status") != "paid":
            raise RuntimeError(f"Cashii payment {payment_id}: {app_reply.text}")

    cashii_app = PaysAtOnce(clients["cashii"], pay)
    clients["cashii"] = cashii_app
    codes: asyncio.Queue[str] = asyncio.Queue()  # what the camera reads (a second code)
    ctx = Context(
        cfg,
        journal,
        validator,
        printer,
        panel,
        clients=clients,
        dispenser=recycler,
        read_code=codes.get,
    )
    confirm = factory.pin(cfg.panel.confirm)
    hooks = httpx.AsyncClient(timeout=10.0)

    async def otp(phone: str) -> tuple[str, str]:
        """The customer's app makes an OTP (before the journey's clock starts)."""
        reply = await hooks.post(f"{url}/_sandbox/rapyd/otps", json={"phone_number": phone})
        reply.raise_for_status()
        return str(reply.json()["otp"]), phone

    async def until(check: Callable[[], bool]) -> None:
        while not check():  # noqa: ASYNC110 - the customer looks, as a person would
            await asyncio.sleep(0.002)  # the customer: a few µs of CPU per look

    def escrow_free() -> bool:
        return validator.state()["escrow"] is None

    def notes_held() -> int:
        return sum(validator.state()["cashbox"].values())

    async def payby(token_url: str) -> Tx:
        task = asyncio.create_task(PayByCashIn(ctx, token_url).run())
        await until(lambda: panel.state == PanelState.INSERT_NOTES or task.done())
        for value in NOTES:
            await until(escrow_free)
            validator.insert(value)
        return await task

    async def cashout(code: str) -> Tx:
        return await PayseraCashOut(ctx, code, Money.of(CASHOUT_MINOR, "AED")).run()

    async def notes_then_confirm(task: asyncio.Task[Tx]) -> None:
        await until(lambda: panel.state == PanelState.INSERT_NOTES or task.done())
        held = notes_held()
        for value in NOTES:
            await until(escrow_free)
            validator.insert(value)
        # Both notes stacked and credited (the device is acknowledged after the journal's
        # credit): the customer presses the green button.
        await until(
            lambda: notes_held() == held + len(NOTES) and validator.state()["stacked"] is None
        )
        confirm.drive_low()
        confirm.drive_high()

    async def cashin(wallet_id: int) -> Tx:
        task = asyncio.create_task(PayseraCashIn(ctx, wallet_id).run())
        await notes_then_confirm(task)
        return await task

    async def rapyd_cashout(creds: tuple[str, str]) -> Tx:
        code, phone = creds
        return await RapydCashOut(ctx, code, phone, Money.of(CASHOUT_MINOR, "AED")).run()

    async def rapyd_cashin(creds: tuple[str, str]) -> Tx:
        code, phone = creds
        task = asyncio.create_task(RapydCashIn(ctx, RapydStart()).run())
        await notes_then_confirm(task)
        # The notes are in: the panel asks for the code again (READY); the customer shows
        # the envelope with the OTP and the phone number.
        await until(lambda: panel.state == PanelState.READY or task.done())
        phone_q = urllib.parse.quote(phone)
        codes.put_nowait(f"kiosk:cashin?v=1&provider=rapyd&otp={code}&phone={phone_q}")
        return await task

    async def cashii(account: str) -> Tx:
        cashii_app.account = account
        return await CashiiCashOut(ctx, Money.of(CASHOUT_MINOR, "AED")).run()

    async def as_is(item: Any) -> Any:
        return item

    # key: (the journey, what each run brings, made into its argument before the clock runs)
    Play = Callable[[Any], Awaitable[Any]]
    plays: dict[str, tuple[Play, list[Any], Play]] = {
        "payby": (payby, work.payby, as_is),
        "cashout": (cashout, work.cashout, as_is),
        "cashin": (cashin, work.cashin, as_is),
        "rapyd_cashout": (rapyd_cashout, work.rapyd_cashout, otp),
        "rapyd_cashin": (rapyd_cashin, work.rapyd_cashin, otp),
        "cashii": (cashii, work.cashii, as_is),
    }
    out: dict[str, list[tuple[float, float]]] = {}
    try:
        for key, (play, items, bring) in plays.items():
            times = out.setdefault(key, [])
            for item in items:
                arg = await bring(item)
                app_cpu = cashii_app.app_cpu_s
                cpu, wall = time.process_time(), time.perf_counter()
                tx = await play(arg)
                if tx.state != "completed":
                    raise RuntimeError(f"{key}: {tx.ref} ended {tx.state} ({tx.reason})")
                kiosk = time.process_time() - cpu - (cashii_app.app_cpu_s - app_cpu)
                times.append((kiosk * 1000, (time.perf_counter() - wall) * 1000))
    finally:
        await hooks.aclose()
        app.close()  # noqa: ASYNC212 - the app's client, its calls are blocking by design
        for conn in connections:
            await conn.aclose()
        await validator.close()
        panel.close()
        await journal.close()
    return out


def _prepare(url: str, files: Any, runs: int) -> Work:
    """A store wallet that pays every PayBy order; a Paysera wallet that pays every cash-out,
    with a reservation code per run; an empty Paysera wallet per cash-in; a Rapyd wallet that
    pays every Rapyd cash-out and an empty one that takes every Rapyd cash-in (their OTPs are
    made per run, see :func:`_run`); a Cashii account that pays every Cashii cash-out."""
    import httpx

    from kiosk.simkiosk import STORE_PARTNER_ID

    work = Work()
    with httpx.Client(timeout=10.0) as hooks:

        def hook(path: str, body: dict[str, Any]) -> Any:
            reply = hooks.post(f"{url}/_sandbox/{path}", json=body)
            reply.raise_for_status()
            return reply.json()

        hook(
            "payby/merchants",
            {
                "partnerId": STORE_PARTNER_ID,
                "publicKeyPem": files.store_public_pem.decode(),
                "balance": {"currency": "AED", "amount": str(150 * (runs + 1))},
            },
        )
        work.payby = [
            hook("payby/orders", {"amount": "150.00", "currency": "AED"})["tokenUrl"]
            for _ in range(runs)
        ]
        payer = hook("paysera/wallets", {"currency": "AED", "balance": CASHOUT_MINOR * runs})
        work.cashout = [
            str(hook("paysera/codes", {"wallet_id": payer["wallet_id"]})["code"])
            for _ in range(runs)
        ]
        work.cashin = [
            int(hook("paysera/wallets", {"currency": "AED", "balance": 0})["wallet_id"])
            for _ in range(runs)
        ]
        for phone, balance in zip(RAPYD_PHONES, (CASHOUT_MINOR * runs, 0), strict=True):
            accounts = [{"currency": "AED", "balance": balance}]
            hook("rapyd/wallets", {"phone_number": phone, "accounts": accounts})
        work.rapyd_cashout = [RAPYD_PHONES[0]] * runs
        work.rapyd_cashin = [RAPYD_PHONES[1]] * runs
        account = {"account": CASHII_PAYER, "balance": CASHOUT_MINOR * runs, "currency": "AED"}
        hook("cashii/accounts", account)
        work.cashii = [CASHII_PAYER] * runs
    return work


def journey(*, journeys: int = 50) -> int:
    from kiosk.bench_outbox import _spawn_sandbox
    from kiosk.simkiosk import _register_at

    logging.getLogger().setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="kiosk-bench-journey-"))
    url, sandbox = _spawn_sandbox(root / "sandbox")
    try:
        files = _register_at(root / "kiosk", url, {})
        work = _prepare(url, files, journeys + 1)
        results = asyncio.run(_run(url, files, work, root))
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    return report({k: v[1:] for k, v in results.items()})  # each first run warms the imports


def report(results: dict[str, list[tuple[float, float]]]) -> int:
    """One block per journey (kiosk time, wall time); 0 only if every journey met the target."""

    def p(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    ok = True
    runs = min((len(v) for v in results.values()), default=0)
    print(f"kiosk bench journey: {runs} runs of each journey (target p99 <= {TARGET_MS:.0f} ms)")
    for j in JOURNEYS:
        times = results.get(j.key, [])
        if not times:
            print(f"  {j.title}: no runs")
            ok = False
            continue
        cpu = sorted(t[0] for t in times)
        wall = sorted(t[1] for t in times)
        met = p(cpu, 0.99) <= TARGET_MS
        ok = ok and met
        print(f"  {j.title}")
        print(
            f"    kiosk time   p50 {statistics.median(cpu):6.1f} ms   p99 {p(cpu, 0.99):6.1f} ms"
            f"   max {cpu[-1]:6.1f} ms   {'met' if met else 'MISSED'}"
        )
        print(
            f"    wall time    p50 {statistics.median(wall):6.1f} ms   p99 {p(wall, 0.99):6.1f} ms"
            f"   max {wall[-1]:6.1f} ms   (with the provider's and the devices' time)"
        )
    print("  target met by every journey" if ok else "  target MISSED")
    return 0 if ok else 1
