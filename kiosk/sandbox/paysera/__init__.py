"""Paysera's sandbox: :mod:`.api` (the Wallet API's transactions, MAC-checked, its state
machine and its hooks for the customer's side)."""

from kiosk.sandbox.paysera.api import PayseraSandbox

__all__ = ["PayseraSandbox"]
