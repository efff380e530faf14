"""Configuration: one TOML file parsed once into frozen typed objects, plus a secrets file.

Where it comes from: ``--config PATH``, else ``$KIOSK_CONFIG``, else ``/etc/kiosk/kiosk.toml``.
Every error is a :class:`ConfigError` naming the file, the key (dotted) and the expected form;
the CLI exits with status 2 on it. Unknown keys are errors too, so a typo never silently falls
back to a default.

The secrets file (``kiosk.secrets_file``) holds keys only; the kiosk refuses to read it when
group or others may read it (``chmod 600``). Secrets are never logged: :class:`Secrets` hides
its values from ``repr``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from drivers.panel import PanelPins
from drivers.serialport import LineSettings
from kiosk.errors import ConfigError, KioskError, MoneyError
from kiosk.money import Currency, Money, currency

DEFAULT_CONFIG = Path("/etc/kiosk/kiosk.toml")
SCANNER_LINE = LineSettings(9600, 8, "N", 1)  # 2D scanner modules' factory default
PRINTER_LINE = LineSettings(9600, 8, "N", 1)  # kiosk printers' common factory default
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,24}")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    driver: str = "sim"
    """``sim`` (simulated at the interface), ``essp`` (ITL NV200/NV9/NV4000, SMART Payout) or
    ``id003`` (JCM UBA/iVIZION/iPRO)."""
    port: str = "/dev/kiosk-validator"
    """pyserial port URL (udev-stable name, ``spy://`` for a hexdump of the wire)."""
    line: LineSettings | None = None
    """Line settings, e.g. ``"9600 8N2"``; default the protocol's (eSSP 8N2, ID-003 8E1)."""
    poll_interval_s: float = 0.2
    """Seconds between polls while idle (eSSP requires at most 1 s)."""
    reply_timeout_s: float = 1.0
    """Seconds to wait for a reply before sending the command again (eSSP manual: 1 s)."""
    retries: int | None = None
    """Sends of one command before the device is declared lost (default: the protocol's,
    eSSP 20, ID-003 3)."""
    encrypted: bool = True
    """eSSP: negotiate the encryption layer (required by SMART Payout for payouts)."""
    address: int = 0
    """eSSP: slave address (0 for validators and SMART Payout)."""
    payout: bool = False
    """The validator is a recycler that pays notes out (eSSP SMART Payout): cash-out on."""
    cashbox_capacity: int = 0
    """Notes the cashbox holds when full (NV200: 500 or 1,000 by model); 0: unknown. The fleet
    is told how full it is (an alert at 90 %)."""
    country_code: int | None = None
    """ID-003: JCM's country byte of ``kiosk.currency`` in the acceptor's CURRENCY ASSIGN
    table (0-255); unset: a single-currency table is taken as the kiosk's currency."""
    notes: tuple[int, ...] = (500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
    """Simulator only: note values of its channels, in minor units of ``kiosk.currency``."""
    escrow_timeout_s: float = 30.0
    """Simulator only: seconds a note waits in escrow before the device returns it."""
    stack_s: float = 0.0
    """Simulator only: seconds a note takes from escrow to the cashbox."""


@dataclass(frozen=True, slots=True)
class PrinterConfig:
    driver: str = "sim"
    """``escpos`` (an ESC/POS printer on a serial port) or ``sim`` (simulated: text and PNG)."""
    port: str = "/dev/kiosk-printer"
    """pyserial port URL; ``"sim"``: the ESC/POS simulator inside the daemon on a pty."""
    line: LineSettings = PRINTER_LINE
    """Line settings of the printer's serial port."""
    paper_mm: int = 80
    """58 or 80: 32 or 48 characters a line."""
    out_dir: Path | None = None
    """Simulator only: where receipts are rendered (text and PNG). Default state_dir/receipts."""
    templates_dir: Path | None = None
    """Receipt templates that replace the built-in ones (``<kind>.receipt``, README)."""
    allow_no_receipt: bool = False
    """With the printer not ready, a customer may still start a journey after pressing confirm
    (the kiosk then prints nothing; the receipt stays queued for a reprint)."""


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    driver: str = "replay"
    """``picamera2`` (the Pi camera), ``usb`` (a V4L2 camera through OpenCV), ``scanner`` (a
    serial 2D scanner module that sends decoded text) or ``replay`` (images dropped in
    ``path``: simulation, tests, the demo)."""
    path: Path | None = None
    """Replay only: directory watched for frames. Default state_dir/frames."""
    poll_s: float = 0.1
    decoder: str = "auto"
    """``auto`` (= ``kiosk``, the measured-best pipeline), ``zxing`` or ``pyzbar``."""
    budget_ms: float = 30.0
    """The kiosk decoder's time budget per frame, ms: about the camera's frame period on a
    Pi (30 fps = 33 ms); ``kiosk bench qr`` measures with 6 ms on a development machine."""
    device: str = "/dev/video0"
    """usb only: the V4L2 device."""
    port: str = "/dev/kiosk-scanner"
    """scanner only: pyserial port URL."""
    line: LineSettings = SCANNER_LINE
    """scanner only: line settings, e.g. ``"115200 8N1"``."""
    hold_s: float = 3.0
    """The same code is one scan until it leaves the view or this many seconds pass."""


@dataclass(frozen=True, slots=True)
class OfflineConfig:
    """Cash-in while the provider is unreachable: how much the kiosk may take and hold as
    *pending* (minor units of the kiosk's currency). 0 (the default) takes no cash offline.
    Cash is never paid out offline, whatever these say."""

    cashin_max_per_tx: int = 0
    cashin_max_outstanding: int = 0

    @property
    def cashin_allowed(self) -> bool:
        return self.cashin_max_per_tx > 0 and self.cashin_max_outstanding > 0


@dataclass(frozen=True, slots=True)
class CashoutConfig:
    """What a cash-out code that carries no amount (a bare reservation code) may pay."""

    presets: tuple[int, ...] = ()
    """The amounts the customer chooses from (minor units), in the order offered. Empty: a code
    without an amount is refused (the wallet app's kiosk envelope carries one)."""


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Lockouts against someone trying codes at the kiosk: after ``refused_codes`` refused
    codes within ``refused_window_s`` the kiosk takes no code for ``lockout_s`` (red on the
    panel, ``kiosk status`` says why and until when; journaled, so a restart keeps it)."""

    refused_codes: int = 5
    refused_window_s: float = 300.0
    lockout_s: float = 900.0
    approval_above: int = 0
    """A cash-out (or a cash-in whose amount is known before any note) above this (minor
    units) waits for a technician's approval before any money moves: the panel's service key
    or the fleet's signed ``approve``. 0: never (a provider's own ``approval_above``, where it
    has one, applies as well: the lower one wins)."""
    approval_timeout_s: float = 120.0
    """How long the customer waits for that approval, seconds; then nothing is done."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Optional certificate pinning (``[tls.pins]``): per provider name (and ``fleet``), a PEM
    file of the certificates the kiosk trusts for that endpoint (its CA, an intermediate or
    its own certificate) instead of the public CA store. Verification stays on and the host
    name is still checked; a certificate outside the file fails the handshake before a byte
    of the request is sent (:mod:`kiosk.httpclient`)."""

    pins: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """The fleet: signed heartbeats pushed to an endpoint, the same figures to a Prometheus
    Pushgateway, and the local endpoints (``/healthz``, ``/heartbeat``, ``/metrics``)."""

    url: str = ""
    """Where heartbeats are POSTed (https); "": the device identity's ``fleet_url``, if any."""
    interval_s: float = 60.0
    """Seconds between heartbeats (and Pushgateway pushes)."""
    timeout_s: float = 10.0
    """Seconds one push may take (it never delays a customer: it runs beside the journeys)."""
    pushgateway_url: str = ""
    """A Prometheus Pushgateway (grouped by kiosk id); "": none."""
    listen: str = "127.0.0.1"
    """Address of the local endpoints (loopback by default)."""
    port: int = 9464
    """Port of the local endpoints; 0: none."""
    identity_dir: Path = Path("/etc/kiosk")
    """Where ``kiosk provision`` wrote the device identity (``device.key``, ``identity.toml``)."""
    public_key_file: Path | None = None
    """The fleet's Ed25519 public key (PEM): commands in heartbeat replies signed by it are run;
    none: every command is refused."""


@dataclass(frozen=True, slots=True)
class Config:
    file: Path
    kiosk_id: str
    location: str
    currency: Currency
    state_dir: Path
    secrets_file: Path
    inactivity_timeout_s: float
    """Seconds without customer activity before a journey ends (notes in ⇒ owed)."""
    support_line: str
    simulate: bool
    validator: ValidatorConfig
    printer: PrinterConfig
    reader: ReaderConfig
    panel: PanelPins
    """BCM pin numbers of the GPIO panel (defaults in ``drivers.panel.PanelPins``)."""
    offline: OfflineConfig = OfflineConfig()
    cashout: CashoutConfig = CashoutConfig()
    fleet: FleetConfig = FleetConfig()
    limits: LimitsConfig = LimitsConfig()
    tls: TlsConfig = TlsConfig()
    providers: Mapping[str, Any] = field(default_factory=dict)
    """Each registered provider's section (:mod:`kiosk.providers.registry`), when present."""

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.db"

    @property
    def receipts_dir(self) -> Path:
        return self.printer.out_dir or self.state_dir / "receipts"

    @property
    def frames_dir(self) -> Path:
        return self.reader.path or self.state_dir / "frames"


@dataclass(frozen=True, slots=True)
class Secrets:
    journal_key: bytes = field(repr=False)
    """HMAC key for the keyed hashes of codes kept in the journal."""
    providers: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Each registered provider's secrets, when its table is present."""


class _Table:
    """A TOML table being read: typed getters that remember which keys were used."""

    def __init__(self, file: Path, prefix: str, data: object) -> None:
        self.file, self.prefix = str(file), prefix
        if not isinstance(data, dict):
            raise ConfigError(self.file, prefix or "(top level)", "a table")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, expected: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), expected)

    def get(self, name: str, kind: type[T], default: T, expected: str) -> T:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if kind in (int, float) and type(value) is int and not -(2**63) <= value < 2**63:
            # TOML integers are 64-bit; tomllib takes any size (10**400, too big for a float)
            raise self.error(name, f"{expected}, a 64-bit integer")
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise self.error(name, expected)
        if isinstance(value, float) and not math.isfinite(value):  # TOML: inf, -inf, nan
            raise self.error(name, f"{expected}, a finite number (not inf or nan)")
        return value

    def check(self, name: str, value: T, ok: Callable[[T], bool], expected: str) -> T:
        if not ok(value):
            raise self.error(name, expected)
        return value

    def sub(self, name: str) -> _Table:
        self.used.add(name)
        return _Table(Path(self.file), self.key(name), self.data.get(name, {}))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.error(unknown[0], f"a known key (one of: {known})")


def positive(x: float) -> bool:
    return x > 0


def _int_list(t: _Table, name: str, default: tuple[int, ...], expected: str) -> tuple[int, ...]:
    raw = t.get(name, list, list(default), expected)
    if not raw or not all(type(v) is int and v > 0 for v in raw):
        raise t.error(name, expected)
    return tuple(raw)


def str_list(t: _Table, name: str, default: tuple[str, ...], expected: str) -> tuple[str, ...]:
    raw = t.get(name, list, list(default), expected)
    if not raw or not all(isinstance(v, str) and v for v in raw):
        raise t.error(name, expected)
    return tuple(v.lower() for v in raw)


def path_in(t: _Table, name: str, default: Path, expected: str = "a path string") -> Path:
    return Path(t.get(name, str, str(default), expected))


_HOST_RE = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
URL_EXPECTED = (
    "an https:// URL (plain http only to localhost, 127.x.y.z or [::1]; no user@, no"
    " backslash, a numeric port)"
)


def is_loopback_host(host: str) -> bool:
    """``localhost``, an IPv4 address in 127.0.0.0/8 or ``[::1]``, exactly (not a name that
    starts with them: ``localhost.evil.example``, ``127.0.0.1.evil.example``)."""
    if host.lower() == "localhost":
        return True
    try:
        if host.startswith("[") and host.endswith("]"):
            return ipaddress.IPv6Address(host[1:-1]) == ipaddress.IPv6Address("::1")
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


def https_or_loopback(url: str) -> bool:
    """``url`` is an absolute ``https://`` URL, or ``http://`` to a loopback host (a sandbox,
    a test fleet). The URL is parsed, not matched by prefix; refused: whitespace and control
    characters, non-ASCII, a backslash (browsers and some clients read it as ``/``), userinfo
    (``user@host``), a port that is not a number from 1 to 65535, a host that is not a DNS
    name, an IPv4 address or a bracketed IPv6 address."""
    if not url.isascii() or not url.isprintable() or " " in url or "\\" in url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced [ in the host
        return False
    m = _HOST_RE.fullmatch(parts.netloc)
    if m is None:  # userinfo, an empty or non-numeric port, an empty host
        return False
    host, port = m["host"], m["port"]
    if port is not None and not 0 < int(port) <= 65535:
        return False
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    elif not all(_LABEL_RE.fullmatch(label) for label in host.split(".")):
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and is_loopback_host(host)


def url_in(t: _Table, name: str, default: str) -> str:
    """An https:// URL; plain http only on loopback (a sandbox): :func:`https_or_loopback`."""
    return t.check(name, t.get(name, str, default, "a URL"), https_or_loopback, URL_EXPECTED)


def seconds_in(t: _Table, name: str, default: float, low: float, high: float) -> float:
    """Seconds in ``(low, high]`` when ``low`` is 0, else ``[low, high]``; ``low`` and
    ``high`` are finite, and :meth:`_Table.get` refuses inf and nan before the range check."""
    assert math.isfinite(low) and math.isfinite(high), (low, high)
    if low == 0:
        ok, expected = (lambda v: 0 < v <= high), f"seconds, more than 0 and at most {high:g}"
    else:
        ok, expected = (lambda v: low <= v <= high), f"seconds, {low:g} to {high:g}"
    return t.check(name, t.get(name, float, default, "seconds"), ok, expected)


def int_in(t: _Table, name: str, default: int, low: int, high: int, unit: str = "") -> int:
    """An integer in ``[low, high]``."""
    expected = f"{unit + ', ' if unit else ''}{low} to {high}"
    return t.check(
        name, t.get(name, int, default, unit or "an integer"), lambda v: low <= v <= high, expected
    )


_LINE_RE = re.compile(r"(\d{3,6}) ([5-8])([NEO])([12])")


def _line(t: _Table) -> LineSettings | None:
    text = t.get("line", str, "", 'line settings like "9600 8N2"')
    if not text:
        return None
    m = _LINE_RE.fullmatch(text.strip())
    if m is None:
        raise t.error("line", 'line settings like "9600 8N2" (baud, bits, N/E/O, stop bits)')
    baud, bits, parity, stop = m.groups()
    return LineSettings(int(baud), int(bits), parity, int(stop))  # type: ignore[arg-type]


def _retries(t: _Table) -> int | None:
    if "retries" not in t.data:
        t.used.add("retries")
        return None
    return t.check(
        "retries",
        t.get("retries", int, 0, "a number of sends 1-50"),
        lambda n: 1 <= n <= 50,
        "a number of sends 1-50",
    )


def _validator(t: _Table) -> ValidatorConfig:
    d = ValidatorConfig()
    driver = t.check(
        "driver",
        t.get("driver", str, d.driver, '"sim", "essp" or "id003"'),
        lambda s: s in ("sim", "essp", "id003"),
        '"sim", "essp" or "id003"',
    )
    v = ValidatorConfig(
        driver=driver,
        port=t.get("port", str, d.port, "a pyserial port URL string"),
        line=_line(t),
        poll_interval_s=t.check(
            "poll_interval_s",
            t.get("poll_interval_s", float, d.poll_interval_s, "seconds"),
            lambda x: (0.2 if driver == "essp" else 0.01) <= x <= 1.0,
            "seconds between 0.2 and 1 for essp (GA973: 200..1000 ms between polls),"
            " between 0.01 and 1 otherwise",
        ),
        reply_timeout_s=t.check(
            "reply_timeout_s",
            t.get("reply_timeout_s", float, d.reply_timeout_s, "seconds"),
            lambda x: 0.05 <= x <= 10,
            "seconds between 0.05 and 10",
        ),
        retries=_retries(t),
        encrypted=t.get("encrypted", bool, d.encrypted, "true or false"),
        address=t.check(
            "address",
            t.get("address", int, d.address, "an eSSP address 0-125"),
            lambda a: 0 <= a <= 0x7D,
            "an eSSP address 0-125",
        ),
        payout=t.check(
            "payout",
            t.get("payout", bool, d.payout, "true or false"),
            lambda on: not on or driver == "essp",
            "false unless the driver is essp (ID-003 recyclers are not supported)",
        ),
        cashbox_capacity=int_in(t, "cashbox_capacity", 0, 0, 100_000, "notes (0: unknown)"),
        country_code=t.check(
            "country_code",
            t.get("country_code", int, d.country_code, "JCM's country byte, 0-255"),
            lambda n: n is None or (0 <= n <= 255 and driver == "id003"),
            'JCM\'s country byte 0-255, with driver = "id003" only',
        ),
        notes=_int_list(t, "notes", d.notes, "a non-empty list of positive minor-unit integers"),
        escrow_timeout_s=t.check(
            "escrow_timeout_s",
            t.get("escrow_timeout_s", float, d.escrow_timeout_s, "seconds"),
            positive,
            "a positive number of seconds",
        ),
        stack_s=t.check(
            "stack_s",
            t.get("stack_s", float, d.stack_s, "seconds"),
            lambda x: 0 <= x <= 10,
            "seconds between 0 and 10",
        ),
    )
    t.done()
    return v


def _printer(t: _Table) -> PrinterConfig:
    d = PrinterConfig()
    out = t.get("out_dir", str, "", "a path string")
    templates = t.get("templates_dir", str, "", "a directory path")
    p = PrinterConfig(
        driver=t.check(
            "driver",
            t.get("driver", str, d.driver, '"escpos" or "sim"'),
            lambda s: s in ("escpos", "sim"),
            '"escpos" or "sim"',
        ),
        port=t.get("port", str, d.port, "a pyserial port URL string"),
        line=_line(t) or d.line,
        templates_dir=Path(templates) if templates else None,
        allow_no_receipt=t.get("allow_no_receipt", bool, d.allow_no_receipt, "true or false"),
        paper_mm=t.check(
            "paper_mm",
            t.get("paper_mm", int, d.paper_mm, "58 or 80"),
            lambda n: n in (58, 80),
            "58 or 80",
        ),
        out_dir=Path(out) if out else None,
    )
    t.done()
    return p


def _reader(t: _Table) -> ReaderConfig:
    d = ReaderConfig()
    path = t.get("path", str, "", "a path string")
    drivers = ("picamera2", "usb", "scanner", "replay")
    r = ReaderConfig(
        driver=t.check(
            "driver",
            t.get("driver", str, d.driver, "a reader driver"),
            lambda s: s in drivers,
            '"picamera2", "usb", "scanner" or "replay"',
        ),
        path=Path(path) if path else None,
        poll_s=t.check(
            "poll_s",
            t.get("poll_s", float, d.poll_s, "seconds"),
            positive,
            "a positive number of seconds",
        ),
        decoder=t.check(
            "decoder",
            t.get("decoder", str, d.decoder, "a decoder name"),
            lambda s: s in ("auto", "kiosk", "zxing", "pyzbar"),
            '"auto", "kiosk", "zxing" or "pyzbar"',
        ),
        budget_ms=t.check(
            "budget_ms",
            t.get("budget_ms", float, d.budget_ms, "milliseconds"),
            lambda x: 1 <= x <= 1000,
            "milliseconds between 1 and 1000",
        ),
        device=t.get("device", str, d.device, "a V4L2 device path"),
        port=t.get("port", str, d.port, "a pyserial port URL string"),
        line=_line(t) or d.line,
        hold_s=t.check(
            "hold_s",
            t.get("hold_s", float, d.hold_s, "seconds"),
            positive,
            "a positive number of seconds",
        ),
    )
    t.done()
    return r


def _panel(t: _Table) -> PanelPins:
    d = PanelPins()
    pins: dict[str, int] = {}
    for name in (f.name for f in fields(PanelPins)):
        pins[name] = t.check(
            name,
            t.get(name, int, getattr(d, name), "a BCM pin number 0-27"),
            lambda n: 0 <= n <= 27,
            "a BCM pin number 0-27",
        )
    if len(set(pins.values())) != len(pins):
        raise t.error("(pins)", f"{len(pins)} distinct BCM pin numbers")
    t.done()
    return PanelPins(**pins)


def resolve_path(cli_value: str | None) -> Path:
    """``--config``, else ``$KIOSK_CONFIG``, else the default path."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("KIOSK_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def amount_in(t: _Table, name: str, cur: Currency) -> int:
    """An amount key: a decimal string in the kiosk's currency, as minor units (default 0)."""
    text = t.get(name, str, "0", f'an amount in {cur.code} as a string, e.g. "200.00"')
    try:
        minor = Money.from_decimal(text, cur.code).minor
    except MoneyError:
        raise t.error(name, f'an amount in {cur.code} as a string, e.g. "200.00"') from None
    if minor < 0:
        raise t.error(name, "an amount of 0 or more")
    return minor


Table = _Table


def _offline(t: _Table, cur: Currency) -> OfflineConfig:
    c = OfflineConfig(
        cashin_max_per_tx=amount_in(t, "cashin_max_per_tx", cur),
        cashin_max_outstanding=amount_in(t, "cashin_max_outstanding", cur),
    )
    t.done()
    return c


def _limits(t: _Table, cur: Currency) -> LimitsConfig:
    c = LimitsConfig(
        refused_codes=int_in(t, "refused_codes", 5, 1, 1000, "codes"),
        refused_window_s=seconds_in(t, "refused_window_s", 300.0, 1, 86_400),
        lockout_s=seconds_in(t, "lockout_s", 900.0, 0, 86_400),
        approval_above=amount_in(t, "approval_above", cur),
        approval_timeout_s=seconds_in(t, "approval_timeout_s", 120.0, 10, 900),
    )
    t.done()
    return c


def _optional_url(t: _Table, name: str) -> str:
    """An https:// URL (http only on loopback), or "" for none."""
    return url_in(t, name, "") if t.data.get(name, "") != "" else t.get(name, str, "", "a URL")


def _fleet(t: _Table) -> FleetConfig:
    key = t.get("public_key_file", str, "", "a path string")
    c = FleetConfig(
        url=_optional_url(t, "url"),
        interval_s=seconds_in(t, "interval_s", 60.0, 5, 3600),
        timeout_s=seconds_in(t, "timeout_s", 10.0, 0, 60),
        pushgateway_url=_optional_url(t, "pushgateway_url"),
        listen=t.get("listen", str, "127.0.0.1", "an IP address"),
        port=int_in(t, "port", 9464, 0, 65535, "a TCP port (0: none)"),
        identity_dir=path_in(t, "identity_dir", Path("/etc/kiosk")),
        public_key_file=Path(key) if key else None,
    )
    t.done()
    return c


def _tls(t: _Table) -> TlsConfig:
    from kiosk.providers.registry import NAMES

    table = t.sub("pins")
    names = (*NAMES, "fleet")
    for name in table.data:
        if name not in names:
            raise table.error(name, f"a provider name or fleet (one of: {', '.join(names)})")
    pins = {name: path_in(table, name, Path(), "the path of a PEM file") for name in table.data}
    table.done()
    t.done()
    return TlsConfig(pins)


def check_tls_pins(cfg: Config) -> None:
    """Each pinned file loads as a trust store (PEM certificates), or ConfigError naming it."""
    from kiosk.httpclient import pinned_context

    for name, path in cfg.tls.pins.items():
        try:
            pinned_context(path)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no certificate"
            raise ConfigError(
                str(cfg.file),
                f"tls.pins.{name}",
                f"a readable PEM file of certificates at {path} ({reason})",
            ) from None


def _cashout(t: _Table, cur: Currency) -> CashoutConfig:
    expected = f'a list of up to 9 amounts in {cur.code} as strings, e.g. ["20.00", "50.00"]'
    texts = t.get("presets", list, [], expected)
    presets: list[int] = []
    for text in texts:
        try:
            minor = Money.from_decimal(text, cur.code).minor if isinstance(text, str) else 0
        except MoneyError:
            minor = 0
        if minor <= 0:
            raise t.error("presets", expected)
        presets.append(minor)
    if len(presets) > 9 or len(set(presets)) != len(presets):
        raise t.error("presets", expected + ", each once")
    t.done()
    return CashoutConfig(tuple(presets))


def load(path: Path, *, simulate: bool = False) -> Config:
    """Read and check ``path``; ``simulate`` forces simulated hardware (``run --simulate``)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            str(path), "", "an existing TOML file (see README: Configuration)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"a readable UTF-8 file ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"valid TOML ({exc})") from exc

    top = _Table(path, "", raw)
    k = top.sub("kiosk")
    kiosk_id = k.check(
        "id",
        k.get("id", str, "", "a string"),
        lambda s: _ID_RE.fullmatch(s) is not None,
        "1-24 characters of A-Z a-z 0-9 _ -",
    )
    code = k.get("currency", str, "AED", "a currency code")
    try:
        cur = currency(code)
    except MoneyError:
        raise k.error("currency", "one of AED, BUSD, EUR, GBP, SYP, TRY, USD") from None
    state_dir = path_in(k, "state_dir", Path("/var/lib/kiosk"))
    location = k.get("location", str, "", "a string")
    secrets_file = path_in(k, "secrets_file", path.parent / "secrets.toml")
    inactivity = k.check(
        "inactivity_timeout_s",
        k.get("inactivity_timeout_s", float, 60.0, "seconds"),
        positive,
        "a positive number of seconds",
    )
    support_line = k.get("support_line", str, "", "a string")
    k.done()

    hw = top.sub("hardware")
    sim = hw.get("simulate", bool, False, "true or false") or simulate
    validator = _validator(hw.sub("validator"))
    printer = _printer(hw.sub("printer"))
    reader = _reader(hw.sub("reader"))
    panel = _panel(hw.sub("panel"))
    hw.done()
    offline = _offline(top.sub("offline"), cur)
    cashout = _cashout(top.sub("cashout"), cur)
    fleet = _fleet(top.sub("fleet"))
    limits = _limits(top.sub("limits"), cur)
    tls = _tls(top.sub("tls"))
    from kiosk.providers.registry import sections  # the providers declare their own tables

    providers = {
        name: section.read(top.sub(name), cur)
        for name, section in sections().items()
        if name in raw
    }
    top.done()
    return Config(
        file=path,
        simulate=sim,
        validator=validator,
        printer=printer,
        reader=reader,
        panel=panel,
        offline=offline,
        cashout=cashout,
        fleet=fleet,
        limits=limits,
        tls=tls,
        providers=providers,
        kiosk_id=kiosk_id,
        location=location,
        currency=cur,
        state_dir=state_dir,
        secrets_file=secrets_file,
        inactivity_timeout_s=inactivity,
        support_line=support_line,
    )


def check_fleet_key(cfg: Config) -> None:
    """The fleet's public key file, when ``fleet.public_key_file`` is set, read and parsed as
    the daemon will (:func:`kiosk.fleet.commands.load_public_key`); ConfigError naming it.

    Not done by :func:`load`: the key file is not part of the config file (a bundle's config
    is checked before the file is written, and ``kiosk journal`` or ``support-bundle`` must
    work with a broken key); ``kiosk config check`` runs it through :func:`check_key_files`."""
    if cfg.fleet.public_key_file is None:
        return
    from kiosk.fleet.commands import load_public_key

    try:
        load_public_key(cfg.fleet.public_key_file)
    except KioskError as exc:
        raise ConfigError(
            str(cfg.file),
            "fleet.public_key_file",
            f"the fleet's Ed25519 public key file (PEM, or its raw 32 bytes in base64): {exc}"
            " (or leave fleet.public_key_file unset: every fleet command is then refused)",
        ) from None


def check_key_files(cfg: Config, secrets: Secrets) -> None:
    """Every key the config names, parsed with cryptography as it will be used, and its file's
    mode and owner: the secrets file and the device key (``fleet.identity_dir/device.key``,
    when provisioned) private to the service user (:func:`check_private_file`), the public
    keys writable by their owner only (:func:`check_public_file`); the fleet's
    public key (:func:`check_fleet_key`) and each configured provider's keys (its section's
    ``local_check``: PayBy's public key file and the store's private key). ConfigError naming
    the file, the key and what to do: a key that only looks like PEM is found here, not by the
    daemon after it opened the devices. The one call for ``kiosk config check``, ``kiosk
    provision``'s check and ``kiosk run`` before it starts the daemon (its second half is the
    provider loop those run today)."""
    check_private_file(cfg.secrets_file, "the secrets file")
    from kiosk.identity import KEY_FILE

    device_key = cfg.fleet.identity_dir / KEY_FILE
    if device_key.exists():  # none before ``kiosk provision``: the fleet part then warns
        check_private_file(device_key, "the device key")
    if cfg.fleet.public_key_file is not None:
        check_public_file(
            cfg.fleet.public_key_file, "the fleet's public key", cfg.file, "fleet.public_key_file"
        )
    check_fleet_key(cfg)
    check_tls_pins(cfg)
    from kiosk.providers.registry import sections

    for name, section in sections().items():
        if name in cfg.providers and section.local_check is not None:
            section.local_check(cfg, secrets)


_GROUP_OTHERS = stat.S_IRWXG | stat.S_IRWXO
_WRITE_GROUP_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def _who(mode: int) -> str:
    """Who besides the owner may read or write, in words: ``readable by the group, …``."""
    parts = []
    for whom, r, w in (
        ("the group", stat.S_IRGRP, stat.S_IWGRP),
        ("others", stat.S_IROTH, stat.S_IWOTH),
    ):
        can = [word for bit, word in ((r, "readable"), (w, "writable")) if mode & bit]
        if not can and mode & (stat.S_IXGRP if whom == "the group" else stat.S_IXOTH):
            can = ["executable"]
        if can:
            parts.append(f"{' and '.join(can)} by {whom}")
    return ", ".join(parts)


def _service_user() -> str:
    import pwd

    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _check_owner(path: Path, st: os.stat_result, what: str, file: str, key: str) -> None:
    """Owned by the user the kiosk runs as, or root: another user could read or replace it."""
    if st.st_uid in (0, os.geteuid()):
        return
    import pwd

    try:
        owner = f"{pwd.getpwuid(st.st_uid).pw_name} (uid {st.st_uid})"
    except KeyError:
        owner = f"uid {st.st_uid}"
    me = _service_user()
    raise ConfigError(
        file,
        key,
        f"{what} {path} owned by the kiosk's service user ({me}) or root (it is owned by"
        f" {owner}: run chown {me} {path}, or run the kiosk as that user)",
    )


def check_private_file(path: Path, what: str, file: str = "", key: str = "") -> None:
    """``path`` (the secrets file, a private key) readable and writable by its owner only
    (mode 600 or 400) and owned by the service user or root; ConfigError naming the file, its
    mode and the fix (``chmod 600``, ``chown``). ``file``/``key``: where the config names it
    (default: the file itself)."""
    file = file or str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(file, key, f"{what} {path} to exist (mode 600)") from None
    except OSError as exc:
        raise ConfigError(file, key, f"{what} {path} readable ({exc.strerror})") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & _GROUP_OTHERS:
        raise ConfigError(
            file,
            key,
            f"{what} {path} readable and writable by its owner only, mode 600 (it is mode"
            f" {mode:03o}, {_who(mode)}: run chmod 600 {path})",
        )
    _check_owner(path, st, what, file, key)


def check_public_file(path: Path, what: str, file: Path | str, key: str) -> None:
    """A public key file: anyone may read it, but only its owner (the service user or root)
    may write it: whoever replaces PayBy's or the fleet's public key can forge their replies
    or commands. ConfigError naming the file, its mode and the fix (``chmod 644``). A file
    that is not there is left to the key's own check."""
    try:
        st = path.stat()
    except OSError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & _WRITE_GROUP_OTHERS:
        raise ConfigError(
            str(file),
            key,
            f"{what} {path} writable by its owner only, mode 644 (it is mode {mode:03o},"
            f" {_who(mode & _WRITE_GROUP_OTHERS)}: run chmod 644 {path})",
        )
    _check_owner(path, st, what, str(file), key)


def load_secrets(path: Path) -> Secrets:
    """Read the secrets file, refusing one that group or others may read or write, or that
    another user than the service user or root owns (:func:`check_private_file`)."""
    check_private_file(path, "the secrets file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), "", f"a readable TOML file ({type(exc).__name__})") from None
    top = _Table(path, "", raw)
    key_hex = top.get("journal_key", str, "", "64 hex characters")
    try:
        journal_key = bytes.fromhex(key_hex)
    except ValueError:
        journal_key = b""
    if len(journal_key) < 32:
        raise top.error("journal_key", "at least 64 hex characters (32 random bytes)")
    from kiosk.providers.registry import sections

    providers = {
        name: section.read_secrets(top.sub(name))
        for name, section in sections().items()
        if name in raw
    }
    top.done()
    return Secrets(journal_key=journal_key, providers=providers)
