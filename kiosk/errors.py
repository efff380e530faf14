"""The kiosk's exceptions: one tree, each error saying what to do about it.

::

    KioskError
     ├── ConfigError(KioskError, ValueError)   bad configuration: fix the file named; exit 2
     ├── UsageError(KioskError, ValueError)    bad command-line arguments: change them; exit 2
     ├── ListenError(KioskError, OSError)      a local server cannot listen (port taken)
     ├── MoneyError(KioskError, ValueError)    an amount that cannot be represented exactly
     ├── PayloadError(KioskError, ValueError)  a scanned code the kiosk does not accept
     ├── ApprovalRefused(KioskError, ValueError)  an approval for no transaction waiting for
     │                                         one (unknown, finished, another amount)
     ├── StorageError(KioskError, OSError)     the journal cannot be read or written
     │    └── NoJournal                        no journal where the config says: the kiosk
     │                                         never ran here, or kiosk.state_dir is wrong
     ├── DeviceError(KioskError, OSError)      a device is missing or misbehaves
     │    ├── DeviceLost                       its port cannot be opened or was lost
     │    ├── DeviceGarbled                    garbage or bad checksums on its wire
     │    ├── DeviceFaulted                    it reports a fault (``kind``: jam, paper_out...)
     │    ├── DeviceRefused                    it refused a command in its state
     │    └── DecoderMissing                   a QR decoder's library is missing here
     └── ProviderError(KioskError)             a provider call failed
          ├── ProviderRefused                  the provider said no, for good: nothing moved
          │    └── ProviderAuthFailed          ... to the kiosk's credentials: out of service
          ├── ProviderUnavailable              the request was not delivered (connect failed,
          │                                    rate limited): nothing happened, safe to retry
          ├── ProviderAmbiguous                the call may or may not have taken effect:
          │                                    ask the provider for the state before anything else
          └── ProviderProtocolError            a broken or forged reply (bad signature, bad JSON);
                                               treated as ambiguous by the money flows

Driver errors (``drivers.errors``) and a port's ``OSError`` are translated to
:class:`DeviceError` at the boundary (:mod:`kiosk.devices`, which every device the kiosk
drives goes through) with ``raise ... from exc``; httpx errors to the provider errors likewise.
No kiosk module but the boundary catches a driver error.
"""

from __future__ import annotations


class KioskError(Exception):
    """Root of every error the kiosk raises on purpose."""


class ConfigError(KioskError, ValueError):
    """The configuration is wrong. ``str()`` names the file, the key and the expected form."""

    def __init__(self, file: str, key: str, expected: str) -> None:
        self.file, self.key, self.expected = file, key, expected
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: expected {expected}")


class UsageError(KioskError, ValueError):
    """Bad arguments on the command line (a value, a host, a port, a path): exit status 2,
    the message names the argument and says what to change."""

    exit_status = 2


class ListenError(KioskError, OSError):
    """A local server (``kiosk sandbox``) cannot listen on its address: the port is taken or
    needs privileges. Exit status 1; the message names the address and what to do."""


class MoneyError(KioskError, ValueError):
    """An amount or currency that cannot be represented exactly in minor units."""


class ApprovalRefused(KioskError, ValueError):
    """A technician's approval that approves nothing: no transaction of this kiosk waits for
    one under that reference (unknown, finished, already approved), or it waits for another
    amount. ``str()`` says which."""


class PayloadError(KioskError, ValueError):
    """A decoded code the kiosk refuses (unknown form, foreign host, bad length, replayed)."""


class StorageError(KioskError, OSError):
    """The journal cannot be opened, migrated or written: check the disk and the state dir."""


class NoJournal(StorageError):
    """There is no journal at ``path``: the kiosk never ran with this config, or the config's
    ``kiosk.state_dir`` points somewhere else. Technicians' commands refuse instead of creating
    an empty one."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"no journal at {path}: has the kiosk run here? (check kiosk.state_dir)")


class DeviceError(KioskError, OSError):
    """A device is missing, faulted or answered out of protocol: the kiosk goes out of service.

    ``device`` names it ("validator", "recycler", "printer", "code reader", "panel");
    ``message`` is what went wrong, without the name; ``kind`` is a fault's short name
    (:class:`DeviceFaulted`), else ``None``."""

    kind: str | None = None

    def __init__(self, device: str, message: str) -> None:
        self.device, self.message = device, message
        super().__init__(f"{device}: {message}")


class DeviceLost(DeviceError):
    """The device's port cannot be opened, or was lost (unplugged, powered off): check its
    cable and power; the kiosk opens it again."""


class DeviceGarbled(DeviceError):
    """Bytes from the device that are not a valid frame (bad checksum, bad length): a loose
    cable, a wrong baud rate, electrical noise, or someone on the line."""


class DeviceFaulted(DeviceError):
    """The device reports a fault; ``kind`` is its short machine-readable name (``jam``,
    ``disconnected``, ``paper_out``...), ``detail`` the device's words."""

    kind: str

    def __init__(self, device: str, message: str, *, kind: str, detail: str = "") -> None:
        super().__init__(device, message)
        self.kind, self.detail = kind, detail


class DeviceRefused(DeviceError):
    """The device answered that it cannot process the command in its state."""


class DecoderMissing(DeviceError):
    """A QR decoder cannot run here (a library is missing); the message says how to install it."""


class ProviderError(KioskError):
    """A provider call failed. ``code`` is the provider's own code when it gave one."""

    def __init__(
        self, provider: str, message: str, code: str | None = None, *, signed: bool = False
    ) -> None:
        self.provider, self.code = provider, code
        self.signed = signed
        """True when the provider's signature on the reply verified: only such an answer may
        decide a money outcome (an unsigned error may come from a proxy, or be forged)."""
        suffix = f" (code {code})" if code else ""
        super().__init__(f"{provider}: {message}{suffix}")


class ProviderRefused(ProviderError):
    """The provider refused for good (business error). Nothing moved; do not retry as is."""


class ProviderAuthFailed(ProviderRefused):
    """The provider refused the kiosk's own credentials (a rejected signature or MAC, a revoked
    or wrong API key, an address not on its list): nothing was processed, and every call will
    fail the same way until a technician fixes the keys. The daemon takes the provider out of
    service and raises an alert (:mod:`kiosk.reachability`), not just this one journey."""


class ProviderUnavailable(ProviderError):
    """The request did not reach the provider (connect error, rate limit). Safe to retry later."""


class ProviderAmbiguous(ProviderError):
    """The outcome is unknown (timeout, reset, 5xx after sending). Query the state first."""


class ProviderProtocolError(ProviderError):
    """The reply is broken or its signature does not verify. Treat the outcome as unknown."""
