"""systemd/kiosk.service: the settings issue 14 asks for, ``systemd-analyze verify`` clean, an
exposure of 2.0 or lower (``systemd-analyze security --offline``), and the simulated daemon
reaching READY under an emulation of MemoryDenyWriteExecute= (the one setting whose breakage
would only show at run time: a library asking for writable executable memory).

Nothing here needs root or a running systemd; the daemon test speaks to nothing but itself.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kiosk.simkiosk import DaemonProcess, write_kiosk

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "kiosk.service"
EXEC = "/opt/kiosk/.venv/bin/kiosk"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> key -> every value in order (DeviceAllow= and friends repeat)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert section is not None and sep, f"not a unit line: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}= should be set once, is {values}"
    return values[0]


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "min": 60, "m": 60}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert m and m.group(2) in units, f"not a time span: {value!r}"
    return float(m.group(1)) * units[m.group(2)]


def size(value: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", value)
    assert m, f"not a byte size: {value!r}"
    return int(m.group(1)) * 1024 ** " KMG".index(m.group(2) or " ")


def test_readiness_watchdog_and_restart(service: dict[str, list[str]]) -> None:
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert seconds(one(service, "WatchdogSec")) > 0
    assert one(service, "Restart") == "always"


def test_own_user_directories_config_and_command(service: dict[str, list[str]]) -> None:
    assert one(service, "User") == "kiosk"
    assert one(service, "StateDirectory") == "kiosk"
    assert one(service, "ConfigurationDirectory") == "kiosk"
    assert "KIOSK_CONFIG=/etc/kiosk/kiosk.toml" in service["Environment"]
    assert one(service, "ExecStart") == f"{EXEC} run"
    # lgpio makes its FIFOs in the working directory: it must be the writable state directory
    assert one(service, "WorkingDirectory") == "/var/lib/kiosk"
    assert "LG_WD=/var/lib/kiosk" in service["Environment"]


def test_no_capabilities_and_no_way_to_gain_any(service: dict[str, list[str]]) -> None:
    assert one(service, "CapabilityBoundingSet") == ""
    assert one(service, "AmbientCapabilities") == ""
    assert one(service, "NoNewPrivileges") == "yes"


def test_only_the_kiosks_devices(service: dict[str, list[str]]) -> None:
    assert one(service, "DevicePolicy") == "closed"
    assert service.get("PrivateDevices", ["no"]) == ["no"]  # it would hide the real devices
    allowed = dict(v.split() for v in service["DeviceAllow"])
    assert allowed == {
        "char-ttyUSB": "rw",  # validator, printer: USB serial adapters
        "char-ttyACM": "rw",  # NV200 / NV9USB, CDC ACM
        "char-ttyAMA": "rw",  # the header's PL011 UART
        "/dev/char/4:64": "rw",  # ttyS0, the mini UART
        "char-gpiochip": "rw",  # the panel, through lgpio
        "char-video4linux": "rw",  # /dev/video*, /dev/v4l-subdev*
        "char-media": "rw",  # /dev/media*
        "char-dma_heap": "rw",  # libcamera's frame buffers
    }


def test_system_call_filter(service: dict[str, list[str]]) -> None:
    filters = service["SystemCallFilter"]
    assert "@system-service" in filters
    denied = {g for f in filters if f.startswith("~") for g in f[1:].split()}
    assert {"@privileged", "@resources"} <= denied
    assert one(service, "SystemCallArchitectures") == "native"
    assert one(service, "SystemCallErrorNumber") == "EPERM"


def test_memory_ceiling(service: dict[str, list[str]]) -> None:
    high, top = size(one(service, "MemoryHigh")), size(one(service, "MemoryMax"))
    assert 0 < high < top <= 256 * 1024**2


def test_sandbox_settings(service: dict[str, list[str]]) -> None:
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateMounts": "yes",
        "PrivateUsers": "yes",
        "PrivateIPC": "yes",
        "ProtectProc": "invisible",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RemoveIPC": "yes",
        "KeyringMode": "private",
        "UMask": "0027",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    assert {k: one(service, k) for k in expected} == expected
    # the providers are on the internet; gpiozero needs /proc/device-tree or /proc/cpuinfo
    for absent in ("IPAddressDeny", "IPAddressAllow", "PrivateNetwork", "ProcSubset"):
        assert absent not in service
    # the state directory is the only writable path, and it needs no ReadWritePaths=
    assert "ReadWritePaths" not in service


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


def _analyze_version() -> int:
    m = re.search(r"systemd (\d+)", _analyze("--version").stdout)
    return int(m.group(1)) if m else 0


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks)."""
    exe = tmp_path / "kiosk"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(EXEC) == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(EXEC, str(exe)), encoding="utf-8")
    return copy


@needs_analyze
def test_systemd_analyze_verify_is_clean(unit_copy: Path) -> None:
    result = _analyze("verify", str(unit_copy))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    # unknown keys and bad values are warnings with status 0: none may name the unit
    assert [line for line in out.splitlines() if unit_copy.name in line] == []


@needs_analyze
def test_exposure_is_2_or_lower() -> None:
    if _analyze_version() < 250:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    result = _analyze("security", "--offline=yes", "--threshold=20", "--no-pager", str(UNIT))
    out = result.stdout + result.stderr
    m = re.search(r"Overall exposure level for kiosk\.service: (\d+\.\d+)", out)
    assert m, out
    assert float(m.group(1)) <= 2.0, out
    assert result.returncode == 0, out  # --threshold=20: above 2.0 fails


# MemoryDenyWriteExecute= as systemd's seccomp filter has it: mmap() asking for PROT_WRITE and
# PROT_EXEC at once, mprotect()/pkey_mprotect() adding PROT_EXEC, shmat() with SHM_EXEC fail
# with EPERM. Installed by a sitecustomize, so the daemon runs under it from its first line.
_SECCOMP_ARCH = {
    # machine: (AUDIT_ARCH_*, mmap, mprotect, pkey_mprotect, shmat)
    "x86_64": (0xC000003E, 9, 10, 329, 30),
    "aarch64": (0xC00000B7, 222, 226, 288, 196),
}
_SITECUSTOMIZE = """
import ctypes, struct, os

ARCH, MMAP, MPROTECT, PKEY_MPROTECT, SHMAT = {arch}
LD, AND, JEQ, RET = 0x20, 0x54, 0x15, 0x06
ALLOW, EPERM = 0x7FFF0000, 0x00050001
PROT, W, X, SHM_EXEC = 32, 2, 4, 0o100000  # seccomp_data.args[2], low half


def op(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)


def refuse_if(mask):  # A = args[2] & mask; == mask: EPERM
    return [op(LD, PROT), op(AND, mask), op(JEQ, mask, 0, 1), op(RET, EPERM), op(RET, ALLOW)]


prog = [op(LD, 4), op(JEQ, ARCH, 1, 0), op(RET, ALLOW), op(LD, 0)]
prog += [op(JEQ, MMAP, 4, 0), op(JEQ, MPROTECT, 8, 0), op(JEQ, PKEY_MPROTECT, 7, 0)]
prog += [op(JEQ, SHMAT, 11, 0), op(RET, ALLOW)]
prog += refuse_if(W | X) + refuse_if(X) + refuse_if(SHM_EXEC)
code = ctypes.create_string_buffer(b"".join(prog))


class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


libc = ctypes.CDLL(None, use_errno=True)
fprog = Fprog(len(prog), ctypes.addressof(code))
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):
    os._exit(97)  # PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP refused
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]
if libc.mmap(None, 4096, 7, 0x22, -1, 0) != ctypes.c_void_p(-1).value:
    os._exit(98)  # a W+X page was granted: the filter is not in force
"""


def _mdwe_site(root: Path) -> Path:
    arch = _SECCOMP_ARCH.get(platform.machine())
    if sys.platform != "linux" or arch is None:
        pytest.skip(f"the seccomp emulation knows x86_64 and aarch64 Linux: {platform.machine()}")
    site = root / "mdwe-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(_SITECUSTOMIZE).format(arch=arch))
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run(
        [sys.executable, "-c", "import os, mmap; print('ok')"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode == 97:
        pytest.skip("seccomp filters are not allowed here")
    assert probe.returncode == 0 and probe.stdout == "ok\n", probe
    return site


def _seccomp_status(pid: int) -> str:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return fields["Seccomp"].strip()


@pytest.mark.slow
def test_daemon_starts_without_writable_executable_memory(tmp_path: Path) -> None:
    """Start-up imports everything the daemon uses (cryptography, zxing-cpp, pyzbar's ctypes,
    gpiozero, httpx, sqlite); a library that needs W+X memory fails it. The Pi's own pieces
    (libcamera, picamera2, lgpio) are not on this machine: see the comment in the unit."""
    from kiosk.providers.payby.client import generate_key_pair

    site = _mdwe_site(tmp_path)
    _, payby_public = generate_key_pair()
    # Every provider's base URL is this closed loopback port: nothing leaves the machine.
    files = write_kiosk(
        tmp_path / "kiosk", payby_url="http://127.0.0.1:9", payby_public_pem=payby_public
    )
    daemon = DaemonProcess(files, env={"PYTHONPATH": str(site)})
    try:
        daemon.start(timeout=30)
        assert _seccomp_status(daemon.pid) == "2"  # SECCOMP_MODE_FILTER
        rc = daemon.stop()
    finally:
        daemon.kill()
    log = daemon.log_path.read_text(errors="replace")
    assert rc in (0, -signal.SIGTERM), log
    assert "MemoryError" not in log and "Traceback" not in log, log
