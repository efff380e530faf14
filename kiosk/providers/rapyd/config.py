"""Rapyd's ``[rapyd]`` configuration and its secret, declared by the provider itself (the
config reader knows no provider: :mod:`kiosk.providers.registry` hands it this section).

Amounts are decimal strings in the kiosk's currency (``"200.00"``), kept as minor units.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from kiosk.config import Config, Secrets, Table, amount_in, int_in, seconds_in, url_in
from kiosk.errors import ConfigError
from kiosk.httpclient import client as http_client
from kiosk.money import Currency
from kiosk.providers.base import Connection, Section

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class RapydConfig:
    base_url: str = "https://pos.rapyd.net"
    """Sandbox: ``https://sandboxpos.rapyd.net``; plain http only on loopback."""
    access_key: str = ""
    """The POS-specific access key Rapyd issued (not the Payments API key)."""
    pos_id: str = ""
    """This kiosk's point-of-sale id, from Rapyd."""
    cashout_max: int = 0
    """The most one cash-out may pay (minor units); 0: no cash-out."""
    cashin_max: int = 0
    """The most one cash-in may take (minor units); 0: no cash-in."""
    cashout_day_max: int = 0
    """The most this provider's cash-outs may pay in one local calendar day, counting those
    completed, pending and in progress (minor units); 0: no daily limit."""
    cashin_day_max: int = 0
    """The most this provider's cash-ins may take in one local calendar day, counting those
    completed, pending and in progress (minor units); 0: no daily limit."""
    otp_wait_s: float = 90.0
    """Cash-in: how long the kiosk waits, once the notes are in, for the customer to show the
    code with a fresh OTP (the OTP itself lives 30 s)."""
    otp_attempts: int = 3
    """Cash-in: OTPs the customer may show before the cash is owed with a receipt."""
    call_wait_s: float = 30.0
    """How long the customer waits for a withdraw or deposit whose answer was lost before
    leaving with a PENDING receipt (the outbox goes on)."""
    timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class RapydSecrets:
    secret_key: str = field(repr=False)


def read(t: Table, cur: Currency) -> RapydConfig:
    d = RapydConfig()
    c = RapydConfig(
        base_url=url_in(t, "base_url", d.base_url),
        access_key=t.check(
            "access_key",
            t.get("access_key", str, d.access_key, "a string"),
            lambda s: 0 < len(s) <= 128 and s.isprintable() and " " not in s,
            "the POS access key Rapyd issued",
        ),
        pos_id=t.check(
            "pos_id",
            t.get("pos_id", str, d.pos_id, "a string"),
            lambda s: bool(_ID.fullmatch(s)),
            "the point-of-sale id Rapyd issued (letters, digits, - and _)",
        ),
        cashout_max=amount_in(t, "cashout_max", cur),
        cashin_max=amount_in(t, "cashin_max", cur),
        cashout_day_max=amount_in(t, "cashout_day_max", cur),
        cashin_day_max=amount_in(t, "cashin_day_max", cur),
        otp_wait_s=seconds_in(t, "otp_wait_s", d.otp_wait_s, 10, 300),
        otp_attempts=int_in(t, "otp_attempts", d.otp_attempts, 1, 5),
        call_wait_s=seconds_in(t, "call_wait_s", d.call_wait_s, 0, 120),
        timeout_s=seconds_in(t, "timeout_s", d.timeout_s, 0, 60),
    )
    t.done()
    return c


def read_secrets(t: Table) -> RapydSecrets:
    key = t.get("secret_key", str, "", "the secret key Rapyd issued")
    if len(key) < 16:
        raise t.error("secret_key", "the secret key Rapyd issued (16 characters or more)")
    t.done()
    return RapydSecrets(key)


def local_check(cfg: Config, secrets: Secrets) -> None:
    if "rapyd" in cfg.providers and "rapyd" not in secrets.providers:
        raise ConfigError(str(cfg.secrets_file), "rapyd.secret_key", "the secret key Rapyd issued")


SECTION = Section(read, read_secrets, local_check)


def connect(
    cfg: Config,
    secrets: Secrets,
    on_reply: Callable[[bool], None],
    on_clock: Callable[[float | None, bool], None] | None = None,
) -> Connection:
    """The Rapyd client of this kiosk (``cfg.providers["rapyd"]``), on its own HTTP client."""
    import httpx

    from kiosk.providers.rapyd.client import RapydClient
    from kiosk.providers.rapyd.signing import Signer

    p: RapydConfig = cfg.providers["rapyd"]
    s: RapydSecrets | None = secrets.providers.get("rapyd")
    if s is None:
        raise ConfigError(
            str(cfg.secrets_file), "rapyd.secret_key", "the secret key ([rapyd] is configured)"
        )
    timeout = httpx.Timeout(p.timeout_s, connect=min(5.0, p.timeout_s))
    http = http_client(timeout, cfg.tls.pins.get("rapyd"))
    client = RapydClient(
        http,
        base_url=p.base_url,
        signer=Signer(p.access_key, s.secret_key),
        timeout=timeout,
        on_reply=on_reply,
    )
    return Connection(http, client)
