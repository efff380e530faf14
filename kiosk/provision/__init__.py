"""``kiosk provision``: make this Pi, or a mounted SD card's root, a kiosk from one bundle.

Usage::

    kiosk provision --bundle FILE [--root DIR] [--dry-run] [--skip-hardware] [--remove-bundle]

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

**What it installs**, under ``--root`` (default ``/``)::

    /etc/kiosk                        dir   0750 root:kiosk
    <kiosk.state_dir>                 dir   0750 kiosk:kiosk
    /usr/lib/sysusers.d/kiosk.conf    0644  the service user and its groups (dialout gpio video)
    /etc/kiosk/kiosk.toml             0640  root:kiosk
    <kiosk.secrets_file>              0600  kiosk:kiosk (journal_key kept across runs)
    /etc/kiosk/<[files] name>         0640  root:kiosk
    /etc/kiosk/device.key             0600  kiosk:kiosk, created once (:mod:`kiosk.identity`)
    /etc/kiosk/identity.toml          0640  root:kiosk
    /etc/udev/rules.d/99-kiosk.rules  0644  from provisioning/99-kiosk.rules
    /etc/systemd/system/kiosk.service, kiosk-firstboot.service    0644, and their
    /etc/systemd/system/<WantedBy>.wants/ symlinks (what ``systemctl enable`` makes)

The service user: a systemd-sysusers file is always written (the clean way for images:
systemd-sysusers.service creates the user at boot from it), and ``systemd-sysusers [--root]``
runs when it is on this machine, so the owners can be set now; on ``/`` without it,
``useradd``/``usermod``. Units are enabled by their symlinks, read from their ``[Install]``
section, under any root alike; on ``/`` systemd and udev are then reloaded.

Then, on ``/`` only (``--root`` elsewhere is an image being prepared, offline), and not under
``--dry-run``: the config check, ``kiosk provider check`` for each enabled provider, and the
device self-test (``kiosk.selftest.run_cli`` when this build has it; ``--skip-hardware`` skips
it). Idempotent: each action reports changed or unchanged, and a second run with the same
bundle says "nothing to change". Not run as root, owners cannot be set: each file says who
would own it. Exit status 0, 1 when an action or a check failed, 2 for a bad bundle or usage.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kiosk import identity
from kiosk.errors import ConfigError, KioskError
from kiosk.identity import Identity

if TYPE_CHECKING:
    from kiosk.config import Config

USER = "kiosk"
GROUPS = ("dialout", "gpio", "video")
ETC = Path("/etc/kiosk")
CONFIG = ETC / "kiosk.toml"
SECRETS = ETC / "secrets.toml"
SYSUSERS = Path("/usr/lib/sysusers.d/kiosk.conf")
UDEV = Path("/etc/udev/rules.d/99-kiosk.rules")
UNIT_DIR = Path("/etc/systemd/system")
UNITS = ("kiosk.service", "kiosk-firstboot.service")
SOURCE = Path(__file__).resolve().parents[2]
"""The code's checkout (/opt/kiosk): provisioning/ and systemd/ come from here."""
SECTIONS = ("kiosk", "hardware", "offline", "cashout")
DEVICES = ("validator", "printer", "scanner")
RESERVED = ("kiosk.toml", "secrets.toml", identity.KEY_FILE, identity.INFO_FILE)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_USB_RE = {"vendor": r"[0-9a-f]{4}", "product": r"[0-9a-f]{4}|", "serial": r"[A-Za-z0-9._-]*"}


class ProvisionError(KioskError):
    """Provisioning cannot go on; the message says what to do. Exit status 1."""

    exit_status = 1


class BundleError(ProvisionError, ValueError):
    """The bundle (or the command line) is wrong: the message names the key. Exit status 2."""

    exit_status = 2


def _expected(where: str, key: str, expected: str) -> BundleError:
    return BundleError(f"{where}: {key}: expected {expected}")


# --- TOML out (the project reads TOML with tomllib, which does not write) ---------------------

_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_BARE_RE = re.compile(r"[A-Za-z0-9_-]+")


def _string(s: str, multiline: bool = True) -> str:
    literal_ok = all(c in "\n\t" or (c >= " " and c != "\x7f") for c in s)
    if multiline and "\n" in s and literal_ok and "'''" not in s and not s.endswith("'"):
        return "'''\n" + s + "'''"  # PEM keys stay readable
    text = "".join(
        _ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f" else c) for c in s
    )
    return f'"{text}"'


def _key(k: str) -> str:
    return k if _BARE_RE.fullmatch(k) else _string(k, multiline=False)


class Unwritable(ValueError):
    """A value TOML cannot hold as the config reader wants it (a date, NaN); ``key``: where."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"{key}: expected strings, numbers, booleans and lists")


def _value(v: object, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x, where) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x, where)}" for k, x in v.items()) + " }"
    raise Unwritable(where)


def dumps(table: Mapping[str, Any], prefix: str = "") -> str:
    """TOML text of ``table`` (scalars, lists, nested tables), in its order."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and (scalars or len(scalars) == len(table)) else []
    lines += [
        f"{_key(k)} = {_value(v, f'{prefix}.{k}' if prefix else k)}" for k, v in scalars.items()
    ]
    out = "".join(line + "\n" for line in lines)
    for k, v in table.items():
        if isinstance(v, dict):
            out += ("\n" if out else "") + dumps(v, f"{prefix}.{_key(k)}" if prefix else _key(k))
    return out


# --- the bundle ------------------------------------------------------------------------------


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


# --- what the bundle becomes -----------------------------------------------------------------


def config_text(bundle: Bundle) -> str:
    cfg = copy.deepcopy(bundle.config)
    cfg.setdefault("kiosk", {}).setdefault("secrets_file", str(SECRETS))
    head = (
        "# /etc/kiosk/kiosk.toml, written by kiosk provision: change the bundle, provision again.\n"
    )
    return head + dumps(cfg)


def secrets_text(bundle: Bundle, journal_key: str) -> str:
    head = "# Secrets, written by kiosk provision: mode 600, owned by the kiosk user.\n"
    return head + dumps({"journal_key": journal_key, **bundle.secrets})


def sysusers_text(home: Path) -> str:
    return (
        "# The kiosk daemon's service user, written by kiosk provision (see sysusers.d(5)).\n"
        f'u {USER} - "Cash kiosk daemon" {home} /usr/sbin/nologin\n'
        + "".join(f"m {USER} {g}\n" for g in GROUPS)
    )


def udev_rules(template: str, units: Mapping[str, Usb]) -> str:
    """``template`` (paragraphs apart by blank lines, one device each) with the paragraphs of
    each device in ``units`` replaced by one rule for that unit."""
    out: list[str] = []
    done: set[str] = set()
    for para in template.strip("\n").split("\n\n"):
        mine = set(re.findall(r'SYMLINK\+="kiosk-([a-z]+)"', para)) & set(units)
        out += [units[d].rule(d) for d in sorted(mine - done)] if mine else [para]
        done |= mine
    out += [units[d].rule(d) for d in DEVICES if d in units and d not in done]
    return "\n\n".join(out) + "\n"


def _validated(bundle: Bundle) -> Config:
    """The :class:`kiosk.config.Config` the bundle makes, read by the project's reader."""
    import tempfile

    from kiosk import config

    texts = {}
    for side, text in (("config", config_text), ("secrets", lambda b: secrets_text(b, "0" * 64))):
        try:
            texts[side] = text(bundle)
        except Unwritable as exc:
            raise _expected(
                bundle.where, f"{side}.{exc.key}", "a string, number, boolean or list"
            ) from None
    with tempfile.TemporaryDirectory() as tmp:
        cfg_file, sec_file = Path(tmp, "kiosk.toml"), Path(tmp, "secrets.toml")
        cfg_file.write_text(texts["config"], encoding="utf-8")
        _write(sec_file, texts["secrets"].encode(), 0o600)
        try:
            cfg = config.load(cfg_file)
            config.load_secrets(sec_file)
        except ConfigError as exc:
            side = "config" if exc.file == str(cfg_file) else "secrets"
            key = f"{side}.{exc.key}" if exc.key else side
            raise _expected(bundle.where, key, exc.expected) from None
    for key, path in (("state_dir", cfg.state_dir), ("secrets_file", cfg.secrets_file)):
        if not path.is_absolute() or any(c.isspace() for c in str(path)):
            raise _expected(bundle.where, f"config.kiosk.{key}", "an absolute path, no spaces")
    return cfg


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One file, directory or symlink on the kiosk, as it must be."""

    path: Path
    """On the kiosk (absolute; written under the root)."""
    mode: int
    owner: str = "root"
    group: str = "root"
    content: bytes | None = field(default=None, repr=False)
    """A file's bytes; ``None``: a directory, or a symlink when ``link`` is set."""
    link: str | None = None
    keep: bool = False
    """Created once, never replaced (the device key)."""

    @property
    def kind(self) -> str:
        return "link" if self.link is not None else "dir" if self.content is None else "file"


@dataclass(frozen=True, slots=True)
class Plan:
    root: Path
    kiosk_id: str
    state_dir: Path
    providers: tuple[str, ...]
    identity: Identity
    key_created: bool
    """The device key is new (it does not exist under the root yet)."""
    steps: tuple[Step, ...]
    bundle: Bundle = field(repr=False)

    @property
    def on_this_machine(self) -> bool:
        return self.root == Path("/")

    def under(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    def step(self, path: str | Path) -> Step:
        return next(s for s in self.steps if s.path == Path(path))


def _source(relative: str, source: Path) -> str:
    try:
        return (source / relative).read_text(encoding="utf-8")
    except OSError:
        raise ProvisionError(
            f"{source / relative}: missing: run kiosk provision from the kiosk's code (/opt/kiosk)"
        ) from None


def _unit_values(unit: str, key: str) -> list[str]:
    return [
        w
        for line in unit.splitlines()
        if line.startswith(f"{key}=")
        for w in line.split("=", 1)[1].split()
    ]


def _unit_steps(source: Path) -> tuple[list[Step], list[str]]:
    steps, daemon = [], ""
    for name in UNITS:
        text = _source(f"systemd/{name}", source)
        daemon = daemon or text
        path = UNIT_DIR / name
        steps.append(Step(path, 0o644, content=text.encode()))
        for kind, key in ((".wants", "WantedBy"), (".requires", "RequiredBy")):
            for target in _unit_values(text.partition("[Install]")[2], key):
                steps.append(Step(UNIT_DIR / f"{target}{kind}" / name, 0o777, link=str(path)))
    writable = [p.lstrip("-") for p in _unit_values(daemon, "ReadWritePaths")]
    writable += [f"/var/lib/{d}" for d in _unit_values(daemon, "StateDirectory")]
    return steps, writable if "ProtectSystem=strict" in daemon else []


def _journal_key(path: Path) -> str:
    """The existing secrets file's journal key (never changed), else a new one."""
    import secrets as random
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return random.token_hex(32)
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisionError(f"{path}: cannot read the secrets file ({exc}): run as root") from None
    try:
        key = tomllib.loads(text).get("journal_key")
    except tomllib.TOMLDecodeError:
        key = None
    if isinstance(key, str) and re.fullmatch(r"[0-9a-fA-F]{64,}", key):
        return key
    raise ProvisionError(
        f"{path}: no valid journal_key in the existing secrets file: restore it, or move the"
        " file away to make a new key (the journal's code hashes then no longer match)"
    )


def build_plan(bundle: Bundle, root: Path, source: Path = SOURCE) -> Plan:
    """Everything the bundle asks for under ``root``; reads, never writes."""
    cfg = _validated(bundle)
    units, writable = _unit_steps(source)
    if writable and not any(cfg.state_dir.is_relative_to(w) for w in writable):
        raise _expected(
            bundle.where,
            "config.kiosk.state_dir",
            f"a directory kiosk.service lets the daemon write ({' '.join(writable)})",
        )
    key = identity.read_key(root / ETC.relative_to("/") / identity.KEY_FILE)
    ident = Identity(
        bundle.device_id or identity.device_id(root), key or identity.new_key(), bundle.fleet_url
    )
    journal_key = _journal_key(root / cfg.secrets_file.relative_to("/"))
    rules = udev_rules(_source("provisioning/99-kiosk.rules", source), bundle.udev)
    steps = [
        Step(SYSUSERS, 0o644, content=sysusers_text(cfg.state_dir).encode()),
        Step(ETC, 0o750, "root", USER),
        Step(cfg.state_dir, 0o750, USER, USER),
        Step(CONFIG, 0o640, "root", USER, content=config_text(bundle).encode()),
        Step(cfg.secrets_file, 0o600, USER, USER, secrets_text(bundle, journal_key).encode()),
        *(Step(ETC / n, 0o640, "root", USER, data) for n, data in bundle.files.items()),
        Step(
            ETC / identity.KEY_FILE, 0o600, USER, USER, identity.private_pem(ident.key), keep=True
        ),
        Step(ETC / identity.INFO_FILE, 0o640, "root", USER, ident.info_toml().encode()),
        Step(UDEV, 0o644, content=rules.encode()),
        *units,
    ]
    return Plan(
        root,
        cfg.kiosk_id,
        cfg.state_dir,
        tuple(cfg.providers),
        ident,
        key is None,
        tuple(steps),
        bundle,
    )


# --- the machine -----------------------------------------------------------------------------


class System:
    """What provisioning asks of the machine beyond files (tests pass a subclass)."""

    def euid(self) -> int:
        return os.geteuid()

    def which(self, name: str) -> str | None:
        import shutil

        return shutil.which(name)

    def run(self, argv: Sequence[str]) -> tuple[int, str]:
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=300, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, str(exc)
        return done.returncode, (done.stderr or done.stdout).strip()

    def chown(self, path: Path, uid: int, gid: int) -> None:
        os.chown(path, uid, gid, follow_symlinks=False)


class Status(StrEnum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    PENDING = "pending"
    FAILED = "failed"
    OK = "ok"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    status: Status
    detail: str = ""
    check: bool = False
    """A check (config, provider, self-test), not an action."""


def _ids(root: Path, owner: str, group: str) -> tuple[int, int] | None:
    """The owner's uid and the group's gid in the root's own passwd and group files."""

    def lookup(file: str, name: str) -> int | None:
        if name == "root":
            return 0
        for line in _lines(root / "etc" / file):
            fields_ = line.split(":")
            if len(fields_) > 2 and fields_[0] == name and fields_[2].isdigit():
                return int(fields_[2])
        return None

    uid, gid = lookup("passwd", owner), lookup("group", group)
    return None if uid is None or gid is None else (uid, gid)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def differences(step: Step, target: Path) -> list[str]:
    """What differs between ``target`` and the step; ProvisionError for a thing in the way."""
    if step.link is not None:
        if target.is_symlink():
            return [] if str(target.readlink()) == step.link else ["link"]
        if target.exists():
            raise ProvisionError(f"{target}: not a symlink: move it away")
        return ["created"]
    if target.is_symlink() or (target.exists() and target.is_dir() != (step.content is None)):
        raise ProvisionError(f"{target}: in the way of a {step.kind}: move it away")
    if not target.exists():
        return ["created"]
    changes = []
    if step.content is not None and not step.keep and target.read_bytes() != step.content:
        changes.append("content")
    mode = stat.S_IMODE(target.stat().st_mode)
    if mode != step.mode:
        changes.append(f"mode {mode:04o} -> {step.mode:04o}")
    return changes


def _write(
    target: Path, data: bytes, mode: int, chown: Callable[[Path], None] | None = None
) -> None:
    """Atomically: a temporary file with the mode (and owner), fsynced, renamed over."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.provision")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.chmod(mode)
    if chown is not None:
        chown(tmp)
    tmp.replace(target)


def _make(step: Step, target: Path, chown: Callable[[Path], None] | None) -> None:
    if step.link is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.symlink_to(step.link)
    elif step.content is None:
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(step.mode)
        if chown is not None:
            chown(target)
    elif step.keep and target.exists():
        target.chmod(step.mode)
    else:
        _write(target, step.content, step.mode, chown)


@dataclass(frozen=True, slots=True)
class Run:
    plan: Plan
    system: System
    dry_run: bool

    def step(self, step: Step, changes: list[str]) -> Outcome:
        target = self.plan.under(step.path)
        ids = _ids(self.plan.root, step.owner, step.group)
        chown = self._chowner(ids) if step.link is None else None
        if changes and not self.dry_run:
            _make(step, target, chown)
        note = ""
        exists = target.exists() or target.is_symlink()
        if step.link is None and exists and (ids is None or _owner_of(target) != ids):
            who = f"{step.owner}:{step.group}"
            if self.system.euid() != 0:
                note = f"would be owned by {who}: run as root"
            elif ids is None:
                note = f"would be owned by {who}: no such user or group under {self.plan.root} yet"
            elif chown is not None:
                changes = [*changes, f"owner {who}"]
                if not self.dry_run:
                    chown(target)
        detail = ", ".join(changes) + ("; " if changes and note else "") + note
        return Outcome(str(step.path), Status.CHANGED if changes else Status.UNCHANGED, detail)

    def _chowner(self, ids: tuple[int, int] | None) -> Callable[[Path], None] | None:
        """Sets the owner, when running as root and the root knows the user and group."""
        if ids is None or self.system.euid() != 0:
            return None
        uid, gid = ids
        return lambda path: self.system.chown(path, uid, gid)


def _owner_of(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


def missing_membership(root: Path) -> list[str]:
    """What the root's passwd and group files lack: the user, its groups."""
    if not any(line.startswith(f"{USER}:") for line in _lines(root / "etc/passwd")):
        return [f"user {USER}", *(f"{USER} in {g}" for g in GROUPS)]
    members = {
        f[0]: f[3].split(",")
        for f in (ln.split(":") for ln in _lines(root / "etc/group"))
        if len(f) > 3
    }
    return [f"{USER} in {g}" for g in GROUPS if USER not in members.get(g, [])]


def _user_commands(run: Run, home: Path) -> list[list[str]] | None:
    """systemd-sysusers on our sysusers.d file; else, on ``/``, useradd and usermod."""
    root, here = run.plan.root, run.plan.on_this_machine
    tool = run.system.which("systemd-sysusers")
    if tool is not None:
        return [[tool, *([] if here else [f"--root={root}"]), str(run.plan.under(SYSUSERS))]]
    if not here or run.system.which("useradd") is None:
        return None
    groups = {f.split(":")[0] for f in _lines(root / "etc/group")}
    argv = [["groupadd", "--system", g] for g in GROUPS if g not in groups]
    if f"user {USER}" in missing_membership(root):
        useradd = "useradd --system --user-group --no-create-home --shell /usr/sbin/nologin"
        argv.append([*useradd.split(), "--home-dir", str(home), USER])
    return [*argv, ["usermod", "-a", "-G", ",".join(GROUPS), USER]]


def ensure_user(run: Run) -> Outcome:
    name, root = f"service user {USER}", run.plan.root
    missing = missing_membership(root)
    if not missing:
        return Outcome(name, Status.UNCHANGED, f"in {' '.join(GROUPS)}")
    commands = _user_commands(run, run.plan.state_dir)
    if commands is None:
        return Outcome(
            name,
            Status.PENDING,
            f"{', '.join(missing)}: no systemd-sysusers here; systemd-sysusers.service makes"
            " the user at the kiosk's boot: provision again there to set the owners",
        )
    if run.dry_run:
        return Outcome(name, Status.CHANGED, f"{', '.join(missing)} (by {commands[0][0]})")
    (root / "etc").mkdir(parents=True, exist_ok=True)  # a bare folder: the tools lock etc/
    for argv in commands:
        rc, out = run.system.run(argv)
        if rc != 0:
            return Outcome(name, Status.FAILED, f"{' '.join(argv)}: exit {rc}: {out}")
    still = missing_membership(root)
    if still:
        return Outcome(
            name, Status.FAILED, f"still missing after {commands[0][0]}: {', '.join(still)}"
        )
    return Outcome(name, Status.CHANGED, f"{', '.join(missing)} (by {Path(commands[0][0]).name})")


def reloads(run: Run, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """On ``/``: systemd and udev read what changed."""
    if not run.plan.on_this_machine or run.dry_run:
        return []
    changed = {Path(o.name) for o in outcomes if o.status is Status.CHANGED}
    commands = (
        [["systemctl", "daemon-reload"]] if any(p.is_relative_to(UNIT_DIR) for p in changed) else []
    )
    if UDEV in changed:
        commands += [
            ["udevadm", "control", "--reload"],
            ["udevadm", "trigger", "--subsystem-match=tty", "--action=add"],
        ]
    result = []
    for argv in commands:
        rc, text = run.system.run(argv)
        result.append(
            Outcome(" ".join(argv), Status.OK if rc == 0 else Status.FAILED, text if rc else "")
        )
    return result


# --- checks ----------------------------------------------------------------------------------


def _provider_checks(plan: Plan) -> list[Outcome]:
    from kiosk import config
    from kiosk.provider_check import check
    from kiosk.providers.registry import sections

    try:
        cfg = config.load(plan.under(CONFIG))
        sec = config.load_secrets(cfg.secrets_file)
        for name, section in sections().items():
            if name in cfg.providers and section.local_check is not None:
                section.local_check(cfg, sec)
    except ConfigError as exc:
        return [Outcome("config check", Status.FAILED, str(exc), check=True)]
    result = [Outcome("config check", Status.OK, str(cfg.file), check=True)]
    for name in plan.providers:
        try:
            ok, message = check(cfg, sec, name)
        except KioskError as exc:
            ok, message = False, str(exc)
        result.append(
            Outcome(
                f"provider check {name}", Status.OK if ok else Status.FAILED, message, check=True
            )
        )
    return result


def selftest(config_file: Path, skip_hardware: bool, why: str = "") -> Outcome:
    """``kiosk.selftest.run_cli(config_file)`` when this build has it."""
    name = "self-test"
    if skip_hardware or why:
        return Outcome(
            name, Status.SKIPPED, "--skip-hardware" if skip_hardware else why, check=True
        )
    try:
        run_cli = getattr(importlib.import_module("kiosk.selftest"), "run_cli", None)
    except ModuleNotFoundError as exc:
        if exc.name != "kiosk.selftest":
            return Outcome(
                name, Status.FAILED, f"kiosk.selftest cannot be imported: {exc}", check=True
            )
        run_cli = None
    if not callable(run_cli):
        return Outcome(name, Status.SKIPPED, "not available in this build", check=True)
    try:
        rc = int(run_cli(config_file))
    except KioskError as exc:
        return Outcome(name, Status.FAILED, str(exc), check=True)
    return Outcome(name, Status.OK if rc == 0 else Status.FAILED, f"exit status {rc}", check=True)


def checks(run: Run, skip_hardware: bool) -> list[Outcome]:
    """On ``/`` and not a dry run: the config check, each provider's check, the self-test."""
    plan, why = run.plan, ""
    if run.dry_run:
        why = "--dry-run"
    elif not plan.on_this_machine:
        why = f"--root {plan.root}: checked when provisioned on the kiosk itself"
    if why:
        result = [
            Outcome(f"provider check {n}", Status.SKIPPED, why, check=True) for n in plan.providers
        ]
    else:
        result = _provider_checks(plan)
    return [*result, selftest(plan.under(CONFIG), skip_hardware, why)]


# --- running it ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    plan: Plan
    outcomes: tuple[Outcome, ...]
    dry_run: bool

    def outcome(self, name: str | Path) -> Outcome:
        return next(o for o in self.outcomes if o.name == str(name))

    @property
    def changed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is Status.CHANGED]

    @property
    def failed(self) -> bool:
        return any(o.status is Status.FAILED for o in self.outcomes)

    @property
    def actions_failed(self) -> bool:
        return any(o.status is Status.FAILED and not o.check for o in self.outcomes)


def _line(o: Outcome, dry_run: bool) -> str:
    word = "would change" if dry_run and o.status is Status.CHANGED else o.status.value
    return f"  {word:<12} {o.name:<44} {o.detail}".rstrip()


def show_identity(plan: Plan, dry_run: bool, out: TextIO) -> None:
    """The device's public key and a terminal QR of its registration URI."""
    import segno

    ident = plan.identity
    if plan.key_created and dry_run:
        print(f"device {ident.device_id}: a new Ed25519 key would be made", file=out)
        return
    state = "a new key" if plan.key_created else "its key, kept"
    print(f"device {ident.device_id} ({state}), public key (Ed25519):", file=out)
    print(ident.public_pem.rstrip() + f"\n  base64: {ident.public_b64}", file=out)
    uri = ident.registration_uri(plan.kiosk_id)
    print(f"register it with the fleet (scan the QR): {uri}", file=out)
    segno.make_qr(uri, error="m").terminal(out=out, compact=True, border=2)


def provision(
    bundle: Bundle,
    root: Path,
    *,
    system: System,
    dry_run: bool = False,
    skip_hardware: bool = False,
    out: TextIO = sys.stdout,
    source: Path = SOURCE,
) -> Report:
    plan = build_plan(bundle, root, source)
    run = Run(plan, system, dry_run)
    print(
        f"kiosk provision {plan.kiosk_id} into {root}"
        + (" (dry run: nothing is written)" if dry_run else ""),
        file=out,
    )
    todo = [(s, differences(s, plan.under(s.path))) for s in plan.steps]  # before any write
    outcomes: list[Outcome] = []

    def report(*new: Outcome) -> None:
        outcomes.extend(new)
        for o in new:
            print(_line(o, dry_run), file=out)

    for step, changes in todo:
        report(run.step(step, changes))
        if step.path == SYSUSERS:
            report(ensure_user(run))
    report(*reloads(run, outcomes))
    show_identity(plan, dry_run, out)
    report(*checks(run, skip_hardware))
    n = len([o for o in outcomes if o.status is Status.CHANGED])
    owners = len([o for o in outcomes if "would be owned" in o.detail])
    summary = "nothing to change" if not n else f"{'would change' if dry_run else 'changed'}: {n}"
    print(summary + (f"; {owners} owners not set (run as root)" if owners else ""), file=out)
    return Report(plan, tuple(outcomes), dry_run)


def remove_securely(path: Path) -> None:
    """Overwrite the file with zeros, sync, then unlink it (it holds secrets)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())
    path.unlink()


def _remove_bundle(bundle: Bundle, report: Report, out: TextIO) -> None:
    paths = [Path(bundle.where), *bundle.secret_files]
    if report.dry_run:
        print(f"would remove (overwritten, then deleted): {' '.join(map(str, paths))}", file=out)
    elif report.actions_failed:
        print(f"kept {bundle.where}: provisioning failed, fix it and run again", file=out)
    else:
        for path in paths:
            remove_securely(path)
        print(f"removed (overwritten, then deleted): {' '.join(map(str, paths))}", file=out)


# --- the command -----------------------------------------------------------------------------


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


def _bundle(args: argparse.Namespace) -> Bundle:
    if args.bundle:
        return read_bundle(Path(args.bundle))
    if args.remove_bundle:
        raise BundleError("--remove-bundle needs --bundle FILE")
    if not sys.stdin.isatty():
        raise BundleError(
            "give --bundle FILE (see provisioning/bundle.toml.example),"
            " or run on a terminal to be asked"
        )
    print(
        "kiosk provision: no --bundle given, a few questions (Ctrl-C stops; nothing is"
        " written before the last answer)."
    )
    try:
        raw = ask_bundle(input)
    except EOFError:
        raise BundleError("no answer (end of input): give --bundle FILE") from None
    return parse_bundle(raw, Path.cwd(), "the answers")


def run_command(args: argparse.Namespace, system: System, out: TextIO) -> int:
    root = Path(args.root)
    if not root.is_dir():
        raise BundleError(f"--root {root}: no such directory")
    root = root.resolve()
    if root == Path("/") and system.euid() != 0 and not args.dry_run:
        raise BundleError(
            "run as root (sudo) to provision this machine; --dry-run shows what would change"
        )
    bundle = _bundle(args)
    report = provision(
        bundle, root, system=system, dry_run=args.dry_run, skip_hardware=args.skip_hardware, out=out
    )
    if args.remove_bundle:
        _remove_bundle(bundle, report, out)
    return 1 if report.failed else 0


def cmd_provision(args: argparse.Namespace) -> int:
    """``kiosk provision``: every error is a message and an exit status, never a traceback."""
    try:
        return run_command(args, System(), sys.stdout)
    except KioskError as exc:
        print(f"kiosk provision: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))
    except OSError as exc:
        print(f"kiosk provision: {exc} (run as root?)", file=sys.stderr)
        return 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers ``kiosk provision`` (``kiosk.cli.build_parser`` calls it)."""
    p = sub.add_parser(
        "provision",
        help="make this Pi (or a mounted SD card) a kiosk from a provisioning bundle",
        description="Write the config, the secrets, the device identity, the udev rules, the"
        " service user and the systemd units from one bundle (provisioning/bundle.toml.example);"
        " then, on /, check each provider and run the self-test. Idempotent. Exit 0 done, 1 an"
        " action or a check failed, 2 a bad bundle or usage.",
    )
    p.add_argument(
        "--bundle",
        metavar="FILE",
        help="the kiosk's bundle; without it, on a terminal, a few questions",
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        default="/",
        help="install under DIR: a mounted SD card's root or a test folder (default /);"
        " provider checks and the self-test run only on /",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    p.add_argument("--skip-hardware", action="store_true", help="do not run the device self-test")
    p.add_argument(
        "--remove-bundle",
        action="store_true",
        help="after a successful provision, overwrite and delete the bundle and the secret"
        " files it names",
    )
    p.set_defaults(fn=cmd_provision)
