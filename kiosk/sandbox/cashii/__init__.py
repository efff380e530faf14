"""Cashii's sandbox: :mod:`.api` (the Remote Payments API under ``/api/v1``: the Bearer key,
create and retrieve, faults and the hooks for the customer's side) over :mod:`.ledger` (its
state, kept in ``cashii.json``)."""

from kiosk.sandbox.cashii.api import CashiiSandbox

__all__ = ["CashiiSandbox"]
