"""The support bundle's errors, each with its exit status (through :mod:`kiosk.cli`)."""

from __future__ import annotations

from kiosk.errors import KioskError


class BundleError(KioskError):
    """The bundle cannot be made: no journal, an unknown reference, an unwritable file
    (exit 1). The message says what to check."""

    exit_status = 1


class BundleUsageError(BundleError, ValueError):
    """A bad option (exit 2): the message names it and the expected form."""

    exit_status = 2
