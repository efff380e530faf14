"""``kiosk provider check rapyd``: echo, with the access key and the signature headers."""

from __future__ import annotations

import time
from typing import Any

from kiosk.config import Config, Secrets
from kiosk.errors import ProviderError, ProviderRefused, ProviderUnavailable


async def check(cfg: Config, secrets: Secrets) -> tuple[bool, str]:
    """``GET /v1/pos/echo``: a SUCCESS status means Rapyd accepted the access key (and the
    signature, where it checks one)."""
    import httpx

    from kiosk.providers.rapyd.client import RapydClient
    from kiosk.providers.rapyd.signing import Signer

    p, key = cfg.providers["rapyd"], secrets.providers["rapyd"].secret_key
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        client = RapydClient(
            http,
            base_url=p.base_url,
            signer=Signer(p.access_key, key),
            timeout=httpx.Timeout(p.timeout_s),
        )
        try:
            await client.echo()
        except ProviderUnavailable as exc:
            return False, f"rapyd: unreachable at {p.base_url} ({exc})"
        except ProviderRefused as exc:
            if exc.code == "ERROR_UNAUTHORIZED":
                return False, "rapyd: Rapyd refused our access key or signature (or our clock)"
            return False, f"rapyd: refused ({exc.code})"
        except ProviderError as exc:
            return False, f"rapyd: no clean answer ({exc}); try again"
    ms = int((time.monotonic() - started) * 1000)
    return True, f"rapyd: credentials work (POS {p.pos_id}, {ms} ms)"


async def probe(client: Any, cfg: Any) -> None:
    """A cheap call that tells an idle kiosk whether Rapyd answers again."""
    await client.echo()
