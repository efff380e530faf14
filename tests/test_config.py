import os
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


# -- hostile input (issue 16) -------------------------------------------------------------------

PROVIDERS = (
    '[payby]\npartner_id = "200000000888"\n'
    '[paysera]\nclient_id = "wkVd93h2uS"\n'
    '[rapyd]\naccess_key = "8C6223151345345D"\npos_id = "pos-1"\n'
    "[cashii]\n"
)


def _with(tmp_path: Path, table: str, line: str) -> Path:
    """A config with every provider's table, and ``line`` added to ``table``."""
    text = f'[kiosk]\nid = "K"\n{PROVIDERS}'
    head = f"[{table}]\n"
    text = text.replace(head, head + line + "\n") if head in text else f"{text}{head}{line}\n"
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    return path


def test_every_provider_table_loads_as_written(tmp_path: Path) -> None:
    cfg = config.load(_with(tmp_path, "kiosk", 'location = "here"'))
    assert set(cfg.providers) == {"payby", "paysera", "rapyd", "cashii"}


@pytest.mark.parametrize("number", ["inf", "-inf", "nan", "+inf", "-nan"])
@pytest.mark.parametrize(
    "key",
    [
        "kiosk.inactivity_timeout_s",
        "hardware.validator.escrow_timeout_s",
        "hardware.validator.stack_s",
        "hardware.reader.poll_s",
        "hardware.reader.hold_s",
        "hardware.reader.budget_ms",
        "fleet.interval_s",
        "fleet.timeout_s",
        "payby.timeout_s",
        "payby.pay_wait_s",
        "payby.clock_margin_s",
        "payby.poll_interval_s",
        "paysera.timeout_s",
        "paysera.confirm_wait_s",
        "rapyd.otp_wait_s",
        "rapyd.timeout_s",
        "cashii.poll_interval_s",
        "cashii.pay_timeout_s",
    ],
)
def test_a_number_that_is_not_finite_is_refused(tmp_path: Path, key: str, number: str) -> None:
    """Before: ``inactivity_timeout_s = inf`` and ``payby.timeout_s = inf`` passed the
    positive-number checks (nan passed none, but was refused by luck of the comparison)."""
    table, _, name = key.rpartition(".")
    with pytest.raises(ConfigError) as err:
        config.load(_with(tmp_path, table, f"{name} = {number}"))
    assert err.value.key == key
    assert "a finite number (not inf or nan)" in err.value.expected


@pytest.mark.parametrize(
    "key", ["kiosk.inactivity_timeout_s", "payby.timeout_s", "paysera.allowance_id"]
)
def test_an_integer_beyond_64_bits_is_refused(tmp_path: Path, key: str) -> None:
    """tomllib reads integers of any size; 10**400 is no float at all, and no allowance id."""
    table, _, name = key.rpartition(".")
    with pytest.raises(ConfigError) as err:
        config.load(_with(tmp_path, table, f"{name} = 1{'0' * 400}"))
    assert err.value.key == key and "64-bit integer" in err.value.expected


def test_a_large_finite_timeout_is_still_a_range_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(_with(tmp_path, "payby", "timeout_s = 1e300"))
    assert err.value.key == "payby.timeout_s" and "at most 60" in err.value.expected


URLS_OK = [
    "https://api.payby.com/sgs/api",
    "https://api.payby.com:8443/sgs/api?x=1#f",
    "HTTPS://API.EXAMPLE.COM",
    "https://203.0.113.7",
    "https://[2001:db8::1]:443/x",
    "http://localhost",
    "http://localhost:8700/payby",
    "http://LOCALHOST/x",
    "http://127.0.0.1:8700",
    "http://127.1.2.3/x",
    "http://[::1]:8700/x",
]
URLS_REFUSED = [
    "http://localhost.evil.example/sgs",  # a prefix check took these two
    "http://127.0.0.1.evil.example/",
    "http://127.evil.example/",
    "http://localhostx/",
    "http://127.1/",  # not a dotted quad
    "http://10.0.0.1/",  # not loopback
    "http://[::ffff:127.0.0.1]/",
    "http://evil.example",
    "https://user@api.example.com",  # userinfo
    "https://api.example.com@evil.example",
    "http://localhost@evil.example/",
    "http://evil.example#@localhost",
    "https://api.example.com\\@evil.example",  # backslash
    "https://api.example.com\\x",
    "https://api.example.com:port/",  # port
    "https://api.example.com:/",
    "https://api.example.com:99999/",
    "https://api.example.com:0/",
    "https:///path",  # no host
    "https:api.example.com",
    "https://",
    "https://-bad-.example",
    "https://a..b",
    "https://[::1",
    "https://ex ample.com",  # whitespace, control characters, non-ASCII
    "https://example.com/\t",
    "http://local\thost/",
    "https://exämple.com",
    "ftp://example.com",
    "//example.com",
    "",
]


@pytest.mark.parametrize("url", URLS_OK)
def test_https_or_loopback_takes(url: str) -> None:
    assert config.https_or_loopback(url)


@pytest.mark.parametrize("url", URLS_REFUSED)
def test_https_or_loopback_refuses(url: str) -> None:
    assert not config.https_or_loopback(url)


@pytest.mark.parametrize(
    "key",
    [
        "payby.base_url",  # it had its own prefix check
        "paysera.base_url",
        "rapyd.base_url",
        "cashii.base_url",
        "cashii.payment_page_url",
        "fleet.url",
        "fleet.pushgateway_url",
    ],
)
@pytest.mark.parametrize(
    "url", ["http://localhost.evil.example/x", "https://u@h.example", "http://127.0.0.1:x"]
)
def test_every_url_key_parses_its_url(tmp_path: Path, key: str, url: str) -> None:
    table, _, name = key.rpartition(".")
    with pytest.raises(ConfigError) as err:
        config.load(_with(tmp_path, table, f'{name} = "{url}"'))
    assert err.value.key == key and "http only to localhost" in err.value.expected
    ok = config.load(_with(tmp_path, table, f'{name} = "http://127.0.0.1:8700/x"'))
    assert ok.file.exists()


@pytest.mark.parametrize("url", URLS_REFUSED[:-1])
def test_the_identity_fleet_url_is_parsed_too(url: str) -> None:
    from kiosk.identity import check_fleet_url

    assert not check_fleet_url(url)


def test_the_identity_fleet_url_takes_https_loopback_and_none() -> None:
    from kiosk.identity import check_fleet_url

    assert check_fleet_url("") and check_fleet_url("https://fleet.example.com/register?a=1")
    assert check_fleet_url("http://127.0.0.1:9000/register")
    assert not check_fleet_url('https://fleet.example.com/"x')  # written into TOML as is


# -- key files: parsed with cryptography by kiosk config check ---------------------------------


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[bytes, bytes]:
    from kiosk.providers.payby.wire import generate_key_pair

    return generate_key_pair()


def _payby_kiosk(
    tmp_path: Path, rsa_pair: tuple[bytes, bytes], *, public: bytes | None = None,
    private: bytes | None = None, fleet_key: bytes | None = None,
) -> Path:  # fmt: skip
    public_file, fleet_file = tmp_path / "payby_public.pem", tmp_path / "fleet.pem"
    public_file.write_bytes(rsa_pair[1] if public is None else public)
    pem = (rsa_pair[0] if private is None else private).decode()
    secrets = write_secrets(
        tmp_path / "secrets.toml",
        f'journal_key = "{"ab" * 32}"\n[payby]\nprivate_key = """\n{pem}"""\n',
    )
    fleet = ""
    if fleet_key is not None:
        fleet_file.write_bytes(fleet_key)
        fleet = f'[fleet]\npublic_key_file = "{fleet_file}"\n'
    path = tmp_path / "kiosk.toml"
    path.write_text(
        f'[kiosk]\nid = "K"\nstate_dir = "{tmp_path / "state"}"\nsecrets_file = "{secrets}"\n'
        f'[payby]\npartner_id = "1"\npublic_key_file = "{public_file}"\n{fleet}'
    )
    return path


LOOKALIKE_PUBLIC = b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n"
LOOKALIKE_PRIVATE = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"


def _ed25519_pems() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def test_config_check_passes_real_keys(
    tmp_path: Path, rsa_pair: tuple[bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _payby_kiosk(tmp_path, rsa_pair)
    assert main(["config", "check", "--config", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("public", "why"),
    [
        (LOOKALIKE_PUBLIC, "cryptography cannot parse it"),
        (b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n", "cannot parse"),
        (b"ssh-rsa AAAAB3NzaC1yc2E", "no PUBLIC KEY PEM block"),
        (b"", "no PUBLIC KEY PEM block"),
        (_ed25519_pems()[1], "not an RSA key"),
    ],
)
def test_config_check_refuses_a_payby_public_key_that_only_looks_like_pem(
    tmp_path: Path,
    rsa_pair: tuple[bytes, bytes],
    capsys: pytest.CaptureFixture[str],
    public: bytes,
    why: str,
) -> None:
    """Before: any file holding "PUBLIC KEY-----" passed; ``kiosk run`` failed on it later,
    after the devices were open."""
    path = _payby_kiosk(tmp_path, rsa_pair, public=public)
    assert main(["config", "check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: payby.public_key_file" in err and why in err
    assert str(tmp_path / "payby_public.pem") in err and "merchant portal" in err


@pytest.mark.parametrize(
    ("private", "why"),
    [
        (LOOKALIKE_PRIVATE, "cryptography cannot parse it"),
        (_ed25519_pems()[0], "not an RSA key"),
    ],
)
def test_config_check_refuses_a_private_key_that_only_looks_like_pem(
    tmp_path: Path,
    rsa_pair: tuple[bytes, bytes],
    capsys: pytest.CaptureFixture[str],
    private: bytes,
    why: str,
) -> None:
    path = _payby_kiosk(tmp_path, rsa_pair, private=private)
    assert main(["config", "check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'secrets.toml'}: payby.private_key" in err and why in err
    assert "bm90IGEga2V5" not in err  # no part of a key is ever shown


def test_the_payby_client_refuses_a_lookalike_key_with_a_config_error(
    tmp_path: Path, rsa_pair: tuple[bytes, bytes]
) -> None:
    """The daemon's connect: a ConfigError (exit 2, a message), never ValueError's traceback."""
    from kiosk.providers.payby.config import connect

    path = _payby_kiosk(tmp_path, rsa_pair, private=LOOKALIKE_PRIVATE)
    cfg = config.load(path)
    secrets = config.load_secrets(cfg.secrets_file)  # the form is right: PEM markers
    with pytest.raises(ConfigError, match=r"payby\.private_key"):
        connect(cfg, secrets, lambda ok: None)


def test_check_key_files_parses_the_fleet_key(
    tmp_path: Path, rsa_pair: tuple[bytes, bytes]
) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    for good in (_ed25519_pems()[1], base64.b64encode(raw) + b"\n"):
        path = _payby_kiosk(tmp_path, rsa_pair, fleet_key=good)
        cfg = config.load(path)
        config.check_key_files(cfg, config.load_secrets(cfg.secrets_file))
    for bad in (LOOKALIKE_PUBLIC, rsa_pair[1], b"", base64.b64encode(raw[:31])):
        path = _payby_kiosk(tmp_path, rsa_pair, fleet_key=bad)
        cfg = config.load(path)  # the config file itself is fine: the key file is checked
        with pytest.raises(ConfigError) as err:
            config.check_key_files(cfg, config.load_secrets(cfg.secrets_file))
        assert err.value.file == str(path) and err.value.key == "fleet.public_key_file"
        assert str(tmp_path / "fleet.pem") in str(err.value) and "fleet's operator" in str(
            err.value
        )
    (tmp_path / "fleet.pem").unlink()
    with pytest.raises(ConfigError, match="cannot read the fleet's public key"):
        config.check_key_files(cfg, config.load_secrets(cfg.secrets_file))


def test_check_key_files_runs_each_providers_check(
    tmp_path: Path, rsa_pair: tuple[bytes, bytes]
) -> None:
    cfg = config.load(_payby_kiosk(tmp_path, rsa_pair, public=LOOKALIKE_PUBLIC))
    with pytest.raises(ConfigError, match=r"payby\.public_key_file"):
        config.check_key_files(cfg, config.load_secrets(cfg.secrets_file))


# --- secrets and keys readable only by the service user --------------------------------------

_JKEY = f'journal_key = "{"ab" * 32}"\n'
_ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.mark.parametrize("mode", [0o640, 0o620, 0o610, 0o604, 0o602, 0o644, 0o660, 0o666])
def test_a_secrets_file_group_or_others_may_read_or_write_is_refused(
    tmp_path: Path, mode: int
) -> None:
    path = write_secrets(tmp_path / "s.toml", _JKEY, mode=mode)
    with pytest.raises(ConfigError) as err:
        config.load_secrets(path)
    text = str(err.value)
    assert str(path) in text and f"mode {mode:03o}" in text and f"chmod 600 {path}" in text
    assert ("by the group" in text) == bool(mode & 0o070)
    assert ("by others" in text) == bool(mode & 0o007)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_secrets_file_for_its_owner_only_is_read(tmp_path: Path, mode: int) -> None:
    path = write_secrets(tmp_path / "s.toml", _JKEY, mode=mode)
    assert config.load_secrets(path).journal_key == bytes.fromhex("ab" * 32)


@_ROOT_ONLY
def test_a_secrets_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = write_secrets(tmp_path / "s.toml", _JKEY)
    os.chown(path, 54321, -1)
    with pytest.raises(ConfigError, match=rf"owned by uid 54321: run chown \S+ {path}"):
        config.load_secrets(path)


def test_a_secrets_file_owned_by_another_user_is_refused_as_that_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kiosk runs as another (non-root) user than the file's owner."""
    path = write_secrets(tmp_path / "s.toml", _JKEY)
    if path.stat().st_uid == 0:
        pytest.skip("a root-owned file is always accepted")
    monkeypatch.setattr(os, "geteuid", lambda: path.stat().st_uid + 1)
    with pytest.raises(ConfigError, match="chown"):
        config.load_secrets(path)


@pytest.fixture(scope="module")
def payby_public_pem() -> bytes:
    from kiosk.providers.payby.wire import generate_key_pair

    return generate_key_pair()[1]


def _sim(tmp_path: Path, pem: bytes) -> tuple[config.Config, config.Secrets]:
    from kiosk.simkiosk import write_kiosk

    files = write_kiosk(tmp_path / "k", payby_url="http://127.0.0.1:9", payby_public_pem=pem)
    cfg = config.load(files.config)
    return cfg, config.load_secrets(cfg.secrets_file)


def test_the_simulated_kiosk_writes_its_secrets_and_keys_for_its_owner_only(
    tmp_path: Path, payby_public_pem: bytes
) -> None:
    cfg, secrets = _sim(tmp_path, payby_public_pem)
    config.check_key_files(cfg, secrets)
    etc = cfg.secrets_file.parent
    for name in ("secrets.toml", "device.key"):
        assert (etc / name).stat().st_mode & 0o777 == 0o600, name


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620])
def test_a_device_key_group_or_others_may_read_or_write_is_refused(
    tmp_path: Path, payby_public_pem: bytes, mode: int
) -> None:
    cfg, secrets = _sim(tmp_path, payby_public_pem)
    key = cfg.fleet.identity_dir / "device.key"
    key.chmod(mode)
    with pytest.raises(ConfigError) as err:
        config.check_key_files(cfg, secrets)
    text = str(err.value)
    assert str(key) in text and f"mode {mode:03o}" in text and f"chmod 600 {key}" in text


def test_a_secrets_file_made_readable_after_loading_is_refused_at_the_check(
    tmp_path: Path, payby_public_pem: bytes
) -> None:
    cfg, secrets = _sim(tmp_path, payby_public_pem)
    cfg.secrets_file.chmod(0o640)
    with pytest.raises(
        ConfigError, match=f"mode 640, readable by the group: run chmod 600 {cfg.secrets_file}"
    ):
        config.check_key_files(cfg, secrets)


@_ROOT_ONLY
def test_a_device_key_owned_by_another_user_is_refused(
    tmp_path: Path, payby_public_pem: bytes
) -> None:
    cfg, secrets = _sim(tmp_path, payby_public_pem)
    key = cfg.fleet.identity_dir / "device.key"
    os.chown(key, 54321, -1)
    with pytest.raises(ConfigError, match=f"the device key {key} owned by"):
        config.check_key_files(cfg, secrets)


@pytest.mark.parametrize(
    ("mode", "ok"), [(0o644, True), (0o444, True), (0o664, False), (0o646, False)]
)
def test_a_public_key_may_be_world_readable_but_only_its_owner_may_write_it(
    tmp_path: Path, payby_public_pem: bytes, mode: int, ok: bool
) -> None:
    cfg, secrets = _sim(tmp_path, payby_public_pem)
    pub = cfg.providers["payby"].public_key_file
    pub.chmod(mode)
    if ok:
        config.check_key_files(cfg, secrets)
        return
    with pytest.raises(ConfigError) as err:
        config.check_key_files(cfg, secrets)
    text = str(err.value)
    assert "payby.public_key_file" in text and str(pub) in text
    assert f"writable by its owner only, mode 644 (it is mode {mode:03o}" in text
    assert f"chmod 644 {pub}" in text


def test_config_check_names_the_file_its_mode_and_the_fix(
    tmp_path: Path, payby_public_pem: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = _sim(tmp_path, payby_public_pem)
    key = cfg.fleet.identity_dir / "device.key"
    key.chmod(0o644)
    assert main(["config", "check", "--config", str(cfg.file)]) == 2
    err = capsys.readouterr().err
    assert f"chmod 600 {key}" in err and "mode 644" in err and "Traceback" not in err


def test_kiosk_run_refuses_a_device_key_others_may_read_before_it_starts(
    tmp_path: Path, payby_public_pem: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = _sim(tmp_path, payby_public_pem)
    key = cfg.fleet.identity_dir / "device.key"
    key.chmod(0o604)
    assert main(["run", "--simulate", "--config", str(cfg.file)]) == 2
    err = capsys.readouterr().err
    assert f"chmod 600 {key}" in err and "mode 604, readable by others" in err
    assert "Traceback" not in err and not cfg.journal_path.exists()  # nothing started
