"""The kiosk's device identity: an Ed25519 key made on the kiosk and a device id from the Pi.

Wiring (the fleet heartbeat)::

    from kiosk import identity

    me = identity.load()              # /etc/kiosk/identity.toml and /etc/kiosk/device.key
    me.device_id                      # "rpi-10000000a1b2c3d4"
    me.public_b64                     # the raw 32-byte public key, base64 (44 characters)
    me.sign(body)                     # a 64-byte Ed25519 signature of body

Files, written by ``kiosk provision`` (:mod:`kiosk.provision`):

- ``/etc/kiosk/device.key``: the private key, PKCS#8 PEM, mode 0600, owned by the service user.
  It is created once and never replaced: the fleet knows the kiosk by it. It lives in
  ``/etc/kiosk`` rather than the state directory because the daemon runs with
  ``ProtectSystem=strict`` (it can read its identity but never change or delete it), and
  because a technician who wipes ``/var/lib/kiosk`` to reset a journal must not change the
  kiosk's identity; config, secrets and identity are backed up together.
- ``/etc/kiosk/identity.toml``: ``device_id``, ``public_key`` (base64) and ``fleet_url``.

The device id is ``rpi-<serial>`` from the Pi's serial number (``/proc/cpuinfo``'s ``Serial``
line, else ``/sys/firmware/devicetree/base/serial-number``), else ``mid-<16 hex>``: an HMAC of
``/etc/machine-id`` (machine-id(5) asks that it be hashed, never shown). Everything is read
under a root directory, so a mounted SD card can be provisioned from another machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from kiosk.errors import KioskError

if TYPE_CHECKING:  # cryptography is imported when a key is used (the CLI starts faster)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ETC = Path("/etc/kiosk")
KEY_FILE = "device.key"
INFO_FILE = "identity.toml"
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX_RE = re.compile(r"[0-9a-f]{8,32}")
_APP = b"kiosk device id"  # the HMAC message that makes the machine-id hash ours alone


class IdentityError(KioskError):
    """The device identity cannot be read or made; the message says which file and what to do."""


def _serial(text: str) -> str | None:
    value = text.strip().strip("\x00").strip().lower()
    if _HEX_RE.fullmatch(value) and value.strip("0"):
        return value
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def pi_serial(root: Path = Path("/")) -> str | None:
    """The Pi's serial number (lower-case hex), ``None`` when this is not a Pi."""
    for line in _read(root / "proc/cpuinfo").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "Serial" and (serial := _serial(value)):
            return serial
    return _serial(_read(root / "sys/firmware/devicetree/base/serial-number"))


def device_id(root: Path = Path("/")) -> str:
    """``rpi-<serial>``, else ``mid-<hash of /etc/machine-id>``; IdentityError if neither."""
    serial = pi_serial(root)
    if serial:
        return f"rpi-{serial}"
    machine_id = _read(root / "etc/machine-id").strip()
    if re.fullmatch(r"[0-9a-f]{32}", machine_id):
        digest = hmac.new(bytes.fromhex(machine_id), _APP, hashlib.sha256).hexdigest()
        return f"mid-{digest[:16]}"
    raise IdentityError(
        f"no device serial number and no machine-id under {root} (proc/cpuinfo,"
        " sys/firmware/devicetree/base/serial-number, etc/machine-id): set identity.device_id"
        " in the bundle, or provision on the kiosk itself"
    )


def new_key() -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file's mode and owner protect it)."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(pem: bytes, where: Path) -> Ed25519PrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(
            f"{where}: not an Ed25519 private key (PEM): move it away to make a new identity"
            " (the fleet must then register the kiosk again)"
        )
    return key


def read_key(path: Path) -> Ed25519PrivateKey | None:
    """The key in ``path``; ``None`` when there is none yet."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the device key ({exc.strerror})") from None
    return key_from_pem(pem, path)


@dataclass(frozen=True, slots=True)
class Identity:
    device_id: str
    key: Ed25519PrivateKey = field(repr=False)
    fleet_url: str = ""
    """Where the fleet registers kiosks (``""``: not given)."""

    @property
    def public_raw(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode()

    @property
    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)

    def registration_uri(self, kiosk_id: str) -> str:
        """What the technician's phone reads to register the kiosk: the fleet's URL with the
        device, the kiosk and the key, else a ``kiosk-device:`` URI with the same fields."""
        query = urlencode({"device": self.device_id, "kiosk": kiosk_id, "key": self.public_b64})
        if not self.fleet_url:
            return f"kiosk-device:?v=1&{query}"
        return f"{self.fleet_url}{'&' if '?' in self.fleet_url else '?'}{query}"

    def info_toml(self) -> str:
        """``identity.toml``'s text (every value checked: no quoting needed)."""
        return (
            "# The kiosk's identity, written by kiosk provision; the private key is device.key.\n"
            f'device_id = "{self.device_id}"\n'
            f'public_key = "{self.public_b64}"      # Ed25519, raw 32 bytes, base64\n'
            f'fleet_url = "{self.fleet_url}"\n'
        )


def check_fleet_url(url: str) -> bool:
    """Empty (none), or a URL :func:`kiosk.config.https_or_loopback` takes: https://, or plain
    http to loopback (a test fleet), parsed rather than matched by prefix. No quotes either:
    :meth:`Identity.info_toml` writes it into TOML as it is."""
    from kiosk.config import https_or_loopback

    if url == "":
        return True
    return not any(c in url for c in "\"'") and https_or_loopback(url)


def load(etc: Path = ETC) -> Identity:
    """This kiosk's identity from ``etc`` (``/etc/kiosk``)."""
    import tomllib

    info_file = etc / INFO_FILE
    try:
        info = tomllib.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise IdentityError(
            f"{info_file}: not a readable identity ({type(exc).__name__}): run kiosk provision"
        ) from None
    device = info.get("device_id")
    if not isinstance(device, str) or not DEVICE_ID_RE.fullmatch(device):
        raise IdentityError(f"{info_file}: device_id: expected 1-64 of A-Z a-z 0-9 . _ -")
    key = read_key(etc / KEY_FILE)
    if key is None:
        raise IdentityError(f"{etc / KEY_FILE}: no device key: run kiosk provision")
    fleet = info.get("fleet_url", "")
    ident = Identity(device, key, fleet if isinstance(fleet, str) else "")
    if info.get("public_key") != ident.public_b64:
        raise IdentityError(
            f"{info_file}: public_key is not device.key's: run kiosk provision to rewrite it"
        )
    return ident
