"""PayBy's ``[payby]`` configuration and its secret (the store's private key), declared by the
provider (the config reader knows no provider: :mod:`kiosk.providers.registry` hands it this
section), and the client built from them (:func:`connect`)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.config import (
    Config,
    Secrets,
    Table,
    amount_in,
    check_public_file,
    path_in,
    seconds_in,
    str_list,
    url_in,
)
from kiosk.errors import ConfigError
from kiosk.httpclient import client as http_client
from kiosk.money import Currency
from kiosk.providers.base import Connection, Section


@dataclass(frozen=True, slots=True)
class PayByConfig:
    base_url: str = "https://api.payby.com/sgs/api"
    partner_id: str = ""
    """The store's PayBy merchant id (``Partner-Id``), at most 12 characters."""
    public_key_file: Path = Path("/etc/kiosk/payby_public.pem")
    """PayBy's public key (from the merchant portal) that verifies every response."""
    token_hosts: tuple[str, ...] = ("checkout.payby.com",)
    """Hosts a scanned tokenUrl may point at (https only)."""
    resolve_token_path: str = "/acquire2/cashTopUp/resolveToken"  # noqa: S105 - a path
    """NOT in PayBy's public API: how the store reads the order behind a tokenUrl."""
    pay_order_path: str = "/acquire2/cashTopUp/payOrder"
    """NOT in PayBy's public API: how the store pays that order from its wallet."""
    timeout_s: float = 15.0
    """Per-request timeout (connect, read, write), seconds."""
    pay_wait_s: float = 30.0
    """How long a customer waits for PayBy to confirm the payment before the kiosk prints a
    PENDING receipt and the outbox goes on in the background, seconds."""
    clock_margin_s: float = 120.0
    """Allowance for the kiosk's clock against PayBy's when deciding that a pay request can no
    longer be applied (PayBy refuses a requestTime older than 15 minutes), seconds."""
    cashout_max: int = 0
    """Cash-out with a kiosk order (DYNQR): the most one may pay (minor units); 0: none."""
    cashout_day_max: int = 0
    """The most this provider's cash-outs may pay in one local calendar day, counting those
    completed, pending and in progress (minor units); 0: no daily limit."""
    cashin_day_max: int = 0
    """The most this provider's cash-ins may take in one local calendar day, counting those
    completed, pending and in progress (minor units); 0: no daily limit."""
    cashout_pay_timeout_s: float = 180.0
    """How long the customer has to pay the kiosk's order in the PayBy app; then it is
    cancelled (or refunded, if it was paid meanwhile)."""
    poll_interval_s: float = 2.0
    """How often the kiosk reads its order while the customer pays it."""


@dataclass(frozen=True, slots=True)
class PayBySecrets:
    private_key: bytes = field(repr=False)
    """The store's RSA private key (PEM) that signs PayBy requests."""


def of(cfg: Config) -> PayByConfig | None:
    """This kiosk's ``[payby]``, ``None`` when the table is absent (the journey is refused)."""
    found: PayByConfig | None = cfg.providers.get("payby")
    return found


def read(t: Table, cur: Currency) -> PayByConfig:
    d = PayByConfig()
    c = PayByConfig(
        base_url=url_in(t, "base_url", d.base_url),
        partner_id=t.check(
            "partner_id",
            t.get("partner_id", str, d.partner_id, "a string"),
            lambda s: 0 < len(s) <= 12,
            "the store's PayBy merchant id (1-12 chars)",
        ),
        public_key_file=path_in(t, "public_key_file", d.public_key_file),
        token_hosts=str_list(t, "token_hosts", d.token_hosts, "a non-empty list of host names"),
        resolve_token_path=t.get("resolve_token_path", str, d.resolve_token_path, "a path"),
        pay_order_path=t.get("pay_order_path", str, d.pay_order_path, "a path"),
        timeout_s=seconds_in(t, "timeout_s", d.timeout_s, 0, 60),  # as the other providers
        pay_wait_s=t.check(
            "pay_wait_s",
            t.get("pay_wait_s", float, d.pay_wait_s, "seconds"),
            lambda v: 0 < v <= 300,
            "seconds, more than 0 and at most 300 (a customer is waiting)",
        ),
        clock_margin_s=t.check(
            "clock_margin_s",
            t.get("clock_margin_s", float, d.clock_margin_s, "seconds"),
            lambda v: 0 <= v <= 3600,
            "seconds from 0 to 3600",
        ),
    )
    c = dataclasses.replace(
        c,
        cashout_max=amount_in(t, "cashout_max", cur),
        cashout_day_max=amount_in(t, "cashout_day_max", cur),
        cashin_day_max=amount_in(t, "cashin_day_max", cur),
        cashout_pay_timeout_s=seconds_in(
            t, "cashout_pay_timeout_s", d.cashout_pay_timeout_s, 10, 900
        ),
        poll_interval_s=seconds_in(t, "poll_interval_s", d.poll_interval_s, 0.2, 30),
    )
    t.done()
    return c


def read_secrets(t: Table) -> PayBySecrets:
    """The store's key as text: its form only (a PEM private key block). It is parsed by
    :func:`local_check` (``kiosk config check``), not here: the secrets a bundle is checked
    with before provisioning may hold a placeholder, and ``kiosk journal`` needs no PayBy key."""
    pem = t.get("private_key", str, "", "a PEM private key string")
    if "PRIVATE KEY-----" not in pem:
        raise t.error("private_key", PRIVATE_KEY)
    t.done()
    return PayBySecrets(pem.encode())


PRIVATE_KEY = (
    "the store's RSA private key, PEM ('-----BEGIN PRIVATE KEY-----...'), unencrypted:"
    " paste the whole key, its BEGIN and END lines included"
)


def check_private_key(secrets: PayBySecrets, secrets_file: Path) -> None:
    """The store's key parsed as the client's :class:`~kiosk.providers.payby.wire.Signer` will
    parse it; ConfigError naming the secrets file and what to put there."""
    why = _unusable(secrets.private_key, _signer)
    if why:
        raise ConfigError(str(secrets_file), "payby.private_key", f"{PRIVATE_KEY} ({why})")


def _signer(pem: bytes) -> object:
    from kiosk.providers.payby.wire import Signer

    return Signer(pem)


def _verifier(pem: bytes) -> object:
    from kiosk.providers.payby.wire import Verifier

    return Verifier(pem)


def _unusable(pem: bytes, parse: Callable[[bytes], object]) -> str:
    """Why ``parse`` (the client's own :class:`Signer` or :class:`Verifier`) refuses ``pem``;
    "" when it takes it. Only the exception's kind is told: never a part of a key."""
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        parse(pem)
    except UnsupportedAlgorithm:
        return "cryptography does not support its algorithm"
    except (ValueError, TypeError) as exc:
        if "must be an RSA" in str(exc):  # Signer's and Verifier's own refusal
            return "it is not an RSA key"
        return "cryptography cannot parse it"
    return ""


def local_check(cfg: Config, secrets: Secrets) -> None:
    p = of(cfg)
    if p is None:
        return
    check_public_file(p.public_key_file, "PayBy's public key", cfg.file, "payby.public_key_file")
    read_public_key(p, cfg.file)
    s: PayBySecrets | None = secrets.providers.get("payby")
    if s is None:
        raise ConfigError(str(cfg.secrets_file), "payby.private_key", PRIVATE_KEY)
    check_private_key(s, cfg.secrets_file)


SECTION = Section(read, read_secrets, local_check)


def connect(
    cfg: Config,
    secrets: Secrets,
    on_reply: Callable[[bool], None],
    on_clock: Callable[[float | None, bool], None] | None = None,
) -> Connection:
    """The PayBy client of this kiosk, on its own HTTP client."""
    # httpx imports its command-line module, and with it click, whenever click is
    # installed (sqlite-utils brings it); the daemon has no use for it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx

    from kiosk.providers.payby.client import PayByClient, Signer, Verifier

    p: PayByConfig = cfg.providers["payby"]
    s: PayBySecrets | None = secrets.providers.get("payby")
    if s is None:
        raise ConfigError(
            str(cfg.secrets_file),
            "payby.private_key",
            "the store's PEM private key (the [payby] table is configured)",
        )
    check_private_key(s, cfg.secrets_file)  # a ConfigError, not a traceback from Signer
    timeout = httpx.Timeout(p.timeout_s)
    http = http_client(timeout, cfg.tls.pins.get("payby"))
    client = PayByClient(
        http,
        base_url=p.base_url,
        partner_id=p.partner_id,
        timeout=timeout,
        signer=Signer(s.private_key),
        verifier=Verifier(read_public_key(p, cfg.file)),
        resolve_token_path=p.resolve_token_path,
        pay_order_path=p.pay_order_path,
        on_reply=on_reply,
        on_clock=on_clock,
    )
    return Connection(http, client)


async def probe(client: Any, cfg: Config) -> None:
    """A cheap read (the store's balance) that tells whether PayBy answers again."""
    await client.get_balance(cfg.currency.code)


def read_public_key(cfg: PayByConfig, config_file: Path) -> bytes:
    """PayBy's public key (PEM) from ``public_key_file``, parsed as the client's
    :class:`~kiosk.providers.payby.wire.Verifier` will; ConfigError if unreadable or unusable
    (``kiosk config check`` runs it through :func:`local_check`)."""
    try:
        pem = cfg.public_key_file.read_bytes()
    except OSError:
        raise ConfigError(
            str(config_file),
            "payby.public_key_file",
            f"a readable PEM public key file ({cfg.public_key_file})",
        ) from None
    why = "it has no PUBLIC KEY PEM block" if b"PUBLIC KEY-----" not in pem else ""
    why = why or _unusable(pem, _verifier)
    if why:
        raise ConfigError(
            str(config_file),
            "payby.public_key_file",
            f"PayBy's RSA public key, PEM ('-----BEGIN PUBLIC KEY-----...'), in"
            f" {cfg.public_key_file} ({why}): download it again from PayBy's merchant portal",
        )
    return pem
