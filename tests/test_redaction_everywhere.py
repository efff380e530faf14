"""Issue 16's acceptance: no secret and no customer code, of any kind, in the logs, the journal,
the printed receipts or the support bundle, after real journeys of every provider.

One simulated kiosk in process against the local sandbox (tests/flows/rig.py) runs a journey
for every code kind the router knows (a PayBy tokenUrl; PayBy's cash-out envelope and the
order QR it prints; a Paysera reservation code bare and in an envelope; a Paysera ``EVP``
cash-in code; a Rapyd OTP with its phone number in a cash-out and in a cash-in envelope; a
Cashii cash-out and the pay code its slip carries) with DEBUG logging captured twice: as the
daemon writes it (through :class:`~kiosk.redact.RedactingFilter`) and raw, before any filter,
for the kiosk's own loggers but the sandbox's (the kiosk never logs a code and relies on the
filter; the sandbox plays the provider, which knows its codes). Then
``kiosk support-bundle`` of the whole period. Every secret of the secrets file (PayBy's store
private key, Paysera's MAC key, Rapyd's secret key, Cashii's API key, the journal key) and the
device key, and every code, is then looked for, whole and as any substring of
:data:`WINDOW` characters (:data:`DIGIT_WINDOW` for values made only of digits or hex: eight
random digits turn up by chance among timestamps and hashes), in:

- the captured logs;
- every column of every row of every journal table (through a read-only connection), and the
  bytes of the database file and of its WAL while the kiosk has it open, then after it closed;
- every receipt the printer simulator wrote (the text of each);
- every member of the support bundle.

What is a code *by design* somewhere stays there, and only there: a pay slip shows the code
the customer pays with (PayBy's order QR, Cashii's payment id), the slip is queued in the
journal's ``receipts`` for a reprint, and Cashii's payment id is also the provider's reference
the kiosk settles its payment with (``transactions.provider_ref``, the create's effect and
event, the final receipt's reference). Those are the kiosk's own payment requests, not a
customer's credential; the logs and the bundle are searched for them too."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import tarfile
import tomllib
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivers.panel import PanelState
from kiosk import cli
from kiosk.flows.context import Context
from kiosk.journal import Tx, read_rows
from kiosk.money import Money
from kiosk.providers.registry import starter
from kiosk.redact import RedactingFilter
from kiosk.router import Request, route
from tests.flows.rig import Rig, rig, run
from tests.flows.test_cashout import Recycler

WINDOW = 8
DIGIT_WINDOW = 12
CONFIRM = 5
PHONE = "+971509876543"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # kiosk.cli's


RAW_DB = r"(open )?file journal\.db(-wal)?"
"""The database's own bytes hold every table's rows."""


@dataclass
class Forbidden:
    """Values that must appear nowhere, by name (for the failure message), but where a
    value's ``kept_in`` patterns (regular expressions of place names) allow it."""

    values: dict[str, str] = field(default_factory=dict)
    kept_in: dict[str, tuple[str, ...]] = field(default_factory=dict)
    whole: set[str] = field(default_factory=set)
    """Values looked for whole only (a URL: its host and path are no secret; its token is
    added on its own)."""

    def add(
        self, name: str, value: str, *, kept_in: tuple[str, ...] = (), whole: bool = False
    ) -> None:
        assert value, name
        self.values[name] = value
        if kept_in:
            self.kept_in[name] = kept_in
        if whole:
            self.whole.add(value)

    def at(self, place: str) -> dict[str, str]:
        """The values that must not be at ``place``."""
        return {
            name: value
            for name, value in self.values.items()
            if not any(re.fullmatch(p, place) for p in self.kept_in.get(name, ()))
        }


def _windows(value: str) -> set[str]:
    n = DIGIT_WINDOW if re.fullmatch(r"[0-9A-Fa-f+%B]+", value) else WINDOW
    if len(value) <= n:
        return {value}
    return {value[i : i + n] for i in range(len(value) - n + 1)}


def _needles(values: dict[str, str], whole: set[str]) -> dict[str, str]:
    """Each value's windows (and the whole value), to the name they come from."""
    out: dict[str, str] = {}
    for name, value in values.items():
        out[value] = name
        for w in () if value in whole else _windows(value):
            out.setdefault(w, name)
    return out


def leaks(text: str, values: dict[str, str], whole: set[str]) -> list[str]:
    """The names of the values that appear in ``text``, whole or by a window."""
    found = set()
    for needle, name in _needles(values, whole).items():
        if len(needle) < WINDOW:  # a 6-digit OTP: as a number of its own, not inside another
            if re.search(rf"(?<![0-9]){re.escape(needle)}(?![0-9])", text):
                found.add(name)
        elif needle in text:
            found.add(name)
    return sorted(found)


class RawRecords(logging.Handler):
    """Each record's text as the kiosk's code wrote it, before any filter (it runs first)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("kiosk", "drivers")) and not record.name.startswith(
            "kiosk.sandbox"  # the provider's side: it knows its codes (its log is filtered too)
        ):
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.lines.append(f"{record.name}: {text}")


class Written(logging.Handler):
    """The log as the daemon writes it: the format of ``kiosk.cli``, every record redacted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(FORMAT))
        self.addFilter(RedactingFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logs() -> Iterator[tuple[RawRecords, Written]]:
    root = logging.getLogger()
    raw, written = RawRecords(), Written()
    level = root.level
    root.handlers.insert(0, raw)  # before every other handler: the filter edits records
    root.addHandler(written)
    root.setLevel(logging.DEBUG)
    try:
        yield raw, written
    finally:
        root.removeHandler(raw)
        root.removeHandler(written)
        root.setLevel(level)


# --- the journeys ------------------------------------------------------------------------------


async def _start(ctx: Context, text: str, amount: Money | None = None) -> asyncio.Task[Tx]:
    """``text`` through the router to the journey it starts, as the daemon does."""
    request: Request = route(text, configs=ctx.config.providers)
    if amount is not None:  # a bare code: the customer's preset
        request = dataclasses.replace(request, amount=amount)  # type: ignore[type-var]
    module = starter(request.kind)
    assert module is not None, request.kind
    return asyncio.create_task(module.run(ctx, request))


async def _settle(r: Rig) -> None:
    j, fw = r.ctx.journal, r.ctx.outbox()
    for _ in range(20):
        rows = await j.call(j.sync.outbox_due, r.ctx.clock_ms() + 10**12)
        if not rows:
            return
        for row in rows:
            async with fw.hold(row["id"]):
                await fw.step(row["id"])


def _quick(r: Rig) -> None:
    cfg = r.ctx.config
    providers = {
        **cfg.providers,
        "payby": dataclasses.replace(cfg.providers["payby"], poll_interval_s=0.1),
        "cashii": dataclasses.replace(cfg.providers["cashii"], poll_interval_s=0.1),
    }
    r.ctx.config = dataclasses.replace(cfg, providers=providers)


async def _pending_ref(r: Rig, task: asyncio.Task[Tx]) -> str:
    """The provider's reference of the kiosk's own payment request, once it is waiting."""
    j = r.ctx.journal

    async def ref() -> str | None:
        (tx,) = await j.call(j.sync.transactions, limit=1) or [None]
        return tx.provider_ref if tx is not None and tx.state == "waiting" else None

    for _ in range(500):
        if (got := await ref()) is not None or task.done():
            return got or ""
        await asyncio.sleep(0.01)
    raise TimeoutError("no payment request")


def _ft(url: str) -> str:
    """A PayBy tokenUrl's token (the ``ft`` parameter): the secret part of the URL."""
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["ft"][0]


async def journeys(r: Rig, bad: Forbidden) -> list[Tx]:
    _quick(r)
    r.ctx.dispenser = Recycler({5000: 20, 10000: 20})
    done: list[Tx] = []

    # PayBy Cash Top Up: the tokenUrl
    order = r.order("150.00")
    token_url = order["tokenUrl"]
    bad.add("payby tokenUrl", token_url, whole=True)
    bad.add("payby tokenUrl ft", _ft(token_url))
    task = await _start(r.ctx, token_url)
    await r.until_state(PanelState.INSERT_NOTES)
    await r.insert(10000)
    await r.insert(5000)
    done.append(await task)

    # PayBy cash-out: an envelope without a code; the order's QR on the slip
    task = await _start(r.ctx, "kiosk:cashout?v=1&provider=payby&amount=100.00&currency=AED")
    order_no = await _pending_ref(r, task)
    qr = r.hook(f"payby/orders/{order_no}")
    qr_url = qr.get("tokenUrl") or qr.get("qrCode") or ""
    if qr_url:
        # the slip's QR (the customer pays it), and the slip queued for reprint
        on_slip = (r"receipt KSK-DEMO-000002-slip\.txt", "journal table receipts", RAW_DB)
        bad.add("payby cash-out QR", qr_url, kept_in=on_slip, whole=True)
        bad.add("payby cash-out QR ft", _ft(qr_url), kept_in=on_slip)
    r.hook(f"payby/orders/{order_no}/app-pay", {"payer": "100000777777"})
    done.append(await task)

    # Paysera: a bare reservation code (the customer's preset), one in an envelope, EVP
    wallet = r.hook("paysera/wallets", {"currency": "AED", "balance": 100000})
    for n in range(2):
        code = str(r.hook("paysera/codes", {"wallet_id": wallet["wallet_id"]})["code"])
        bad.add(f"paysera reservation code {n}", code)
        if n == 0:
            task = await _start(r.ctx, code, Money.of(5000, "AED"))
        else:
            env = f"kiosk:cashout?v=1&provider=paysera&code={code}&amount=50.00&currency=AED"
            task = await _start(r.ctx, env)
        done.append(await task)
    evp = wallet["evp"]
    bad.add("paysera EVP code", evp)
    bad.add("paysera EVP digits", evp[3:])
    task = await _start(r.ctx, evp)
    await r.until_state(PanelState.INSERT_NOTES)
    await r.insert(5000)
    r.press(CONFIRM)
    done.append(await task)

    # Rapyd: an OTP with the phone number, in a cash-out and in a cash-in envelope
    r.hook(
        "rapyd/wallets",
        {"phone_number": PHONE, "accounts": [{"currency": "AED", "balance": 100000}]},
    )
    bad.add("rapyd phone", PHONE)
    bad.add("rapyd phone digits", PHONE[1:])
    phone_q = urllib.parse.quote(PHONE, safe="")
    otp = str(r.hook("rapyd/otps", {"phone_number": PHONE})["otp"])
    bad.add("rapyd cash-out OTP", otp)
    task = await _start(
        r.ctx,
        f"kiosk:cashout?v=1&provider=rapyd&otp={otp}&phone={phone_q}&amount=100.00&currency=AED",
    )
    done.append(await task)
    task = await _start(r.ctx, "kiosk:cashin?v=1&provider=rapyd")
    await r.until_state(PanelState.INSERT_NOTES)
    await r.insert(5000)
    r.press(CONFIRM)
    await r.until(lambda: r.panel.state == PanelState.READY or task.done())
    otp = str(r.hook("rapyd/otps", {"phone_number": PHONE})["otp"])
    bad.add("rapyd cash-in OTP", otp)
    r.codes.put_nowait(f"kiosk:cashin?v=1&provider=rapyd&otp={otp}&phone={phone_q}")
    done.append(await task)

    # Cashii: the envelope; the pay code on the slip, paid in the app
    r.hook("cashii/accounts", {"account": "5550001112223334", "balance": 100000, "currency": "AED"})
    task = await _start(r.ctx, "kiosk:cashout?v=1&provider=cashii&amount=100.00&currency=AED")
    pid = await _pending_ref(r, task)
    # the slip's code, the final receipt's reference, and PayBy's order number kept to settle
    bad.add(
        "cashii pay code",
        pid,
        kept_in=(
            r"receipt KSK-DEMO-000008-(slip|cashout)\.txt",
            "journal table (transactions|events|effects|receipts)",
            RAW_DB,
        ),
    )
    r.hook(f"cashii/payments/{pid}/pay", {"account": "5550001112223334"})
    done.append(await task)

    await _settle(r)
    return done


# --- where to look -----------------------------------------------------------------------------


def secrets_of(r: Rig, bad: Forbidden) -> None:
    raw = tomllib.loads(r.ctx.config.secrets_file.read_text())
    bad.add("journal key", raw["journal_key"])
    bad.add("journal key bytes", bytes.fromhex(raw["journal_key"]).decode("latin-1"))
    body = [ln for ln in raw["payby"]["private_key"].splitlines() if ln and "-----" not in ln]
    bad.add("payby private key", "".join(body))
    for n, line in enumerate(body):
        bad.add(f"payby private key line {n}", line)
    bad.add("paysera mac key", raw["paysera"]["mac_key"])
    bad.add("rapyd secret key", raw["rapyd"]["secret_key"])
    bad.add("cashii api key", raw["cashii"]["api_key"])
    device = (r.files.root / "etc" / "device.key").read_text()
    dbody = [ln for ln in device.splitlines() if ln and "-----" not in ln]
    bad.add("device key", "".join(dbody))


def journal_rows(path: Path) -> dict[str, str]:
    """Every column of every row of every table, through the read-only opener, per table."""
    tables = [
        r["name"] for r in read_rows(path, "SELECT name FROM sqlite_master WHERE type='table'")
    ]
    assert {"transactions", "events", "outbox", "receipts"} <= set(tables), tables
    out = {}
    for t in tables:
        cells = [
            v.decode("latin-1") if isinstance(v, bytes) else str(v)
            for row in read_rows(path, f'SELECT * FROM "{t}"')
            for v in row
        ]
        out[f"journal table {t}"] = "\n".join(cells)
    return out


def file_bytes(*paths: Path) -> dict[str, str]:
    return {f"file {p.name}": p.read_bytes().decode("latin-1") for p in paths if p.exists()}


def bundle_members(path: Path) -> dict[str, str]:
    out = {}
    with tarfile.open(path, "r:gz") as tar:
        for info in tar.getmembers():
            f = tar.extractfile(info)
            assert f is not None
            out[f"bundle {info.name}"] = info.name + "\n" + f.read().decode("latin-1")
    return out


def test_the_search_finds_a_value_whole_by_a_window_and_a_short_code_alone() -> None:
    values = {"key": "Qm7rT2vX9kLp4sWz", "code": "7305918264401937265518302746", "otp": "730419"}
    assert leaks("..9kLp4sWz..", values, set()) == ["key"]  # 8 characters of it
    assert leaks("ref 401937265518 x", values, set()) == ["code"]  # 12 digits of it
    assert leaks("id 17304190 at 2026", values, set()) == []  # an OTP inside another number
    assert leaks("otp=730419&", values, set()) == ["otp"]
    assert leaks("Qm7rT2vX", values, {"Qm7rT2vX9kLp4sWz"}) == []  # whole only


# --- the test ----------------------------------------------------------------------------------


def test_no_secret_and_no_code_anywhere_after_every_journey(
    tmp_path: Path, logs: tuple[RawRecords, Written], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw_log, written_log = logs
    bad = Forbidden()
    places: dict[str, str] = {}

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            secrets_of(r, bad)
            txs = await journeys(r, bad)
            assert [t.state for t in txs] == ["completed"] * len(txs), [
                (t.journey, t.state, t.reason) for t in txs
            ]
            db = r.ctx.config.journal_path
            places.update(
                {f"open {k}": v for k, v in file_bytes(db, db.with_name(db.name + "-wal")).items()}
            )
            places.update(journal_rows(db))
            for p in sorted(r.ctx.config.receipts_dir.glob("*.txt")):
                places[f"receipt {p.name}"] = p.read_text()
            state = r.ctx.config.state_dir
        db = state / "journal.db"
        places.update(file_bytes(db, db.with_name(db.name + "-wal")))

    run(scenario)
    cfg_file = tmp_path / "kiosk" / "etc" / "kiosk.toml"
    state = tmp_path / "kiosk" / "state"
    # the daemon's log as the bundle finds it without journalctl (a log file in state_dir)
    (state / "kiosk.log").write_text("\n".join(written_log.lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("PATH", str(tmp_path))  # no journalctl
    out = tmp_path / "bundle.tar.gz"
    assert (
        cli.main(["support-bundle", "--config", str(cfg_file), "--since", "1h", "--out", str(out)])
        == 0
    )
    bundle = bundle_members(out)
    assert "bundle journal.json" in bundle and len(bundle["bundle journal.json"]) > 1000
    places.update(bundle)
    places["log as written"] = "\n".join(written_log.lines)
    places["log records raw"] = "\n".join(raw_log.lines)
    assert len(written_log.lines) > 50

    found = [
        f"{place}: {', '.join(names)}"
        for place, text in places.items()
        if (names := leaks(text, bad.at(place), bad.whole))
    ]
    assert not found, "\n".join(found) + "\n" + _context(places, bad.values)


def _context(places: dict[str, str], values: dict[str, str]) -> str:
    out = []
    for place, text in places.items():
        for name, v in values.items():
            i = text.find(v)
            if i >= 0:
                out.append(f"{place} / {name}: ...{text[max(0, i - 80) : i + len(v) + 40]!r}")
    return "\n".join(out[:30])
