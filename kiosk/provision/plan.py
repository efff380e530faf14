"""The plan: what the bundle becomes on the kiosk, every step of it; :func:`build_plan` reads,
never writes.

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

The config and the secrets are read back by the project's own reader before the plan is made
(a bad value is the bundle's key in a :class:`~kiosk.provision.errors.BundleError`). The
journal key and the device key are made once and kept across runs. Units are enabled by their
symlinks, read from their ``[Install]`` section, under any root alike.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk import identity
from kiosk.errors import ConfigError
from kiosk.identity import Identity
from kiosk.provision.bundle import DEVICES, Bundle, Usb
from kiosk.provision.errors import ProvisionError, _expected
from kiosk.provision.steps import Step, _write
from kiosk.provision.toml import Unwritable, dumps

if TYPE_CHECKING:
    from kiosk.config import Config

# --- where things go -------------------------------------------------------------------------

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
