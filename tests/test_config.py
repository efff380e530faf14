from pathlib import Path

import pytest

from kiosk import config
from kiosk.cli import main
from kiosk.errors import ConfigError
from tests.conftest import write_secrets


def test_minimal_config_loads_with_defaults(config_file: Path) -> None:
    cfg = config.load(config_file)
    assert cfg.kiosk_id == "KT1"
    assert cfg.currency.code == "AED" and cfg.currency.exponent == 2
    assert cfg.inactivity_timeout_s == 60.0
    assert "payby" not in cfg.providers and not cfg.simulate
    assert cfg.validator.driver == "sim" and cfg.panel.confirm == 5
    assert cfg.journal_path == cfg.state_dir / "journal.db"
    with pytest.raises(AttributeError):
        cfg.kiosk_id = "other"  # type: ignore[misc]
    assert config.load(config_file, simulate=True).simulate


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ('[kiosk]\nid = "bad id!"', "kiosk.id", "1-24 characters"),
        ('[kiosk]\nid = "K"\ncurrency = "XYZ"', "kiosk.currency", "AED"),
        ('[kiosk]\nid = "K"\ninactivity_timeout_s = "60"', "kiosk.inactivity_timeout_s", "seconds"),
        ('[kiosk]\nid = "K"\ninactivity_timeout_s = -1', "kiosk.inactivity_timeout_s", "positive"),
        ('[kiosk]\nid = "K"\nidd = 1', "kiosk.idd", "a known key"),
        (
            '[kiosk]\nid = "K"\n[hardware.printer]\npaper_mm = 70',
            "hardware.printer.paper_mm",
            "58 or 80",
        ),
        ('[kiosk]\nid = "K"\n[hardware.panel]\nconfirm = 6', "hardware.panel.(pins)", "distinct"),
        (
            '[kiosk]\nid = "K"\n[hardware.validator]\nnotes = [100, -5]',
            "hardware.validator.notes",
            "positive",
        ),
        ('[kiosk]\nid = "K"\n[payby]\npartner_id = "1234567890123"', "payby.partner_id", "1-12"),
        (
            '[kiosk]\nid = "K"\n[payby]\npartner_id = "1"\nbase_url = "http://evil.example"',
            "payby.base_url",
            "https",
        ),
        ("[kiosk\n", "", "valid TOML"),
        (
            '[kiosk]\nid = "K"\n[hardware.validator]\ndriver = "ccnet"',
            "hardware.validator.driver",
            "essp",
        ),
        (
            '[kiosk]\nid = "K"\n[hardware.validator]\nline = "9600 8X1"',
            "hardware.validator.line",
            "9600 8N2",
        ),
        (
            '[kiosk]\nid = "K"\n[hardware.validator]\npoll_interval_s = 2',
            "hardware.validator.poll_interval_s",
            "between 0.01 and 1",
        ),
        (
            '[kiosk]\nid = "K"\n[hardware.validator]\ndriver = "essp"\npoll_interval_s = 0.05',
            "hardware.validator.poll_interval_s",
            "GA973: 200..1000 ms between polls",
        ),
        (
            '[kiosk]\nid = "K"\n[hardware.validator]\ndriver = "essp"\ncountry_code = 3',
            "hardware.validator.country_code",
            "id003",
        ),
        (
            '[kiosk]\nid = "K"\n[hardware.validator]\nretries = 0',
            "hardware.validator.retries",
            "1-50",
        ),
        (
            '[kiosk]\nid = "K"\n[hardware.validator]\ndriver = "id003"\npayout = true',
            "hardware.validator.payout",
            "essp",
        ),
    ],
)
def test_bad_config_names_file_key_and_form(
    tmp_path: Path, toml: str, key: str, expected: str
) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert err.value.key == key
    assert expected in err.value.expected
    assert str(path) in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="existing TOML file"):
        config.load(tmp_path / "nope.toml")


def test_config_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    assert config.resolve_path(None) == Path("/etc/kiosk/kiosk.toml")
    monkeypatch.setenv("KIOSK_CONFIG", "/tmp/x.toml")
    assert config.resolve_path(None) == Path("/tmp/x.toml")
    assert config.resolve_path("/a.toml") == Path("/a.toml")


def test_secrets_readable_by_others_are_refused(tmp_path: Path) -> None:
    path = write_secrets(tmp_path / "s.toml", f'journal_key = "{"ab" * 32}"\n', mode=0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        config.load_secrets(path)
    path.chmod(0o600)
    secrets = config.load_secrets(path)
    assert secrets.journal_key == bytes.fromhex("ab" * 32)
    assert "ab" * 8 not in repr(secrets)


def test_secrets_content_errors(tmp_path: Path) -> None:
    short = write_secrets(tmp_path / "s1.toml", 'journal_key = "abcd"\n')
    with pytest.raises(ConfigError, match="journal_key"):
        config.load_secrets(short)
    bad_pem = write_secrets(
        tmp_path / "s2.toml", f'journal_key = "{"ab" * 32}"\n[payby]\nprivate_key = "nope"\n'
    )
    with pytest.raises(ConfigError, match=r"payby\.private_key"):
        config.load_secrets(bad_pem)


def test_cli_exits_2_on_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text('[kiosk]\nid = "K"\ncurrency = 5\n')
    assert main(["config", "check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "kiosk.currency" in err


def test_cli_config_check_ok(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--config", str(config_file)]) == 0
    assert "ok" in capsys.readouterr().out


def test_validator_protocol_settings(tmp_path: Path) -> None:
    from drivers.serialport import LineSettings

    path = tmp_path / "kiosk.toml"
    path.write_text(
        '[kiosk]\nid = "K"\n[hardware.validator]\ndriver = "essp"\n'
        'port = "/dev/ttyACM0"\nline = "38400 8N2"\npayout = true\nretries = 5\n'
    )
    v = config.load(path).validator
    assert (v.driver, v.port, v.payout, v.retries, v.encrypted) == (
        "essp",
        "/dev/ttyACM0",
        True,
        5,
        True,
    )
    assert v.line == LineSettings(38400, 8, "N", 2)
