"""Rapyd POS API (``/v1/pos``): cash-out by OTP (withdraw, reversed when the payout falls
short) and cash-in by deposit (``../shared/reference/providers.md`` §3), as a provider
plug-in (:mod:`kiosk.providers.base`).

- :mod:`.signing` — the request signature; :mod:`.wire` — decimal sums in paths, balances;
- :mod:`.client` — echo, open session, withdraw, deposit, reverse, close session;
- :mod:`.config` — ``[rapyd]`` and its ``secret_key``; :mod:`.codes` — the envelopes;
- :mod:`.outcomes` — Rapyd's error codes as what the customer is told;
- :mod:`.check` — ``kiosk provider check rapyd``.

Rapyd's POS API has no call that reads a transaction back: there is no ``reconcile`` read.
"""

from kiosk.providers.base import Provider

PROVIDER = Provider(
    name="rapyd",
    title="Rapyd POS",
    section="kiosk.providers.rapyd.config:SECTION",
    connect="kiosk.providers.rapyd.config:connect",
    check="kiosk.providers.rapyd.check:check",
    journeys=("kiosk.flows.rapyd_cashout", "kiosk.flows.rapyd_cashin"),
    codes="kiosk.providers.rapyd.codes:recognise",
    envelope="kiosk.providers.rapyd.codes:envelope",
    probe="kiosk.providers.rapyd.check:probe",
    sandbox="kiosk.sandbox.rapyd:RapydSandbox",
)
