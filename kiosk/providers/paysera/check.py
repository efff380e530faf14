"""``kiosk provider check paysera``: one cheap MAC-signed call that proves the credentials."""

from __future__ import annotations

import time
from typing import Any

from kiosk.config import Config, Secrets
from kiosk.errors import (
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
)


async def check(cfg: Config, secrets: Secrets) -> tuple[bool, str]:
    """A GET that needs the MAC, of a transaction that cannot exist: ``not_found`` means
    Paysera accepted our MAC; ``unauthorized`` that it did not (the clock is compared with
    Paysera's own to tell a skew from wrong credentials)."""
    import httpx

    from kiosk.providers.paysera.client import PayseraClient
    from kiosk.providers.paysera.mac import MacSigner

    p, key = cfg.providers["paysera"], secrets.providers["paysera"].mac_key
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        client = PayseraClient(
            http,
            base_url=p.base_url,
            signer=MacSigner(p.client_id, key),
            timeout=httpx.Timeout(p.timeout_s),
        )
        try:
            await client.get("kioskCredentialCheck")
        except ProviderUnavailable as exc:
            return False, f"paysera: unreachable at {p.base_url} ({exc})"
        except ProviderRefused as exc:
            if exc.code == "not_found":
                ms = int((time.monotonic() - started) * 1000)
                return True, f"paysera: credentials work (client {p.client_id}, {ms} ms)"
            if exc.code == "unauthorized":
                try:
                    skew = abs(await client.server_time(p.server_time_path) - int(time.time()))
                except ProviderError:
                    skew = 0
                if skew > 60:
                    return False, f"paysera: our clock is {skew} s off Paysera's: fix NTP"
                return False, f"paysera: Paysera refused our MAC: check client_id {p.client_id!r}"
            return False, f"paysera: unexpected refusal ({exc})"
        except ProviderError as exc:
            return False, f"paysera: no clean answer ({exc}); try again"
        return False, "paysera: a transaction that cannot exist was found: wrong base_url?"


async def probe(client: Any, cfg: Config) -> None:
    """The daemon's idle probe: the MAC-signed read of a transaction that cannot exist
    (``not_found`` is Paysera answering and accepting our MAC); raises ProviderError else."""
    try:
        await client.get("kioskCredentialCheck")
    except ProviderRefused as exc:
        if exc.code != "not_found":
            raise


async def reconcile(client: Any, cfg: Config, tx: Any) -> str:
    """``kiosk reconcile``: Paysera's view of ``tx``'s transaction: ``APPLIED`` once confirmed
    (the money moved), ``NOT_APPLIED:<status>`` otherwise, ``UNREACHABLE:<why>``."""
    try:
        found = await client.get(tx.provider_ref)
    except ProviderRefused as exc:
        if exc.code == "not_found":
            return "NOT_APPLIED:not_found"
        return f"UNREACHABLE:{exc.code}"
    except ProviderError as exc:
        return f"UNREACHABLE:{type(exc).__name__}"
    return "APPLIED" if found.status == "confirmed" else f"NOT_APPLIED:{found.status}"
