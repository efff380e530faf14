"""The provisioning errors, under :class:`kiosk.errors.KioskError`, each with its exit status::

    KioskError
     └── ProvisionError     provisioning cannot go on (exit status 1)
          └── BundleError   the bundle or the command line is wrong (exit status 2)

A :class:`BundleError` is also a :class:`ValueError`.
"""

from __future__ import annotations

from kiosk.errors import KioskError


class ProvisionError(KioskError):
    """Provisioning cannot go on; the message says what to do. Exit status 1."""

    exit_status = 1


class BundleError(ProvisionError, ValueError):
    """The bundle (or the command line) is wrong: the message names the key. Exit status 2."""

    exit_status = 2


def _expected(where: str, key: str, expected: str) -> BundleError:
    return BundleError(f"{where}: {key}: expected {expected}")
