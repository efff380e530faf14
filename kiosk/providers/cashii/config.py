"""Cashii's ``[cashii]`` configuration and its secret, declared by the provider itself (the
config reader knows no provider: :mod:`kiosk.providers.registry` hands it this section)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kiosk.config import Config, Secrets, Table, amount_in, int_in, seconds_in, url_in
from kiosk.errors import ConfigError
from kiosk.httpclient import client as http_client
from kiosk.money import Currency
from kiosk.providers.base import Connection, Section


@dataclass(frozen=True, slots=True)
class CashiiConfig:
    base_url: str = "https://api.cashii.app"
    """Plain http only on loopback (the sandbox). Cashii documents no separate sandbox host."""
    payment_page_url: str = "https://cashii.app/payment"
    """The page the slip's QR opens: ``<payment_page_url>?code=<id>``."""
    cashout_max: int = 0
    """The most one cash-out may pay (minor units); 0: no cash-out."""
    cashout_day_max: int = 0
    """The most this provider's cash-outs may pay in one local calendar day, counting those
    completed, pending and in progress (minor units); 0: no daily limit."""
    poll_interval_s: float = 2.0
    """How often the kiosk reads the payment while the customer pays it."""
    pay_timeout_s: float = 180.0
    """How long the customer has to pay the slip at the kiosk; then the slip is void."""
    watch_days: int = 30
    """[INF] after the slip is void, how long the kiosk keeps reading the payment in the
    background (a customer who pays it anyway is owed the cash). Cashii documents no expiry."""
    timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class CashiiSecrets:
    api_key: str = field(repr=False)


def read(t: Table, cur: Currency) -> CashiiConfig:
    d = CashiiConfig()
    c = CashiiConfig(
        base_url=url_in(t, "base_url", d.base_url),
        payment_page_url=url_in(t, "payment_page_url", d.payment_page_url),
        cashout_max=amount_in(t, "cashout_max", cur),
        cashout_day_max=amount_in(t, "cashout_day_max", cur),
        poll_interval_s=seconds_in(t, "poll_interval_s", d.poll_interval_s, 0.2, 30),
        pay_timeout_s=seconds_in(t, "pay_timeout_s", d.pay_timeout_s, 10, 900),
        watch_days=int_in(t, "watch_days", d.watch_days, 1, 365, "days"),
        timeout_s=seconds_in(t, "timeout_s", d.timeout_s, 0, 60),
    )
    t.done()
    return c


def read_secrets(t: Table) -> CashiiSecrets:
    key = t.get("api_key", str, "", "the API key of the commercial account")
    if len(key) < 16 or not key.isprintable() or " " in key:
        raise t.error("api_key", "the API key Cashii showed once (16 characters or more)")
    t.done()
    return CashiiSecrets(key)


def local_check(cfg: Config, secrets: Secrets) -> None:
    if "cashii" in cfg.providers and "cashii" not in secrets.providers:
        raise ConfigError(str(cfg.secrets_file), "cashii.api_key", "the API key Cashii issued")


SECTION = Section(read, read_secrets, local_check)


def connect(
    cfg: Config,
    secrets: Secrets,
    on_reply: Callable[[bool], None],
    on_clock: Callable[[float | None, bool], None] | None = None,
) -> Connection:
    import httpx

    from kiosk.providers.cashii.client import CashiiClient

    p: CashiiConfig = cfg.providers["cashii"]
    s: CashiiSecrets | None = secrets.providers.get("cashii")
    if s is None:
        raise ConfigError(
            str(cfg.secrets_file), "cashii.api_key", "the API key ([cashii] is configured)"
        )
    timeout = httpx.Timeout(p.timeout_s, connect=min(5.0, p.timeout_s))
    http = http_client(timeout, cfg.tls.pins.get("cashii"))
    client = CashiiClient(
        http, base_url=p.base_url, api_key=s.api_key, timeout=timeout, on_reply=on_reply
    )
    return Connection(http, client)
