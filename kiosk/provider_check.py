"""``kiosk provider check NAME``: one cheap authenticated call that proves the credentials.

Each provider declares its own (``Provider.check``: PayBy ``/verifySign``, Paysera a MAC-signed
get). Exit 0 only when the credentials work; otherwise a message saying what failed
(unreachable, refused credentials, clock skew, bad signature). Nothing secret is printed.
"""

from __future__ import annotations

import asyncio

from kiosk.config import Config, Secrets


def check(cfg: Config, secrets: Secrets, name: str) -> tuple[bool, str]:
    from kiosk.providers.registry import get, providers

    provider = get(name)
    if provider is None:
        return False, f"{name}: no such provider in this build ({', '.join(providers())})"
    if name not in cfg.providers:
        return False, f"{name}: no [{name}] table in {cfg.file}"
    if name not in secrets.providers:
        return False, f"{name}: no [{name}] table in the secrets file {cfg.secrets_file}"
    ok: tuple[bool, str] = asyncio.run(provider.resolve("check")(cfg, secrets))
    return ok
