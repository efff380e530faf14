"""The bundle: everything one kiosk needs in one TOML file, read and checked before anything is
written.

**The bundle** (``provisioning/bundle.toml.example`` explains every key) is one TOML file::

    version = 1
    [config.*]    kiosk.toml's tables as they are: [config.kiosk] is its [kiosk],
                  [config.hardware.validator] its [hardware.validator], [config.payby] its
                  [payby]; a provider is enabled by its table
    [secrets.*]   secrets.toml's provider tables ([secrets.payby] private_key ...); no
                  journal_key: the kiosk makes it once and keeps it
    [files]       "name" = text: files installed in /etc/kiosk that the config names
                  (PayBy's public key: "payby_public.pem")
    [identity]    fleet_url (printed with the key for registration), device_id (to override
                  the one derived from the Pi's serial)
    [udev.*]      validator / printer / scanner: vendor, product, serial of this kiosk's USB
                  units; their udev rules are generated for them

In ``[secrets.*]`` and ``[files]`` a text may be ``{ file = "PATH" }``: PATH relative to the
bundle. The config and secrets it produces are checked by the project's own reader
(:func:`kiosk.config.load`, :func:`~kiosk.config.load_secrets`) before anything is written.

Without a bundle, on a terminal, :func:`ask_bundle` makes one from a technician's answers: the
few values every kiosk needs, and for each provider a file with its tables.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk import identity
from kiosk.provision.errors import BundleError, _expected

SECTIONS = ("kiosk", "hardware", "offline", "cashout", "limits", "fleet", "tls")
DEVICES = ("validator", "printer", "scanner")
RESERVED = ("kiosk.toml", "secrets.toml", identity.KEY_FILE, identity.INFO_FILE)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_USB_RE = {"vendor": r"[0-9a-f]{4}", "product": r"[0-9a-f]{4}|", "serial": r"[A-Za-z0-9._-]*"}


@dataclass(frozen=True, slots=True)
class Usb:
    """A USB unit's udev attributes (lower-case hex ids; serial as the unit reports it)."""

    vendor: str
    product: str = ""
    serial: str = ""

    def rule(self, device: str) -> str:
        attrs = [f'ATTRS{{idVendor}}=="{self.vendor}"']
        attrs += [f'ATTRS{{idProduct}}=="{self.product}"'] if self.product else []
        attrs += [f'ATTRS{{serial}}=="{self.serial}"'] if self.serial else []
        return (
            f"# {device}: this kiosk's unit (from its provisioning bundle)\n"
            f'SUBSYSTEM=="tty", {", ".join(attrs)}, SYMLINK+="kiosk-{device}",'
            ' GROUP="dialout", MODE="0660"'
        )


@dataclass(frozen=True, slots=True)
class Bundle:
    where: str
    """The bundle's file (or "the answers"), for messages."""
    config: dict[str, Any]
    secrets: dict[str, Any] = field(repr=False)
    files: dict[str, bytes] = field(default_factory=dict)
    device_id: str = ""
    fleet_url: str = ""
    udev: dict[str, Usb] = field(default_factory=dict)
    secret_files: tuple[Path, ...] = ()
    """Files the bundle's secrets came from (removed with it by ``--remove-bundle``)."""


def _providers() -> tuple[str, ...]:
    from kiosk.providers.registry import NAMES

    return NAMES


def _text(value: object, base: Path, where: str) -> tuple[str, Path | None]:
    """A text value, or ``{ file = "PATH" }``'s text (PATH relative to ``base``)."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and set(value) == {"file"} and isinstance(value["file"], str):
        path = base / value["file"]
        try:
            return path.read_text(encoding="utf-8"), path
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise BundleError(
                f"{where}: cannot read {path} ({why}): paths are relative to the bundle"
            ) from None
    raise BundleError(f'{where}: expected a string or {{ file = "PATH" }}')


def inline_files(raw: dict[str, Any], base: Path, where: str) -> list[Path]:
    """Replaces every ``{ file = ... }`` in ``raw``'s secrets and files by its text; returns
    the secrets' files. (The prompts read each provider's file relative to itself.)"""
    read: list[Path] = []
    secrets, files = raw.get("secrets"), raw.get("files")
    for name, table in secrets.items() if isinstance(secrets, dict) else ():
        for k, v in table.items() if isinstance(table, dict) else ():
            if isinstance(v, dict):
                table[k], path = _text(v, base, f"{where}: secrets.{name}.{k}")
                read += [path] if path else []
    if isinstance(files, dict):
        for name, v in files.items():
            files[name] = _text(v, base, f"{where}: files.{name}")[0]
    return read


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise BundleError(f"{path}: not a {what} (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise BundleError(f"{path}: not valid TOML ({exc})") from None


def read_bundle(path: Path) -> Bundle:
    return parse_bundle(_read_toml(path, "bundle"), path.parent, str(path))


def _table(raw: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise _expected(where, key, "a table")
    return value


def parse_bundle(raw: dict[str, Any], base: Path, where: str) -> Bundle:
    """Checks the bundle's shape; the config's own keys are the config reader's to check."""
    raw = copy.deepcopy(raw)
    unknown = sorted(set(raw) - {"version", "config", "secrets", "files", "identity", "udev"})
    if unknown:
        raise _expected(
            where, unknown[0], "version, [config], [secrets], [files], [identity], [udev]"
        )
    if raw.get("version") != 1:
        raise _expected(where, "version", "1 (the bundle format: version = 1)")
    secret_files = inline_files(raw, base, where)
    cfg, sec = _table(raw, "config", where), _table(raw, "secrets", where)
    names = _providers()
    for key in cfg:
        if key not in SECTIONS and key not in names:
            raise _expected(
                where,
                f"config.{key}",
                f"a section ({', '.join(SECTIONS)}) or a provider of"
                f" this build ({', '.join(names)})",
            )
    if "journal_key" in sec:
        raise _expected(where, "secrets.journal_key", "no journal_key: the kiosk makes it once")
    for key in sec:
        if key not in names or not isinstance(sec[key], dict):
            raise _expected(where, f"secrets.{key}", f"a provider's table ({', '.join(names)})")
    for name in names:
        if (name in cfg) != (name in sec):
            have, lack = ("config", "secrets") if name in cfg else ("secrets", "config")
            raise _expected(where, f"{lack}.{name}", f"a table: [{have}.{name}] is given")
    device_id, fleet_url = _identity(raw, where)
    files, udev = _files(raw, where), _udev(raw, where)
    return Bundle(where, cfg, sec, files, device_id, fleet_url, udev, tuple(secret_files))


def _files(raw: Mapping[str, Any], where: str) -> dict[str, bytes]:
    out = {}
    for name, text in _table(raw, "files", where).items():
        if not _NAME_RE.fullmatch(name) or name in RESERVED:
            raise _expected(
                where, f"files.{name}", "a plain file name, not one kiosk provision writes"
            )
        out[name] = text.encode()
    return out


def _identity(raw: Mapping[str, Any], where: str) -> tuple[str, str]:
    t = _table(raw, "identity", where)
    if set(t) - {"device_id", "fleet_url"}:
        raise _expected(
            where, f"identity.{min(set(t) - {'device_id', 'fleet_url'})}", "device_id or fleet_url"
        )
    device, fleet = t.get("device_id", ""), t.get("fleet_url", "")
    if not isinstance(device, str) or (device and not identity.DEVICE_ID_RE.fullmatch(device)):
        raise _expected(where, "identity.device_id", '1-64 of A-Z a-z 0-9 . _ - (or "")')
    if not isinstance(fleet, str) or not identity.check_fleet_url(fleet):
        raise _expected(where, "identity.fleet_url", 'an https:// URL (or "")')
    return device, fleet


def _udev(raw: Mapping[str, Any], where: str) -> dict[str, Usb]:
    out = {}
    for device, t in _table(raw, "udev", where).items():
        key = f"udev.{device}"
        if device not in DEVICES or not isinstance(t, dict):
            raise _expected(where, key, f"a table for one of {', '.join(DEVICES)}")
        if set(t) - set(_USB_RE):
            raise _expected(
                where, f"{key}.{min(set(t) - set(_USB_RE))}", "vendor, product or serial"
            )
        for name, pattern in _USB_RE.items():
            value = t.get(name, "")
            if not isinstance(value, str) or not re.fullmatch(pattern, value.lower()):
                form = "4 hex digits" if name != "serial" else "letters, digits, . _ -"
                raise _expected(where, f"{key}.{name}", form)
        out[device] = Usb(t["vendor"].lower(), t.get("product", "").lower(), t.get("serial", ""))
    return out


# --- asked for, on a terminal ----------------------------------------------------------------


def ask_bundle(ask: Callable[[str], str]) -> dict[str, Any]:
    """A bundle from a technician's answers: the few values every kiosk needs, and for each
    provider a file with its ``[config.P]``, ``[secrets.P]`` and ``[files]`` (as in the
    example bundle; ``{ file = ... }`` paths relative to that file)."""
    names = _providers()
    kiosk = {
        "id": ask("kiosk id (e.g. KSK-0001): ").strip(),
        "location": ask("location (printed on receipts): ").strip(),
        "currency": ask("currency [AED]: ").strip().upper() or "AED",
    }
    hardware = {
        "validator": {
            "driver": ask("bill validator: essp, id003 or sim [essp]: ").strip() or "essp"
        },
        "printer": {"driver": ask("printer: escpos or sim [escpos]: ").strip() or "escpos"},
    }
    raw: dict[str, Any] = {
        "version": 1,
        "config": {"kiosk": kiosk, "hardware": hardware},
        "secrets": {},
        "files": {},
    }
    answer = ask(f"providers ({', '.join(names)}), comma-separated: ")
    for name in filter(None, (n.strip() for n in answer.split(","))):
        if name not in names:
            raise BundleError(f"{name}: no such provider in this build ({', '.join(names)})")
        _ask_provider(ask, name, raw)
    return raw


def _ask_provider(ask: Callable[[str], str], name: str, raw: dict[str, Any]) -> None:
    """Adds the provider's tables from the file the technician names."""
    path = Path(ask(f"{name}: the file with [config.{name}] and [secrets.{name}]: ").strip())
    part = _read_toml(path.expanduser(), "provider")
    inline_files(part, path.expanduser().parent, str(path))
    for side in ("config", "secrets"):
        table = _table(part, side, str(path))
        if not isinstance(table.get(name), dict):
            raise _expected(str(path), f"{side}.{name}", "a table")
        raw[side][name] = table[name]
    raw["files"].update(_table(part, "files", str(path)))
