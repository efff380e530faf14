"""Every CLI command is documented in the README, and the CLI refuses cleanly."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kiosk.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands(parser: argparse.ArgumentParser, prefix: str = "kiosk") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found.extend(_commands(sub, f"{prefix} {name}"))
    return found


def test_every_cli_command_is_in_the_readme() -> None:
    readme = README.read_text()
    commands = _commands(build_parser())
    assert "kiosk run" in commands and "kiosk bench footprint" in commands
    missing = [c for c in commands if c not in readme]
    assert not missing, f"README does not document: {missing}"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_a_misspelt_command_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["provison"])
    err = capsys.readouterr().err
    assert "'provision'" in err and "'support-bundle'" in err and "'selftest'" in err


def test_each_command_parses_as_with_the_whole_parser() -> None:
    whole = _commands(build_parser())
    for command in {c.split()[1] for c in whole}:
        assert [c for c in _commands(build_parser(command)) if c.split()[1] == command] == [
            c for c in whole if c.split()[1] == command
        ]


def test_the_daemon_does_not_import_the_tools_to_build_its_command_line() -> None:
    """``kiosk run`` stays resident on a Pi: the benches', fleet simulator's, provisioning's,
    self-test's and support bundle's modules are not loaded to parse its arguments."""
    import subprocess
    import sys

    probe = (
        "import sys; from kiosk.cli import build_parser, _command_of; "
        "build_parser(_command_of(['-v', 'run', '--simulate'])).parse_args(['run']); "
        "print(' '.join(m for m in sys.modules if m.startswith(('kiosk.fleet.sim', "
        "'kiosk.chaos', 'kiosk.crashpoints', 'kiosk.provision', 'kiosk.selftest', "
        "'kiosk.support'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_journal_and_liabilities_commands(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kiosk import config
    from kiosk.journal import Journal
    from tests.conftest import KEY

    cfg = config.load(config_file)
    j = Journal.open(cfg.journal_path, kiosk_id=cfg.kiosk_id, code_key=KEY)
    tx = j.begin("payby_cashin", currency="AED")
    j.transition(tx.id, "accepting", amount_due=15000)
    j.owe(tx.id, 5000, "ended_by_cancel")
    j.close()
    assert main(["journal", "--config", str(config_file)]) == 0
    assert "KT1-000001" in capsys.readouterr().out
    assert main(["journal", "KT1-000001", "--config", str(config_file)]) == 0
    shown = capsys.readouterr().out
    assert "KT1-000001  payby_cashin  ACCEPTING" in shown and "owed AED 50.00" in shown
    assert "15000" not in shown and "{" not in shown  # money, not minor units or dicts
    assert main(["journal", "KT1-000001", "--json", "--config", str(config_file)]) == 0
    assert '"accepting"' in capsys.readouterr().out
    assert main(["liabilities", "--settle", "9", "--note", "x", "--config", str(config_file)]) == 1
    assert main(["journal", "nope", "--config", str(config_file)]) == 1
    assert main(["liabilities", "--config", str(config_file)]) == 0
    assert "AED 50.00" in capsys.readouterr().out
    assert main(["liabilities", "--settle", "1", "--config", str(config_file)]) == 2
    assert (
        main(["liabilities", "--settle", "1", "--note", "paid back", "--config", str(config_file)])
        == 0
    )
    assert main(["liabilities", "--config", str(config_file)]) == 0
    assert "no liabilities" in capsys.readouterr().out
