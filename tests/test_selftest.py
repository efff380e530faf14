"""``kiosk selftest`` against simulated hardware (kiosk/selftest/): an eSSP SMART Payout and an
ESC/POS printer simulated on ptys, the panel on gpiozero's MockFactory driven through the
simulator's control socket, providers against the local sandbox on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.sim.control import SimControl
from kiosk import config, selftest
from kiosk.hardware import build
from kiosk.providers.payby.client import generate_key_pair
from kiosk.sandbox.server import start_sandbox
from kiosk.selftest import Check, panel, run_checks, system
from kiosk.simkiosk import KioskFiles, sandbox_kiosk, write_kiosk
from kiosk.statelock import StateLock

NO_PROVIDERS = {"providers"}
SAY_YES = (sys.executable, "-c", "print('yes')")


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panel, "SHOW_S", 0.01)
    monkeypatch.setattr(system, "CLOCK_COMMAND", SAY_YES)


def _kiosk(tmp_path: Path, **options: Any) -> KioskFiles:
    """A simulated kiosk whose providers point at a closed port (their checks are skipped)."""
    _, public_pem = generate_key_pair()
    options = {"validator": "essp", "payout": True, **options}
    return write_kiosk(
        tmp_path / "kiosk", payby_url="http://127.0.0.1:9", payby_public_pem=public_pem, **options
    )


def _args(files: KioskFiles, **kw: Any) -> argparse.Namespace:
    defaults: dict[str, Any] = {
        "config": str(files.config),
        "no_buttons": True,
        "press_timeout": 1.0,
        "skip": "providers",
        "json": False,
    }
    return argparse.Namespace(**{**defaults, **kw})


def _printed(files: KioskFiles) -> list[Path]:
    """The test pages the simulated printer rendered (text beside each PNG)."""
    pages = files.receipts.glob("*.txt")
    return [p for p in pages if "SELFTEST" in p.read_text(encoding="utf-8")]


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def _on_hardware(
    files: KioskFiles,
    *,
    before: Callable[[SimControl], None] | None = None,
    prompt: Any = None,
    interactive: bool = False,
    press_timeout_s: float = 1.0,
    skip: set[str] = NO_PROVIDERS,
) -> dict[str, Check]:
    """run_checks on freshly built simulated hardware; ``before`` scripts the simulators."""
    cfg = config.load(files.config)
    secrets = config.load_secrets(cfg.secrets_file)

    async def scenario() -> list[Check]:
        hw = await build(cfg)
        try:
            if before is not None:
                await asyncio.to_thread(before, SimControl(files.control_socket))
            return await run_checks(
                cfg,
                secrets,
                hw,
                interactive=interactive,
                press_timeout_s=press_timeout_s,
                skip=skip,
                prompt=prompt,
            )
        finally:
            await hw.close()

    return _by_name(asyncio.run(scenario()))


class Technician:
    """Does what the self-test tells (through the simulator's control socket) and answers
    every question with ``answer``; ``hands=False``: presses nothing."""

    def __init__(self, files: KioskFiles, *, answer: bool = True, hands: bool = True) -> None:
        self.control = SimControl(files.control_socket)
        self.answer, self.hands = answer, hands
        self.told: list[str] = []
        self.asked: list[str] = []
        self._acts: list[asyncio.Task[None]] = []

    def tell(self, text: str) -> None:
        self.told.append(text)
        if self.hands:
            self._acts.append(asyncio.get_running_loop().create_task(self._act(text)))

    async def _act(self, text: str) -> None:
        await asyncio.sleep(0.1)  # past the panel's debounce
        call: Callable[..., Awaitable[Any]] = asyncio.to_thread
        if "GREEN" in text:
            await call(self.control.press, "confirm")
        elif "RED" in text:
            await call(self.control.press, "cancel")
        elif "Open the door" in text:
            await call(self.control.call, "door", open=True)
        elif "Close the door" in text:
            await call(self.control.call, "door", open=False)

    async def ask(self, question: str) -> bool | None:
        self.asked.append(question)
        return self.answer


def test_every_check_passes_on_simulated_hardware_with_the_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_sandbox(tmp_path / "sandbox") as sandbox:
        files = sandbox_kiosk(tmp_path / "kiosk", sandbox, validator="essp", payout=True)
        assert selftest.run_cli(files.config) == 0  # non-interactive: what provisioning runs
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line[:4] in ("PASS", "SKIP")}
    assert "FAIL" not in out
    assert "channels: AED 5.00, AED 10.00" in lines["validator"]
    assert "AED 10.00 x 10, AED 20.00 x 10, AED 50.00 x 10 (total AED 800.00)" in lines["recycler"]
    assert "test page" in lines["printer"]
    assert lines["buttons"].startswith("SKIP")
    for name in ("payby", "paysera", "rapyd", "cashii"):
        assert lines[f"provider:{name}"].startswith("PASS")
    assert _printed(files)  # the test page came out
    assert "Traceback" not in out


def test_json_output_has_every_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _kiosk(tmp_path)
    assert selftest.cmd_selftest(_args(files, json=True)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["exit_status"] == 0 and doc["kiosk"] == "KSK-DEMO"
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert statuses["validator"] == "pass" and statuses["door"] == "skip"
    assert {k for k in statuses if k.startswith("provider:")} == {
        "provider:payby",
        "provider:paysera",
        "provider:rapyd",
        "provider:cashii",
    }
    assert all(c["status"] == "skip" for c in doc["checks"] if c["name"].startswith("provider:"))
    assert set(doc["checks"][0]) == {"name", "status", "ok", "detail", "fix"}


def test_paper_out_fails_with_its_fix_and_the_rest_still_runs(tmp_path: Path) -> None:
    files = _kiosk(tmp_path)
    checks = _on_hardware(files, before=lambda ctl: ctl.call("paper", state="out"))
    printer = checks["printer"]
    assert printer.ok is False and printer.detail == "paper out"
    assert "load a paper roll" in printer.fix
    assert printer.line().startswith("FAIL  printer    paper out — load a paper roll")
    assert checks["validator"].ok and checks["recycler"].ok and checks["decoder"].ok
    assert not _printed(files)


def test_cover_open_and_a_cashbox_removed_say_what_to_do(tmp_path: Path) -> None:
    def script(ctl: SimControl) -> None:
        ctl.call("cover", open=True)
        ctl.call("fault", kind="cashbox_removed")

    checks = _on_hardware(_kiosk(tmp_path), before=script)
    assert checks["printer"].detail == "cover open" and "close the printer's cover" in (
        checks["printer"].fix
    )
    assert checks["validator"].ok is False and "cashbox removed" in checks["validator"].detail
    assert checks["validator"].fix == "put the cashbox back and lock it"


def test_a_missing_validator_port_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _kiosk(tmp_path, validator_port=str(tmp_path / "no-such-tty"))
    assert selftest.cmd_selftest(_args(files)) == 1
    out, err = capsys.readouterr()
    lines = {line.split()[1]: line for line in out.splitlines() if line[:4] in ("PASS", "FAIL")}
    assert lines["validator"].startswith(
        f"FAIL  validator  {tmp_path / 'no-such-tty'}: cannot open"
    )
    assert (
        "no-such-tty" in lines["validator"] and "check the validator's power" in lines["validator"]
    )
    assert lines["recycler"].startswith("FAIL") and "fix the validator first" in lines["recycler"]
    assert lines["printer"].startswith("PASS")  # one failing device never stops the others
    assert "1 failed" not in out and "2 failed" in out
    assert "Traceback" not in out + err


def test_the_daemon_holding_the_lock_is_a_clean_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _kiosk(tmp_path)
    with StateLock(files.state_dir):
        assert selftest.cmd_selftest(_args(files)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "the kiosk daemon is running" in err and "sudo systemctl stop kiosk" in err
    assert not files.control_socket.exists()  # no device was touched
    StateLock(files.state_dir).acquire().release()  # and the self-test left it free


def test_the_self_test_holds_the_lock_while_it_runs(tmp_path: Path) -> None:
    files = _kiosk(tmp_path)
    seen: list[bool] = []

    async def disk(s: Any) -> selftest.Verdict:
        try:
            StateLock(files.state_dir).acquire().release()
            seen.append(False)
        except selftest.KioskError:
            seen.append(True)
        return selftest.passed("checked")

    real = selftest.steps

    def steps(cfg: Any) -> list[selftest.Step]:
        return [selftest.Step(s.name, disk, "") if s.name == "disk" else s for s in real(cfg)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(selftest, "steps", steps)
        assert selftest.cmd_selftest(_args(files)) == 0
    assert seen == [True]


def test_bad_config_and_bad_skip_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _kiosk(tmp_path)
    assert selftest.cmd_selftest(_args(files, skip="printer,toaster")) == 2
    assert "--skip: no check toaster" in capsys.readouterr().err
    files.config.write_text("[kiosk]\nid = 7\n", encoding="utf-8")
    assert selftest.cmd_selftest(_args(files)) == 2
    assert "configuration error" in capsys.readouterr().err


def test_skip_leaves_a_check_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _kiosk(tmp_path, validator_port=str(tmp_path / "no-such-tty"))
    assert (
        selftest.cmd_selftest(_args(files, skip="validator,recycler,payby,paysera,rapyd,cashii"))
        == 0
    )
    out = capsys.readouterr().out
    assert "SKIP  validator  skipped (--skip)" in out


def test_interactive_checks_with_a_technician(tmp_path: Path) -> None:
    files = _kiosk(tmp_path)
    tech = Technician(files)
    checks = _on_hardware(files, prompt=tech, interactive=True)
    assert all(c.ok for c in checks.values() if not c.name.startswith("provider:")), checks
    assert checks["buttons"].detail == "green (confirm) and red (cancel) read"
    assert checks["door"].detail == "opened and closed: the switch follows the door"
    assert [t.split(" (")[0] for t in tech.told] == [
        "Press the GREEN button",
        "Press the RED button",
        "Open the door",
        "Close the door",
    ]
    assert any("GREEN light" in q for q in tech.asked) and any("beeps" in q for q in tech.asked)


def test_a_technician_who_says_no_or_never_presses(tmp_path: Path) -> None:
    files = _kiosk(tmp_path)
    tech = Technician(files, answer=False, hands=False)
    checks = _on_hardware(files, prompt=tech, interactive=True, press_timeout_s=0.3)
    assert checks["leds"].ok is False and "green (GPIO 17)" in checks["leds"].detail
    assert checks["buzzer"].ok is False and "GPIO 18" in checks["buzzer"].fix
    assert checks["printer"].ok is False and "did not come out right" in checks["printer"].detail
    assert checks["buttons"].ok is False and "no press of green" in checks["buttons"].detail
    assert "GPIO 5 to ground" in checks["buttons"].fix
    assert checks["door"].ok is False and "GPIO 26" in checks["door"].fix
    assert checks["validator"].ok


def test_clock_states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _kiosk(tmp_path)
    only_clock = set(selftest.check_names(config.load(files.config))) - {"clock"}
    monkeypatch.setattr(system, "CLOCK_COMMAND", (sys.executable, "-c", "print('no')"))
    clock = _on_hardware(files, skip=only_clock)["clock"]
    assert clock.ok is False and "NTP" in clock.fix
    monkeypatch.setattr(system, "CLOCK_COMMAND", (str(tmp_path / "no-timedatectl"),))
    assert _on_hardware(files, skip=only_clock)["clock"].ok is None
    monkeypatch.setattr(system, "CLOCK_COMMAND", (sys.executable, "-c", "raise SystemExit(1)"))
    assert _on_hardware(files, skip=only_clock)["clock"].ok is None
    monkeypatch.setattr(system, "CLOCK_COMMAND", SAY_YES)
    assert _on_hardware(files, skip=only_clock)["clock"].ok is True


def test_low_disk_and_a_check_that_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _kiosk(tmp_path)
    names = set(selftest.check_names(config.load(files.config)))
    monkeypatch.setattr(system, "MIN_FREE_BYTES", 1 << 62)
    disk = _on_hardware(files, skip=names - {"disk"})["disk"]
    assert disk.ok is False and " free of " in disk.detail and "never delete" in disk.fix

    def broken(path: object) -> None:
        raise RuntimeError("the disk said no")

    monkeypatch.setattr(shutil, "disk_usage", broken)
    checks = _on_hardware(files, skip=names - {"disk", "decoder"})
    assert checks["disk"].ok is False
    assert checks["disk"].detail == "unexpected error (RuntimeError: the disk said no)"
    assert checks["decoder"].ok  # the next check still ran


def test_devices_that_cannot_be_built_fail_one_line_and_the_rest_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kiosk import hardware

    async def no_gpio(cfg: Any) -> None:
        raise RuntimeError("GPIO17 is busy")

    monkeypatch.setattr(hardware, "build", no_gpio)
    assert selftest.cmd_selftest(_args(_kiosk(tmp_path), json=True)) == 1
    checks = _by_name([Check(**c) for c in _json_checks(capsys.readouterr().out)])
    assert checks["hardware"].ok is False and "GPIO17 is busy" in checks["hardware"].detail
    assert checks["validator"].ok is None and checks["disk"].ok is True


def _json_checks(out: str) -> list[dict[str, Any]]:
    return [{k: c[k] for k in ("name", "ok", "detail", "fix")} for c in json.loads(out)["checks"]]


def test_the_terminal_asks_until_it_gets_yes_or_no() -> None:
    import io
    import os

    async def scenario() -> None:
        read, write = os.pipe()
        out = io.StringIO()
        with os.fdopen(read) as stdin, os.fdopen(write, "w") as typing:
            terminal = selftest.Terminal(out=out, stdin=stdin)
            asked = asyncio.create_task(terminal.ask("Is the GREEN light on?"))
            for answer in ("maybe\n", "Y\n"):
                await asyncio.sleep(0.05)
                typing.write(answer)
                typing.flush()
            assert await asyncio.wait_for(asked, 2) is True
            typing.close()
            assert await terminal.ask("Again?") is None  # the end of input: no answer
        assert out.getvalue().count("Is the GREEN light on? [y/n]") == 2

    asyncio.run(scenario())


def test_the_subcommand_parses_its_options() -> None:
    parser = argparse.ArgumentParser(prog="kiosk")
    selftest.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["selftest", "--config", "k.toml", "--no-buttons", "--press-timeout", "5", "--skip",
         "providers,printer", "--json"]
    )  # fmt: skip
    assert args.fn is selftest.cmd_selftest and args.config == "k.toml"
    assert args.no_buttons and args.press_timeout == 5.0 and args.json
    assert args.skip == "providers,printer"
    defaults = parser.parse_args(["selftest"])
    assert defaults.press_timeout == 20.0 and not defaults.no_buttons and defaults.skip == ""
