"""Paysera Wallet API (``/rest/v1``): cash-out with a reservation code, cash-in with an EVP code
(``../shared/reference/providers.md`` §2), as a provider plug-in (:mod:`kiosk.providers.base`).

- :mod:`.mac` — the MAC scheme (normalized string, HMAC-SHA256, ``body_hash`` in ``ext``);
- :mod:`.client` — the transaction calls; :mod:`.config` — ``[paysera]`` and its ``mac_key``;
- :mod:`.codes` — the codes a customer shows (reservation code, ``EVP`` cash-in code);
- :mod:`.outcomes` — Paysera's error codes as what the customer is told;
- :mod:`.check` — ``kiosk provider check paysera``, the idle probe, the reconcile read.
"""

from kiosk.providers.base import Provider

PROVIDER = Provider(
    name="paysera",
    title="Paysera Wallet",
    section="kiosk.providers.paysera.config:SECTION",
    connect="kiosk.providers.paysera.config:connect",
    check="kiosk.providers.paysera.check:check",
    reconcile="kiosk.providers.paysera.check:reconcile",
    probe="kiosk.providers.paysera.check:probe",
    journeys=("kiosk.flows.paysera_cashout", "kiosk.flows.paysera_cashin"),
    codes="kiosk.providers.paysera.codes:recognise",
    envelope="kiosk.providers.paysera.codes:envelope",
    sandbox="kiosk.sandbox.paysera:PayseraSandbox",
)
