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

    import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one client TLS context (httpx's verified default)."""
    import httpx

    return httpx.create_ssl_context()


def client(timeout: httpx.Timeout) -> httpx.AsyncClient:
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    import httpx

    return httpx.AsyncClient(
        timeout=timeout,
        verify=tls_context(),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )
