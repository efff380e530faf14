"""``kiosk provider check payby``: ``/verifySign`` (PayBy checks our signature on the request;
we check PayBy's on the reply). Exit 0 only when both hold; otherwise a message that says what
failed and what to look at: unreachable, our signature refused, the clock off by more than
PayBy's 15 minutes, PayBy's reply signature not verifying. Nothing secret is printed."""

from __future__ import annotations

import time
from typing import Any

from kiosk.config import Config, Secrets
from kiosk.errors import (
    ProviderAmbiguous,
    ProviderError,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)


async def check(cfg: Config, secrets: Secrets) -> tuple[bool, str]:
    from kiosk.providers.payby.config import connect, of

    p = of(cfg)
    assert p is not None
    conn = connect(cfg, secrets, lambda ok: None)
    client = conn.client
    started = time.monotonic()
    try:
        await client.verify_sign()
    except ProviderUnavailable as exc:
        return False, f"payby: unreachable at {p.base_url} ({exc})"
    except ProviderRefused as exc:
        from kiosk.providers.payby.client import clock_refusal

        if clock_refusal(exc):
            off = client.last_skew_s
            by = f" ({off:+.0f} s by the reply's time)" if off is not None else ""
            return False, f"payby: our clock is more than 15 minutes off PayBy's{by}: fix NTP"
        return False, (
            f"payby: PayBy refused our request ({exc}): check partner_id"
            f" {p.partner_id!r} and that PayBy holds the store's public key"
        )
    except ProviderProtocolError as exc:
        return False, (
            f"payby: the reply does not verify ({exc}): check payby.public_key_file"
            f" ({p.public_key_file})"
        )
    except (ProviderAmbiguous, ProviderError) as exc:
        return False, f"payby: no clean answer ({exc}); try again"
    finally:
        await conn.aclose()
    ms = int((time.monotonic() - started) * 1000)
    ok = f"payby: credentials work (partner {p.partner_id}, reply signed, {ms} ms)"
    off = client.last_skew_s
    if off is not None and abs(off) > CLOCK_WARN_S:
        ok += f"; warning: our clock is {off:+.0f} s off PayBy's (it refuses beyond 15 min)"
    return True, ok


CLOCK_WARN_S = 60.0
"""A skew worth a technician's look, well inside PayBy's 15-minute window."""


async def reconcile(client: Any, cfg: Config, tx: Any) -> str:
    """``kiosk reconcile``: PayBy's signed view of ``tx``'s order: ``APPLIED`` when this store
    paid it, ``NOT_PAID:<status>`` otherwise, ``UNREACHABLE:<why>``."""
    from kiosk.providers.payby.client import NOT_VISIBLE, PAID
    from kiosk.providers.payby.config import of

    p = of(cfg)
    assert p is not None
    try:
        order = await client.get_order(order_no=tx.provider_ref)
    except ProviderRefused as exc:
        if exc.signed and exc.code in NOT_VISIBLE:
            return "NOT_PAID:NOT_VISIBLE_TO_STORE"
        return f"UNREACHABLE:{exc.code}"
    except ProviderError as exc:
        return f"UNREACHABLE:{type(exc).__name__}"
    if str(order.status) in PAID and order.payer_mid == p.partner_id:
        return "APPLIED"
    return f"NOT_PAID:{order.status}"
