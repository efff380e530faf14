"""Paysera's ``[paysera]`` configuration and its secret, declared by the provider itself (the
config reader knows no provider: :mod:`kiosk.providers.registry` hands it this section).

Amounts are decimal strings in the kiosk's currency (``"200.00"``), kept as minor units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kiosk.config import Config, Secrets, Table, amount_in, int_in, seconds_in, url_in
from kiosk.httpclient import client as http_client
from kiosk.money import Currency
from kiosk.providers.base import Connection, Section

MAX_RESERVE_FOR_S = 300  # the seed: short reservations


@dataclass(frozen=True, slots=True)
class PayseraConfig:
    base_url: str = "https://wallet.paysera.com/rest/v1"
    """Sandbox: ``https://wallet-sandbox.paysera.com/rest/v1``; plain http only on loopback."""
    client_id: str = ""
    """The MAC credentials' id (``mac_key`` is in the secrets file)."""
    reserve_for_s: int = 120
    """How long a transaction stays reserved, seconds (at most 300)."""
    allowance_id: int | None = None
    """The cash-in allowance Paysera provides (not public: ask Paysera). None: no cash-in."""
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
    approval_above: int = 0
    """Cash-outs above this wait for a technician's approval (the service key or the fleet's
    ``approve``) before Paysera is asked, as ``[limits] approval_above`` does for every
    provider (the lower one applies). 0: no threshold of Paysera's own."""
    code_attempts: int = 3
    """Refused codes a customer may try in a row before the kiosk stops asking for a while."""
    timeout_s: float = 15.0
    confirm_wait_s: float = 30.0
    """How long the customer waits for a confirm whose reply was lost before leaving with a
    PENDING receipt (the outbox goes on)."""
    server_time_path: str = "/server"
    """[INF] the documented no-authentication server-time call; its path is cut off in the
    stored docs."""


@dataclass(frozen=True, slots=True)
class PayseraSecrets:
    mac_key: str = field(repr=False)


def read(t: Table, cur: Currency) -> PayseraConfig:
    d = PayseraConfig()
    c = PayseraConfig(
        base_url=url_in(t, "base_url", d.base_url),
        client_id=t.check(
            "client_id",
            t.get("client_id", str, d.client_id, "a string"),
            lambda s: 0 < len(s) <= 64,
            "the MAC client id Paysera issued",
        ),
        reserve_for_s=t.check(
            "reserve_for_s",
            t.get("reserve_for_s", int, d.reserve_for_s, "seconds"),
            lambda v: 0 < v <= MAX_RESERVE_FOR_S,
            f"seconds, 1 to {MAX_RESERVE_FOR_S} (short reservations)",
        ),
        allowance_id=(
            t.check(
                "allowance_id",
                t.get("allowance_id", int, 0, "an integer"),
                lambda v: v > 0,  # and 64-bit (Table.get): it goes to Paysera in JSON
                "the positive allowance id Paysera provided",
            )
            if "allowance_id" in t.data
            else None
        ),
        cashout_max=amount_in(t, "cashout_max", cur),
        cashin_max=amount_in(t, "cashin_max", cur),
        cashout_day_max=amount_in(t, "cashout_day_max", cur),
        cashin_day_max=amount_in(t, "cashin_day_max", cur),
        approval_above=amount_in(t, "approval_above", cur),
        code_attempts=int_in(t, "code_attempts", d.code_attempts, 1, 10),
        timeout_s=seconds_in(t, "timeout_s", d.timeout_s, 0, 60),
        confirm_wait_s=seconds_in(t, "confirm_wait_s", d.confirm_wait_s, 0, 120),
        server_time_path=t.get("server_time_path", str, d.server_time_path, "a path"),
    )
    t.done()
    return c


def read_secrets(t: Table) -> PayseraSecrets:
    key = t.get("mac_key", str, "", "the 32-character MAC key")
    if len(key) < 16:
        raise t.error("mac_key", "the MAC key Paysera issued (32 characters)")
    t.done()
    return PayseraSecrets(key)


def local_check(cfg: Config, secrets: Secrets) -> None:
    if "paysera" in cfg.providers and "paysera" not in secrets.providers:
        from kiosk.errors import ConfigError

        raise ConfigError(str(cfg.secrets_file), "paysera.mac_key", "the MAC key Paysera issued")


SECTION = Section(read, read_secrets, local_check)


def connect(
    cfg: Config,
    secrets: Secrets,
    on_reply: Callable[[bool], None],
    on_clock: Callable[[float | None, bool], None] | None = None,
) -> Connection:
    """The Paysera client of this kiosk (``cfg.providers["paysera"]``), on its own HTTP client."""
    import httpx

    from kiosk.providers.paysera.client import PayseraClient
    from kiosk.providers.paysera.mac import MacSigner

    p: PayseraConfig = cfg.providers["paysera"]
    s: PayseraSecrets | None = secrets.providers.get("paysera")
    if s is None:
        from kiosk.errors import ConfigError

        raise ConfigError(
            str(cfg.secrets_file), "paysera.mac_key", "the MAC key ([paysera] is configured)"
        )
    timeout = httpx.Timeout(p.timeout_s, connect=min(5.0, p.timeout_s))
    http = http_client(timeout, cfg.tls.pins.get("paysera"))
    client = PayseraClient(
        http,
        base_url=p.base_url,
        signer=MacSigner(p.client_id, s.mac_key),
        timeout=timeout,
        on_reply=on_reply,
    )
    return Connection(http, client)
