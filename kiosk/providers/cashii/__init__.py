"""Cashii Remote Payments (``/api/v1``): the kiosk creates a payment, the customer pays it in
the Cashii app, the kiosk pays the cash out (``../shared/reference/providers.md`` §4), as a
provider plug-in (:mod:`kiosk.providers.base`).

- :mod:`.client` — create and read a remote payment (Bearer key);
- :mod:`.config` — ``[cashii]`` and its ``api_key``; :mod:`.codes` — the envelope;
- :mod:`.check` — ``kiosk provider check cashii``, the idle probe, the reconcile read.
"""

from kiosk.providers.base import Provider

PROVIDER = Provider(
    name="cashii",
    title="Cashii",
    section="kiosk.providers.cashii.config:SECTION",
    connect="kiosk.providers.cashii.config:connect",
    check="kiosk.providers.cashii.check:check",
    journeys=("kiosk.flows.cashii_cashout",),
    codes="kiosk.providers.cashii.codes:recognise",
    envelope="kiosk.providers.cashii.codes:envelope",
    probe="kiosk.providers.cashii.check:probe",
    reconcile="kiosk.providers.cashii.check:reconcile",
    sandbox="kiosk.sandbox.cashii:CashiiSandbox",
)
