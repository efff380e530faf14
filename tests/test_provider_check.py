"""`kiosk provider check payby`: exit 0 only when the credentials work, else what failed."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from kiosk.cli import main
from kiosk.money import Money
from kiosk.providers.payby.client import generate_key_pair
from kiosk.sandbox.server import start_sandbox
from kiosk.simkiosk import STORE_PARTNER_ID, sandbox_kiosk, write_kiosk


def _check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["provider", "check", "payby", "--config", str(config)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_working_credentials_and_each_way_they_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_sandbox(tmp_path / "sb") as sb:
        files = sandbox_kiosk(tmp_path / "kiosk", sb)
        code, text = _check(files.config, capsys)
        assert code == 0 and "credentials work" in text

        _, other_public = generate_key_pair()  # PayBy holds another key for our store
        sb.payby.register_merchant(STORE_PARTNER_ID, other_public, Money.of(0, "AED"))
        code, text = _check(files.config, capsys)
        assert code == 1 and "refused our request" in text
        sb.payby.register_merchant(STORE_PARTNER_ID, files.store_public_pem)

        real = (files.root / "etc" / "payby_public.pem").read_bytes()
        (files.root / "etc" / "payby_public.pem").write_bytes(other_public)  # not PayBy's key
        code, text = _check(files.config, capsys)
        assert code == 1 and "does not verify" in text
        (files.root / "etc" / "payby_public.pem").write_bytes(real)

        req = urllib.request.Request(
            f"{sb.url}/_sandbox/clock", json.dumps({"advance_s": 20 * 60}).encode()
        )
        urllib.request.urlopen(req, timeout=5).read()
        code, text = _check(files.config, capsys)
        assert code == 1 and "clock" in text


def test_an_unreachable_payby_is_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, public = generate_key_pair()
    files = write_kiosk(tmp_path, payby_url="http://127.0.0.1:9", payby_public_pem=public)
    code, text = _check(files.config, capsys)
    assert code == 1 and "unreachable" in text and "Traceback" not in text


def test_paysera_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    with start_sandbox(tmp_path / "sb") as sb:
        sb.paysera.clients["kioskTest01"] = "k" * 32
        cfg = tmp_path / "kiosk.toml"
        secrets = tmp_path / "secrets.toml"
        cfg.write_text(
            f'[kiosk]\nid = "K"\ncurrency = "EUR"\nsecrets_file = "{secrets}"\n'
            f'[paysera]\nbase_url = "{sb.url}/rest/v1"\nclient_id = "kioskTest01"\n'
        )
        for key, word in (("k" * 32, "credentials work"), ("w" * 32, "refused our MAC")):
            fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f'journal_key = "{"ab" * 32}"\n[paysera]\nmac_key = "{key}"\n')
            code = main(["provider", "check", "paysera", "--config", str(cfg)])
            out = capsys.readouterr()
            assert (code == 0) is (word == "credentials work")
            assert word in out.out + out.err


def _rewrite_secret(files: object, table: str, key: str, value: str) -> None:
    import re

    path = files.config.parent / "secrets.toml"  # type: ignore[attr-defined]
    text = path.read_text()
    text = re.sub(rf'(\[{table}\]\n{key} = )"[^"]*"', rf'\1"{value}"', text)
    path.write_text(text)


@pytest.mark.parametrize(("name", "key"), [("rapyd", "secret_key"), ("cashii", "api_key")])
def test_rapyd_and_cashii_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, key: str
) -> None:
    with start_sandbox(tmp_path / "sb") as sb:
        files = sandbox_kiosk(tmp_path / "kiosk", sb)
        code = main(["provider", "check", name, "--config", str(files.config)])
        out = capsys.readouterr()
        assert code == 0 and "credentials work" in out.out + out.err
        _rewrite_secret(files, name, key, "x" * 40)  # not the key the provider holds
        code = main(["provider", "check", name, "--config", str(files.config)])
        out = capsys.readouterr()
        text = out.out + out.err
        assert code == 1 and "refused" in text and "x" * 40 not in text


def test_a_skewed_clock_is_measured_by_the_replys_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_sandbox(tmp_path / "sb") as sb:
        files = sandbox_kiosk(tmp_path / "kiosk", sb)
        req = urllib.request.Request(
            f"{sb.url}/_sandbox/clock", json.dumps({"advance_s": 5 * 60}).encode()
        )
        urllib.request.urlopen(req, timeout=5).read()  # PayBy 5 minutes ahead: still accepted
        code, text = _check(files.config, capsys)
        # the reply's Date has whole seconds: the skew is known to within a second
        assert code == 0 and re.search(r"warning: our clock is -(299|300|301) s off PayBy's", text)
        req = urllib.request.Request(
            f"{sb.url}/_sandbox/clock", json.dumps({"advance_s": 15 * 60}).encode()
        )
        urllib.request.urlopen(req, timeout=5).read()  # 20 minutes: refused, and said by how much
        code, text = _check(files.config, capsys)
        assert code == 1 and "more than 15 minutes off" in text
        assert re.search(r"-(1199|1200|1201) s", text)
