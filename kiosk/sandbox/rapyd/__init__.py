"""Rapyd's sandbox: :mod:`.api` (the POS API under ``/v1/pos``: access key and optional
signature checks, the session rules, idempotent replays, faults and the hooks for the
customer's side) over :mod:`.ledger` (its state, kept in ``rapyd.json``)."""

from kiosk.sandbox.rapyd.api import RapydSandbox

__all__ = ["RapydSandbox"]
