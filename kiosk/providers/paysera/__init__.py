"""Paysera Wallet API (``/rest/v1``): cash-out with a reservation code, cash-in with an EVP code
(``../shared/reference/providers.md`` §2). Built as the first provider plug-in (issue 10)."""
