"""``kiosk provision``: a kiosk from the example bundle, into a temporary root (no root needed,
nothing beyond the temp dir: provider checks are skipped under --root, the machine's tools are
a fake)."""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import shutil
import stat
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk import config, identity, provision
from kiosk.provision import Status, verify

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "provisioning" / "bundle.toml.example"
SERIAL = "10000000abcdef01"


class FakeSystem(provision.System):
    """Not root, no systemd-sysusers or useradd; records what it is asked."""

    def __init__(self, euid: int = 1000, tools: tuple[str, ...] = ()) -> None:
        self._euid, self.tools = euid, tools
        self.commands: list[list[str]] = []
        self.chowns: list[tuple[Path, int, int]] = []

    def euid(self) -> int:
        return self._euid

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.tools else None

    def run(self, argv):  # type: ignore[no-untyped-def]
        self.commands.append(list(argv))
        return 0, ""

    def chown(self, path: Path, uid: int, gid: int) -> None:
        self.chowns.append((path, uid, gid))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "proc").mkdir(parents=True)
    (r / "proc/cpuinfo").write_text(f"processor\t: 0\nSerial\t\t: {SERIAL}\nModel\t\t: Pi 4\n")
    return r


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    system = FakeSystem()
    monkeypatch.setattr(provision, "System", lambda: system)
    return system


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="kiosk")
    provision.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["provision", *argv])
    return int(args.fn(args))


def run(bundle: Path, root: Path, **kw) -> provision.Report:  # type: ignore[no-untyped-def]
    system = kw.pop("system", FakeSystem())
    return provision.provision(
        provision.read_bundle(bundle), root, system=system, out=io.StringIO(), **kw
    )


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    out = {}
    for p in sorted(root.rglob("*")):
        data = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        out[str(p.relative_to(root))] = (p.lstat().st_mode, data)
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_twice_from_the_example_bundle_the_second_run_changes_nothing(
    root: Path, fake: FakeSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("--bundle", str(EXAMPLE), "--root", str(root)) == 0
    first = capsys.readouterr().out
    assert "changed      /etc/kiosk/secrets.toml" in first and "nothing to change" not in first
    before = tree(root)
    assert cli("--bundle", str(EXAMPLE), "--root", str(root)) == 0
    second = capsys.readouterr().out
    assert "nothing to change" in second and "  changed " not in second
    assert tree(root) == before
    assert fake.commands == []  # no tool here: the user is pending, made at the kiosk's boot
    report = run(EXAMPLE, root)
    assert report.changed == []
    assert report.outcome("service user kiosk").status is Status.PENDING
    assert {o.status for o in report.outcomes} <= {Status.UNCHANGED, Status.PENDING, Status.SKIPPED}


def test_files_modes_and_intended_owners(root: Path) -> None:
    report = run(EXAMPLE, root)
    plan = report.plan
    expected = {
        "/etc/kiosk": (0o750, "root", "kiosk"),
        "/var/lib/kiosk": (0o750, "kiosk", "kiosk"),
        "/etc/kiosk/kiosk.toml": (0o640, "root", "kiosk"),
        "/etc/kiosk/secrets.toml": (0o600, "kiosk", "kiosk"),
        "/etc/kiosk/payby_public.pem": (0o640, "root", "kiosk"),
        "/etc/kiosk/device.key": (0o600, "kiosk", "kiosk"),
        "/etc/kiosk/identity.toml": (0o640, "root", "kiosk"),
        "/etc/udev/rules.d/99-kiosk.rules": (0o644, "root", "root"),
        "/usr/lib/sysusers.d/kiosk.conf": (0o644, "root", "root"),
        "/etc/systemd/system/kiosk.service": (0o644, "root", "root"),
        "/etc/systemd/system/kiosk-firstboot.service": (0o644, "root", "root"),
    }
    for path, (want_mode, owner, group) in expected.items():
        step = plan.step(path)
        assert (step.mode, step.owner, step.group) == (want_mode, owner, group), path
        assert mode(root / path.lstrip("/")) == want_mode, path
    detail = report.outcome("/etc/kiosk/secrets.toml").detail
    assert "would be owned by kiosk:kiosk: run as root" in detail
    sysusers = (root / "usr/lib/sysusers.d/kiosk.conf").read_text()
    assert 'u kiosk - "Cash kiosk daemon" /var/lib/kiosk /usr/sbin/nologin' in sysusers
    assert all(f"m kiosk {g}\n" in sysusers for g in ("dialout", "gpio", "video"))


def test_the_units_are_copied_and_enabled_by_their_wants_symlinks(root: Path) -> None:
    run(EXAMPLE, root)
    units = root / "etc/systemd/system"
    for name in ("kiosk.service", "kiosk-firstboot.service"):
        assert (units / name).read_bytes() == (REPO / "systemd" / name).read_bytes()
        link = units / "multi-user.target.wants" / name
        assert link.is_symlink() and str(link.readlink()) == f"/etc/systemd/system/{name}"


def test_the_generated_config_and_secrets_load_with_the_project_reader(root: Path) -> None:
    run(EXAMPLE, root)
    cfg = config.load(root / "etc/kiosk/kiosk.toml")
    assert (cfg.kiosk_id, cfg.currency.code) == ("KSK-0001", "AED")
    assert set(cfg.providers) == {"payby", "paysera", "rapyd", "cashii"}
    assert cfg.secrets_file == Path("/etc/kiosk/secrets.toml")
    secrets = config.load_secrets(root / cfg.secrets_file.relative_to("/"))
    assert len(secrets.journal_key) == 32
    assert b"PRIVATE KEY-----" in secrets.providers["payby"].private_key
    assert b"PUBLIC KEY-----" in (root / "etc/kiosk/payby_public.pem").read_bytes()


def test_identity_and_journal_key_are_kept_across_runs(root: Path, tmp_path: Path) -> None:
    first = run(EXAMPLE, root)
    assert first.plan.key_created
    key = (root / "etc/kiosk/device.key").read_bytes()
    journal_key = tomllib.loads((root / "etc/kiosk/secrets.toml").read_text())["journal_key"]
    changed = tmp_path / "changed.toml"  # the same kiosk, moved: its config changes
    changed.write_text(EXAMPLE.read_text().replace("Store name, street, city", "Mall, level 2"))
    second = run(changed, root)
    assert not second.plan.key_created
    assert [o.name for o in second.changed] == ["/etc/kiosk/kiosk.toml"]
    assert (root / "etc/kiosk/device.key").read_bytes() == key
    secrets = tomllib.loads((root / "etc/kiosk/secrets.toml").read_text())
    assert secrets["journal_key"] == journal_key
    me = identity.load(root / "etc/kiosk")
    assert me.device_id == f"rpi-{SERIAL}"
    assert me.public_b64 == first.plan.identity.public_b64 == second.plan.identity.public_b64
    assert me.fleet_url == "https://fleet.example.com/register"
    assert len(me.sign(b"heartbeat")) == 64


def test_the_public_key_and_its_qr_are_printed(
    root: Path, fake: FakeSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("--bundle", str(EXAMPLE), "--root", str(root)) == 0
    out = capsys.readouterr().out
    me = identity.load(root / "etc/kiosk")
    assert me.public_pem.strip() in out and me.public_b64 in out
    assert f"device={me.device_id}&kiosk=KSK-0001&key=" in out
    assert "▀" in out or "▄" in out  # the terminal QR


def test_a_mode_or_a_file_changed_by_hand_is_put_back(root: Path) -> None:
    run(EXAMPLE, root)
    secrets = root / "etc/kiosk/secrets.toml"
    secrets.chmod(0o644)
    (root / "etc/udev/rules.d/99-kiosk.rules").write_text("# edited\n")
    report = run(EXAMPLE, root)
    assert report.outcome("/etc/kiosk/secrets.toml").detail.startswith("mode 0644 -> 0600")
    assert report.outcome("/etc/udev/rules.d/99-kiosk.rules").detail.startswith("content")
    assert mode(secrets) == 0o600
    assert run(EXAMPLE, root).changed == []


def test_dry_run_writes_nothing(
    root: Path, fake: FakeSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(root)
    assert cli("--bundle", str(EXAMPLE), "--root", str(root), "--dry-run") == 0
    out = capsys.readouterr().out
    assert tree(root) == before
    assert "would change" in out and "a new Ed25519 key would be made" in out
    run(EXAMPLE, root)
    provisioned = tree(root)
    report = run(EXAMPLE, root, dry_run=True)
    assert report.changed == [] and tree(root) == provisioned


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version = 1\n[config.kiosk\n", "not valid TOML"),
        (b"\xff\xfe".decode("latin-1"), "not UTF-8"),
        ("[config.kiosk]\nid = 'K1'\n", "version: expected 1"),
        ("version = 1\n[config.kiosk]\nid = 'K1'\n[config.frobpay]\nx = 1\n", "config.frobpay"),
        ("version = 1\n[config.kiosk]\nid = 'K1'\ncurrency = 'XXX'\n", "config.kiosk.currency"),
        ("version = 1\n[config.kiosk]\nid = 'K1'\ncolour = 'red'\n", "config.kiosk.colour"),
        ("version = 1\n[config.kiosk]\nid = 'K1'\nwhen = 1979-05-27\n", "config.kiosk.when"),
        ("version = 1\n[config.kiosk]\nid = 'K1'\n[secrets]\njournal_key = 'ab'\n", "journal_key"),
        (
            "version = 1\n[config.kiosk]\nid = 'K1'\n"
            "[config.paysera]\nclient_id = 'c'\nallowance_id = 1\n",
            "secrets.paysera: expected a table",
        ),
        (
            "version = 1\n[config.kiosk]\nid = 'K1'\n[config.paysera]\nclient_id = 'c'\n"
            "allowance_id = 1\n[secrets.paysera]\nmac_key = { file = 'missing.key' }\n",
            "missing.key",
        ),
        (
            "version = 1\n[config.kiosk]\nid = 'K1'\n[config.paysera]\nclient_id = 'c'\n"
            "allowance_id = 1\n[secrets.paysera]\nmac_key = 'short'\n",
            "secrets.paysera.mac_key",
        ),
        ("version = 1\n[config.kiosk]\nid = 'K1'\nstate_dir = 'var/k'\n", "state_dir"),
        ("version = 1\n[config.kiosk]\nid = 'K1'\n[udev.validator]\nvendor = 'xyz'\n", "vendor"),
        ("version = 1\n[config.kiosk]\nid = 'K1'\n[files]\n'../x' = 'a'\n", "files"),
        ("version = 1\n[config.kiosk]\nid = 'K1'\n[identity]\nfleet_url = 'ftp://x'\n", "fleet"),
    ],
)
def test_a_bad_bundle_is_refused_cleanly(
    text: str,
    message: str,
    root: Path,
    tmp_path: Path,
    fake: FakeSystem,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = tmp_path / "bad.toml"
    bundle.write_text(text, encoding="latin-1")
    assert cli("--bundle", str(bundle), "--root", str(root)) == 2
    err = capsys.readouterr().err
    assert err.startswith("kiosk provision: ") and message in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in root.iterdir()) == ["proc"]  # nothing written


def test_missing_bundle_root_or_terminal_are_usage_errors(
    root: Path,
    fake: FakeSystem,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli("--bundle", str(root / "nope.toml"), "--root", str(root)) == 2
    assert "no such bundle file" in capsys.readouterr().err
    assert cli("--bundle", str(EXAMPLE), "--root", str(root / "nope")) == 2
    assert "no such directory" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli("--root", str(root)) == 2
    assert "give --bundle FILE" in capsys.readouterr().err
    assert cli("--bundle", str(EXAMPLE)) == 2  # on / without root
    assert "run as root" in capsys.readouterr().err


def test_remove_bundle_overwrites_and_deletes_it_and_its_secret_files(
    root: Path, tmp_path: Path, fake: FakeSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/rapyd.key").write_text("a-rapyd-secret-key-of-enough-length")
    bundle = tmp_path / "kiosk-bundle.toml"
    bundle.write_text(
        EXAMPLE.read_text().replace(
            'secret_key = "REPLACE-with-Rapyd-secret-key"',
            'secret_key = { file = "keys/rapyd.key" }',
        )
    )
    assert cli("--bundle", str(bundle), "--root", str(root), "--dry-run", "--remove-bundle") == 0
    assert bundle.exists() and "would remove" in capsys.readouterr().out
    assert cli("--bundle", str(bundle), "--root", str(root), "--remove-bundle") == 0
    assert "removed (overwritten, then deleted)" in capsys.readouterr().out
    assert not bundle.exists() and not (tmp_path / "keys/rapyd.key").exists()
    secrets = tomllib.loads((root / "etc/kiosk/secrets.toml").read_text())
    assert secrets["rapyd"]["secret_key"] == "a-rapyd-secret-key-of-enough-length"


def test_remove_securely_overwrites_before_unlinking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.toml"
    path.write_bytes(b"secret" * 10)
    seen: list[bytes] = []
    monkeypatch.setattr(
        Path, "unlink", lambda self, missing_ok=False: seen.append(self.read_bytes())
    )
    provision.remove_securely(path)
    assert seen == [b"\0" * 60]


def test_udev_rules_are_made_for_this_kiosks_units(root: Path, tmp_path: Path) -> None:
    run(EXAMPLE, root)
    rules = (root / "etc/udev/rules.d/99-kiosk.rules").read_text()
    assert 'ATTRS{idVendor}=="191c", SYMLINK+="kiosk-validator"' in rules
    assert 'ATTRS{idVendor}=="067b", ATTRS{idProduct}=="2303", SYMLINK+="kiosk-printer"' in rules
    assert "KIOSKVAL01" not in rules  # the template's example validator is replaced
    bundle = tmp_path / "b.toml"
    text = EXAMPLE.read_text()
    bundle.write_text(text[: text.index("[udev.validator]")])
    other = tmp_path / "other"
    (other / "etc").mkdir(parents=True)
    (other / "etc/machine-id").write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    run(bundle, other)
    template = (REPO / "provisioning/99-kiosk.rules").read_text()
    assert (other / "etc/udev/rules.d/99-kiosk.rules").read_text() == template
    units = {"scanner": provision.Usb("1eab", "1a03", "SCN-1")}
    assert provision.udev_rules(template, units).endswith(
        'ATTRS{serial}=="SCN-1", SYMLINK+="kiosk-scanner", GROUP="dialout", MODE="0660"\n'
    )


def test_as_root_the_owners_come_from_the_roots_own_passwd(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nkiosk:x:998:997::/:/bin/false\n")
    (root / "etc/group").write_text(
        "root:x:0:\ndialout:x:20:kiosk\ngpio:x:993:kiosk\nvideo:x:44:kiosk\nkiosk:x:997:\n"
    )
    system = FakeSystem(euid=0)
    report = run(EXAMPLE, root, system=system)
    assert report.outcome("service user kiosk").status is Status.UNCHANGED
    owners = {p.name.strip("."): (uid, gid) for p, uid, gid in system.chowns}
    assert owners["secrets.toml.provision"] == (998, 997)  # before the rename: never mis-owned
    assert owners["kiosk.toml.provision"] == (0, 997)
    assert owners["kiosk"] == (998, 997)  # the state directory
    assert not any("would be owned" in o.detail for o in report.outcomes)


def test_the_user_is_made_with_systemd_sysusers_under_the_root(root: Path) -> None:
    system = FakeSystem(tools=("systemd-sysusers",))
    report = run(EXAMPLE, root, system=system)
    conf = root / "usr/lib/sysusers.d/kiosk.conf"
    assert system.commands == [["/usr/bin/systemd-sysusers", f"--root={root}", str(conf)]]
    # the fake made no user: the report says so rather than pretending
    assert report.outcome("service user kiosk").status is Status.FAILED
    assert report.failed and report.actions_failed


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or os.geteuid() != 0,
    reason="needs systemd-sysusers and root (to chown)",
)
def test_for_real_as_root_with_systemd_sysusers(root: Path) -> None:
    report = run(EXAMPLE, root, system=provision.System())
    assert not report.failed
    passwd = (root / "etc/passwd").read_text()
    uid = int(next(ln for ln in passwd.splitlines() if ln.startswith("kiosk:")).split(":")[2])
    assert (root / "etc/kiosk/secrets.toml").stat().st_uid == uid
    assert (root / "etc/kiosk/kiosk.toml").stat().st_uid == 0
    assert run(EXAMPLE, root, system=provision.System()).changed == []


def test_checks_are_skipped_off_the_machine_and_the_selftest_is_optional(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = run(EXAMPLE, root)
    checks = {o.name: o for o in report.outcomes if o.check}
    assert {checks[f"provider check {n}"].status for n in report.plan.providers} == {Status.SKIPPED}
    assert "checked when provisioned on the kiosk" in checks["self-test"].detail
    assert run(EXAMPLE, root, skip_hardware=True).outcome("self-test").detail == "--skip-hardware"

    monkeypatch.setitem(sys.modules, "kiosk.selftest", types.ModuleType("kiosk.selftest"))
    absent = provision.selftest(Path("/etc/kiosk/kiosk.toml"), skip_hardware=False)
    assert (absent.status, absent.detail) == (Status.SKIPPED, "not available in this build")
    module = types.ModuleType("kiosk.selftest")
    calls: list[Path] = []
    module.run_cli = lambda path: calls.append(path) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kiosk.selftest", module)
    ran = provision.selftest(Path("/etc/kiosk/kiosk.toml"), skip_hardware=False)
    assert (ran.status, ran.detail, calls) == (
        Status.FAILED,
        "exit status 3",
        [Path("/etc/kiosk/kiosk.toml")],
    )
    assert provision.selftest(Path("/x"), skip_hardware=True).status is Status.SKIPPED


def _real_payby_keys(root: Path) -> None:
    """A real PayBy key pair in place of the example bundle's placeholders."""
    import re

    from kiosk.providers.payby.client import generate_key_pair

    private, public = generate_key_pair()
    (root / "etc/kiosk/payby_public.pem").write_bytes(public)
    secrets_file = root / "etc/kiosk/secrets.toml"
    text = secrets_file.read_text()
    text = re.sub(
        r"private_key = ('''|\"\"\").*?\1",  # provision writes '''literal''' strings
        lambda _: "private_key = '''\n" + private.decode() + "'''",
        text,
        count=1,
        flags=re.S,
    )
    secrets_file.write_text(text)


def test_on_the_machine_each_provider_is_checked_after_the_config(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = run(EXAMPLE, root).plan
    config_file = root / "etc/kiosk/kiosk.toml"  # point the kiosk's own paths into the root
    text = config_file.read_text().replace('"/etc/kiosk/', f'"{root}/etc/kiosk/')
    config_file.write_text(text)
    _real_payby_keys(root)  # the example's keys are placeholders: the key check parses keys
    seen: list[str] = []

    def check(cfg: config.Config, secrets: config.Secrets, name: str) -> tuple[bool, str]:
        seen.append(name)
        return name != "rapyd", f"{name}: {'ok' if name != 'rapyd' else 'refused'}"

    monkeypatch.setattr("kiosk.provider_check.check", check)
    results = {o.name: o for o in verify._provider_checks(plan)}
    assert results["config check"].status is Status.OK
    assert seen == ["payby", "paysera", "rapyd", "cashii"]
    assert results["provider check rapyd"].status is Status.FAILED
    assert results["provider check payby"].detail == "payby: ok"
    config_file.write_text(text.replace('partner_id = "200000000888"', "partner_id = 7"))
    [bad] = verify._provider_checks(plan)
    assert (bad.name, bad.status) == ("config check", Status.FAILED) and "partner_id" in bad.detail


def test_on_the_machine_systemd_and_udev_are_reloaded_when_they_changed(root: Path) -> None:
    plan = dataclasses.replace(run(EXAMPLE, root).plan, root=Path("/"))
    system = FakeSystem(euid=0)
    changed = [
        provision.Outcome("/etc/systemd/system/kiosk.service", Status.CHANGED),
        provision.Outcome("/etc/udev/rules.d/99-kiosk.rules", Status.CHANGED),
    ]
    done = provision.reloads(provision.Run(plan, system, dry_run=False), changed)
    assert [o.status for o in done] == [Status.OK] * 3
    assert system.commands[0] == ["systemctl", "daemon-reload"]
    assert system.commands[1] == ["udevadm", "control", "--reload"]
    unchanged = [dataclasses.replace(o, status=Status.UNCHANGED) for o in changed]
    assert provision.reloads(provision.Run(plan, system, dry_run=False), unchanged) == []


def test_on_a_terminal_without_a_bundle_it_asks(
    root: Path, tmp_path: Path, fake: FakeSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rapyd.key").write_text("a-rapyd-secret-key-of-enough-length")
    part = tmp_path / "rapyd.toml"
    part.write_text(
        "[config.rapyd]\naccess_key = '8C6223151345345D'\npos_id = 'pos-1'\n"
        "[secrets.rapyd]\nsecret_key = { file = 'rapyd.key' }\n"
    )

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("KSK-0042\n"))  # the answers stop short
    assert cli("--root", str(root)) == 2
    answers = ["KSK-0042", "Mall", "eur", "sim", "", "rapyd", str(part)]
    monkeypatch.setattr(sys, "stdin", Terminal("\n".join(answers) + "\n"))
    assert cli("--root", str(root), "--skip-hardware") == 0
    cfg = config.load(root / "etc/kiosk/kiosk.toml")
    assert (cfg.kiosk_id, cfg.location, cfg.currency.code) == ("KSK-0042", "Mall", "EUR")
    assert (cfg.validator.driver, cfg.printer.driver, list(cfg.providers)) == (
        "sim",
        "escpos",
        ["rapyd"],
    )
    secrets = config.load_secrets(root / "etc/kiosk/secrets.toml")
    assert secrets.providers["rapyd"].secret_key == "a-rapyd-secret-key-of-enough-length"


def test_device_id_from_the_serial_the_device_tree_or_the_machine_id(tmp_path: Path) -> None:
    (tmp_path / "sys/firmware/devicetree/base").mkdir(parents=True)
    (tmp_path / "sys/firmware/devicetree/base/serial-number").write_bytes(b"ABCDEF0123456789\0")
    assert identity.device_id(tmp_path) == "rpi-abcdef0123456789"
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(f"Serial\t\t: {SERIAL}\n")
    assert identity.device_id(tmp_path) == f"rpi-{SERIAL}"
    other = tmp_path / "other"
    (other / "etc").mkdir(parents=True)
    machine_id = "3d1219c7c4c5404aaa1f6d2a48adfda4"
    (other / "etc/machine-id").write_text(machine_id + "\n")
    found = identity.device_id(other)
    assert found.startswith("mid-") and len(found) == 20 and machine_id[:8] not in found
    (other / "proc").mkdir()
    (other / "proc/cpuinfo").write_text("Serial\t\t: 0000000000000000\n")  # not a Pi's
    assert identity.device_id(other) == found
    with pytest.raises(identity.IdentityError, match=r"identity\.device_id"):
        identity.device_id(tmp_path / "empty")


def test_without_any_device_id_source_nothing_is_written(
    tmp_path: Path, fake: FakeSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    assert cli("--bundle", str(EXAMPLE), "--root", str(bare)) == 1
    assert "set identity.device_id in the bundle" in capsys.readouterr().err
    assert list(bare.iterdir()) == []


def test_a_broken_device_key_is_refused_not_replaced(root: Path) -> None:
    (root / "etc/kiosk").mkdir(parents=True)
    (root / "etc/kiosk/device.key").write_text("not a key")
    with pytest.raises(identity.IdentityError, match="not an Ed25519 private key"):
        run(EXAMPLE, root)
    assert (root / "etc/kiosk/device.key").read_text() == "not a key"


def test_the_firstboot_unit(tmp_path: Path) -> None:
    text = (REPO / "systemd/kiosk-firstboot.service").read_text()
    assert "ConditionPathExists=/boot/firmware/kiosk-bundle.toml" in text
    assert "Before=kiosk.service" in text and "Type=oneshot" in text
    exec_start = (
        "ExecStart=/opt/kiosk/.venv/bin/kiosk provision"
        " --bundle /boot/firmware/kiosk-bundle.toml --remove-bundle"
    )
    assert exec_start in text.splitlines()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "kiosk-firstboot.service"
    unit.write_text(text.replace("/opt/kiosk/.venv/bin/kiosk", shutil.which("true") or "/bin/true"))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "kiosk-firstboot.service" not in output, output  # no warning about our unit


def test_install_sh_pins_uv_and_ends_in_kiosk_provision() -> None:
    text = (REPO / "provisioning/install.sh").read_text()
    assert "curl" not in text and "| sh" not in text
    assert "--require-hashes" in text and "uv==" in text and "--hash=sha256:" in text
    assert "uv sync --locked" in text and 'provision "${args[@]}"' in text
    done = subprocess.run(["bash", "-n", str(REPO / "provisioning/install.sh")], check=False)
    assert done.returncode == 0


scalars = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
keys = st.text(min_size=1, max_size=12)
values = st.one_of(scalars, st.lists(scalars, max_size=4))
tables = st.recursive(
    st.dictionaries(keys, values, max_size=4),
    lambda inner: st.dictionaries(keys, st.one_of(values, inner), max_size=4),
    max_leaves=12,
)


@given(tables)
def test_toml_written_reads_back_the_same(table: dict[str, object]) -> None:
    assert tomllib.loads(provision.dumps(table)) == table
