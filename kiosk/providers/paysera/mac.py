"""Paysera's MAC authentication (providers.md §2.3), exactly as documented.

Every request carries::

    Authorization: MAC id="<client_id>", ts="<unix s>", nonce="<nonce>", mac="<b64>"[, ext="<ext>"]

``mac`` is Base64(HMAC-SHA256(key = the mac_key's UTF-8 bytes, used as is, msg = the normalized
string)), and the normalized string is seven lines, each ending in ``\\n`` (the last too)::

    ts, nonce, METHOD (upper case), request URI (path and ?query), host (lower case), port, ext

``ext`` is empty without a body; with one it is ``body_hash=<Base64(SHA-256(body))>`` URL-encoded
(``+ / =`` as ``%2B %2F %3D``), the same string in the header and in the normalized string.
The nonce is printable ASCII without ``"`` and ``\\``; we send 32 hex characters, as the docs do.

Nothing here logs: the key never leaves :class:`MacSigner`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

_NONCE_OK: Final = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


def body_ext(body: bytes) -> str:
    """The ``ext`` of a request with ``body``: empty without one."""
    if not body:
        return ""
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return urllib.parse.urlencode({"body_hash": digest})


def normalized(ts: int, nonce: str, method: str, uri: str, host: str, port: int, ext: str) -> str:
    return "".join(
        f"{part}\n" for part in (str(ts), nonce, method.upper(), uri, host.lower(), str(port), ext)
    )


def mac(key: str, text: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()).decode()


def header(client_id: str, ts: int, nonce: str, mac_b64: str, ext: str) -> str:
    parts = [("id", client_id), ("ts", str(ts)), ("nonce", nonce), ("mac", mac_b64)]
    if ext:
        parts.append(("ext", ext))
    return "MAC " + ", ".join(f'{name}="{value}"' for name, value in parts)


@dataclass(frozen=True)
class MacSigner:
    """Signs requests for one client. ``clock`` gives unix seconds (Paysera's ``ts``)."""

    client_id: str
    key: str = field(repr=False)
    clock: Callable[[], int] = field(default=lambda: int(time.time()), repr=False)
    nonce: Callable[[], str] = field(default=lambda: secrets.token_hex(16), repr=False)

    def authorization(
        self, method: str, url: str, body: bytes = b"", *, ts: int | None = None, nonce: str = ""
    ) -> str:
        """The ``Authorization`` header of ``method url`` with ``body``."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        uri = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        when = self.clock() if ts is None else ts
        once = nonce or self.nonce()
        if not once or set(once) - _NONCE_OK:
            raise ValueError("a nonce is printable ASCII without '\"' or '\\'")
        ext = body_ext(body)
        text = normalized(when, once, method, uri, parts.hostname, port, ext)
        return header(self.client_id, when, once, mac(self.key, text), ext)


@dataclass(frozen=True, slots=True)
class MacHeader:
    client_id: str
    ts: int
    nonce: str
    mac: str
    ext: str


def parse_header(value: str) -> MacHeader:
    """The parts of a ``MAC ...`` header (the sandbox checks requests with it). ValueError on
    anything that is not one."""
    if not value.startswith("MAC "):
        raise ValueError("not a MAC Authorization header")
    fields: dict[str, str] = {}
    for item in value[4:].split(", "):
        name, sep, quoted = item.partition("=")
        if not sep or len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
            raise ValueError(f"bad MAC header parameter {item!r}")
        fields[name] = quoted[1:-1]
    try:
        return MacHeader(
            fields["id"], int(fields["ts"]), fields["nonce"], fields["mac"], fields.get("ext", "")
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"incomplete MAC header ({exc})") from None


def verify(
    key: str, h: MacHeader, method: str, uri: str, host: str, port: int, body: bytes
) -> bool:
    """Does ``h`` sign this request under ``key``? (The body must match ``ext`` too.)"""
    if body_ext(body) != h.ext:
        return False
    text = normalized(h.ts, h.nonce, method, uri, host, port, h.ext)
    return hmac.compare_digest(mac(key, text), h.mac)
