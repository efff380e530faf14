"""Every outbound HTTP client of the daemon: the providers' and the fleet's.

TLS is always verified (certifi's CA store, the host name checked); the clients share **one**
TLS context, because each context parses the whole CA bundle again (about 0.6 MB of a Pi's
memory per client: a kiosk with four providers and a fleet endpoint held five). Explicit
timeouts, and no cookie jar: the APIs are stateless, and a cookie a reply sets (a proxy's, a
captive portal's, or one httpx cannot encode) must never ride on the next money call.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one client TLS context (httpx's verified default)."""
    import httpx

    return httpx.create_ssl_context()


@functools.cache
def pinned_context(path: Path) -> ssl.SSLContext:
    """A client TLS context that trusts only the certificates in ``path`` (``[tls.pins]``):
    a pinned CA, intermediate or the server's own certificate is a trust anchor (partial
    chains allowed); the host name is still checked. Raises OSError or ssl.SSLError."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(path))
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def client(timeout: httpx.Timeout, pin: Path | None = None) -> httpx.AsyncClient:
    """``pin``: this client trusts only that file's certificates (:func:`pinned_context`)."""
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    import httpx

    return httpx.AsyncClient(
        timeout=timeout,
        verify=tls_context() if pin is None else pinned_context(pin),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )
