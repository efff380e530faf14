"""The `[paysera]` section is the provider's own (through the registry), checked like the
rest of the config; its `mac_key` lives in the secrets file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from kiosk import config
from kiosk.errors import ConfigError
from kiosk.providers.paysera.config import PayseraConfig, PayseraSecrets

ROOT = Path(__file__).resolve().parents[2]


def _load(tmp_path: Path, section: str) -> config.Config:
    path = tmp_path / "kiosk.toml"
    path.write_text(f'[kiosk]\nid = "K"\ncurrency = "EUR"\n{section}')
    return config.load(path)


def test_the_section_is_read_by_the_provider(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[paysera]\nclient_id = "wkVd93h2uS"\nreserve_for_s = 60\nallowance_id = 77\n'
        'cashout_max = "200.00"\napproval_above = "100.00"\n',
    )
    p = cfg.providers["paysera"]
    assert isinstance(p, PayseraConfig)
    assert (p.client_id, p.reserve_for_s, p.allowance_id) == ("wkVd93h2uS", 60, 77)
    assert (p.cashout_max, p.approval_above) == (20000, 10000)
    assert "paysera" not in _load(tmp_path, "").providers


@pytest.mark.parametrize(
    ("section", "key", "expected"),
    [
        ('[paysera]\nclient_id = "c"\nreserve_for_s = 3600', "paysera.reserve_for_s", "1 to 300"),
        ('[paysera]\nclient_id = "c"\ncashout_max = "1.005"', "paysera.cashout_max", "EUR"),
        ('[paysera]\nclient_id = "c"\nbase_url = "http://evil"', "paysera.base_url", "https"),
        ('[paysera]\nclient_id = "c"\nmac_key = "x"', "paysera.mac_key", "a known key"),
        ("[paysera]\n", "paysera.client_id", "client id"),
    ],
)
def test_a_wrong_section_names_the_key(
    tmp_path: Path, section: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, section)
    assert err.value.key == key and expected in err.value.expected


def test_the_mac_key_is_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'journal_key = "{"ab" * 32}"\n[paysera]\nmac_key = "{"k" * 32}"\n')
    secrets = config.load_secrets(path)
    assert secrets.providers["paysera"] == PayseraSecrets("k" * 32)
    assert "k" * 32 not in repr(secrets)


def test_the_example_files_carry_every_paysera_key() -> None:
    kiosk = tomllib.loads((ROOT / "provisioning" / "kiosk.toml.example").read_text())
    fields = set(PayseraConfig.__dataclass_fields__)
    assert set(kiosk["paysera"]) == fields
    secrets = tomllib.loads((ROOT / "provisioning" / "secrets.toml.example").read_text())
    assert set(secrets["paysera"]) == set(PayseraSecrets.__dataclass_fields__)
