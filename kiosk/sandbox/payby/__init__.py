"""PayBy's sandbox: :mod:`.api` (the acquiring API, signed both ways, and its hooks) over
:mod:`.ledger` (merchants, wallets, orders, refunds, kept on disk)."""

from kiosk.sandbox.payby.api import ONLINE_MERCHANT_ID, PayBySandbox

__all__ = ["ONLINE_MERCHANT_ID", "PayBySandbox"]
