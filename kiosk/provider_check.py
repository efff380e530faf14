"""``kiosk provider check NAME``: one cheap authenticated call that proves the credentials.

PayBy: ``/verifySign`` (PayBy checks our signature on the request; we check PayBy's on the
reply). Exit 0 only when both hold; otherwise 1 and a message that says what failed and what to
look at: unreachable, our signature refused, the clock off by more than PayBy's 15 minutes,
PayBy's reply signature not verifying. Nothing secret is printed.
"""

from __future__ import annotations

import asyncio
import time

from kiosk.config import Config, Secrets
from kiosk.errors import (
    ProviderAmbiguous,
    ProviderError,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)

PROVIDERS = ("payby", "paysera")


def check(cfg: Config, secrets: Secrets, name: str) -> tuple[bool, str]:
    if name not in PROVIDERS:
        return False, f"{name}: no check in this build (providers: {', '.join(PROVIDERS)})"
    if name == "paysera":
        if "paysera" not in cfg.providers or "paysera" not in secrets.providers:
            return False, f"paysera: no [paysera] table in {cfg.file} and in its secrets file"
        return asyncio.run(_paysera(cfg, secrets))
    if cfg.payby is None:
        return False, f"payby: no [payby] table in {cfg.file}"
    return asyncio.run(_payby(cfg, secrets))


async def _paysera(cfg: Config, secrets: Secrets) -> tuple[bool, str]:
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


async def _payby(cfg: Config, secrets: Secrets) -> tuple[bool, str]:
    from kiosk.daemon import Daemon

    assert cfg.payby is not None
    http, client = Daemon(cfg, secrets)._payby_client()
    started = time.monotonic()
    try:
        await client.verify_sign()
    except ProviderUnavailable as exc:
        return False, f"payby: unreachable at {cfg.payby.base_url} ({exc})"
    except ProviderRefused as exc:
        msg = str(exc)
        if "REQUESTTIME" in msg:
            return False, "payby: our clock is more than 15 minutes off PayBy's: fix NTP"
        return False, (
            f"payby: PayBy refused our request ({exc}): check partner_id"
            f" {cfg.payby.partner_id!r} and that PayBy holds the store's public key"
        )
    except ProviderProtocolError as exc:
        return False, (
            f"payby: the reply does not verify ({exc}): check payby.public_key_file"
            f" ({cfg.payby.public_key_file})"
        )
    except (ProviderAmbiguous, ProviderError) as exc:
        return False, f"payby: no clean answer ({exc}); try again"
    finally:
        await http.aclose()
    ms = int((time.monotonic() - started) * 1000)
    return True, f"payby: credentials work (partner {cfg.payby.partner_id}, reply signed, {ms} ms)"
