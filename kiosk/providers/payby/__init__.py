"""PayBy (UAE) acquiring API "SGS", the Cash Top Up scene (``../shared/reference/providers.md``
§1), as a provider plug-in (:mod:`kiosk.providers.base`).

- :mod:`.wire` — SHA256withRSA signing and exact Decimal JSON, PayBy's money object;
- :mod:`.client` — the acquiring client (resolve a tokenUrl, pay it from the store wallet,
  get order, balance, verifySign);
- :mod:`.config` — ``[payby]``, its private key, and the client built from them;
- :mod:`.codes` — the tokenUrl a customer shows; :mod:`.check` — ``kiosk provider check payby``.
"""

from kiosk.providers.base import Provider

PROVIDER = Provider(
    name="payby",
    title="PayBy",
    section="kiosk.providers.payby.config:SECTION",
    connect="kiosk.providers.payby.config:connect",
    check="kiosk.providers.payby.check:check",
    reconcile="kiosk.providers.payby.check:reconcile",
    journeys=("kiosk.flows.payby_cashin", "kiosk.flows.payby_cashout"),
    codes="kiosk.providers.payby.codes:recognise",
    envelope="kiosk.providers.payby.codes:envelope",
    probe="kiosk.providers.payby.config:probe",
    sandbox="kiosk.sandbox.payby.api:PayBySandbox",
)
