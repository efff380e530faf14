"""Rapyd's request signature (``../shared/reference/providers.md`` §3.4, Rapyd's
``request-signatures`` page)::

    signature = BASE64(hex(HMAC-SHA256(key=secret_key, msg=lower(method) + url_path
                                       + salt + timestamp + access_key + secret_key + body)))

BASE64 is applied to the **ASCII hex digest**, not to the raw MAC. ``url_path`` starts at
``/v1`` and includes ``?query``; ``body`` is the exact compact JSON sent, ``""`` when there is
none; ``timestamp`` is unix seconds (Rapyd refuses one more than 60 s old); ``salt`` is 8 to 16
random characters. The POS pages list only ``access_key``, but every POS example carries these
headers: the kiosk always sends them (they cost nothing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

SALT_ALPHABET: Final = string.ascii_letters + string.digits


def signature(
    secret_key: str,
    *,
    method: str,
    url_path: str,
    salt: str,
    timestamp: str,
    access_key: str,
    body: str,
) -> str:
    """The ``signature`` header for one request (see the module docstring)."""
    message = method.lower() + url_path + salt + timestamp + access_key + secret_key + body
    digest = hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode("ascii")).decode("ascii")


def new_salt(length: int = 12) -> str:
    if not 8 <= length <= 16:
        raise ValueError("a Rapyd salt has 8 to 16 characters")
    return "".join(secrets.choice(SALT_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True)
class Signer:
    """The access key and the secret key; :meth:`headers` signs one request."""

    access_key: str
    secret_key: str = field(repr=False)
    clock: Callable[[], float] = time.time

    def headers(self, method: str, url_path: str, body: str) -> dict[str, str]:
        salt, timestamp = new_salt(), str(int(self.clock()))
        return {
            "access_key": self.access_key,
            "salt": salt,
            "timestamp": timestamp,
            "signature": signature(
                self.secret_key,
                method=method,
                url_path=url_path,
                salt=salt,
                timestamp=timestamp,
                access_key=self.access_key,
                body=body,
            ),
        }
