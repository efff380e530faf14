"""``kiosk provider check cashii``: one authenticated read."""

from __future__ import annotations

import time
from typing import Any

from kiosk.config import Config, Secrets
from kiosk.errors import ProviderAuthFailed, ProviderError, ProviderRefused, ProviderUnavailable

NO_SUCH_PAYMENT = "0000000000000000"


async def check(cfg: Config, secrets: Secrets) -> tuple[bool, str]:
    """Read a payment that cannot exist: 404 means Cashii took our key; 401 that it did not."""
    import httpx

    from kiosk.providers.cashii.client import CashiiClient

    p, key = cfg.providers["cashii"], secrets.providers["cashii"].api_key
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        client = CashiiClient(
            http, base_url=p.base_url, api_key=key, timeout=httpx.Timeout(p.timeout_s)
        )
        try:
            await client.get(NO_SUCH_PAYMENT)
        except ProviderUnavailable as exc:
            return False, f"cashii: unreachable at {p.base_url} ({exc})"
        except ProviderRefused as exc:
            if exc.code in ("404", "not_found", "NOT_FOUND"):
                ms = int((time.monotonic() - started) * 1000)
                return True, f"cashii: credentials work ({ms} ms)"
            if exc.code in ("401", "403", "unauthorized", "unauthenticated", "forbidden"):
                return False, "cashii: Cashii refused our API key (or it lacks the permission)"
            return False, f"cashii: unexpected refusal ({exc})"
        except ProviderError as exc:
            return False, f"cashii: no clean answer ({exc}); try again"
    return False, "cashii: a payment that cannot exist was found: wrong base_url?"


async def probe(client: Any, cfg: Any) -> None:
    """A cheap read that tells an idle kiosk whether Cashii answers again and accepts our API
    key (a refusal of the key is raised: the kiosk's Cashii journeys stay off)."""
    try:
        await client.get(NO_SUCH_PAYMENT)
    except ProviderAuthFailed:
        raise
    except ProviderRefused:  # an answer (no such payment): Cashii is there
        pass


async def reconcile(client: Any, cfg: Config, tx: Any) -> str:
    """``kiosk reconcile``: ``APPLIED`` once the payment is paid (the customer's money is with
    the kiosk's account), ``NOT_APPLIED:<status>`` otherwise, ``UNREACHABLE:<why>``."""
    try:
        payment = await client.get(tx.provider_ref)
    except ProviderRefused as exc:
        return f"UNREACHABLE:{exc.code}"
    except ProviderError as exc:
        return f"UNREACHABLE:{type(exc).__name__}"
    return "APPLIED" if payment.status == "paid" else f"NOT_APPLIED:{payment.status}"
