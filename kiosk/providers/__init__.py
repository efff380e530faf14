"""Clients of the payment providers (PayBy, later Paysera, Rapyd, Cashii).

A client knows HTTP and its provider, nothing about devices or journeys. Each one takes an
injected ``httpx.AsyncClient`` (tests pass ``httpx.MockTransport``; end-to-end tests use the
local sandbox in :mod:`kiosk.sandbox` over loopback), explicit ``httpx.Timeout`` values, and
translates every transport or protocol failure to the provider errors of :mod:`kiosk.errors`
at the boundary with ``raise ... from exc``.

- :mod:`kiosk.providers.payby.wire` — PayBy signing (SHA256withRSA) and exact Decimal JSON.
- :mod:`kiosk.providers.payby` — the PayBy acquiring client (Cash Top Up, store-side pay).
"""
