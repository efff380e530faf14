"""Optional certificate pinning (``[tls.pins]``, issue 16): a client pinned to a certificate
reaches a server that presents it and refuses, before sending its request, one that presents
another; verification is never off; a bad pin is a config error, not a traceback."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk import config
from kiosk.errors import ConfigError
from kiosk.httpclient import client, pinned_context


def _self_signed(dirpath: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dirpath / f"{name}.pem", dirpath / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Server:
    def __init__(self, cert: Path, key: Path) -> None:
        self.paths: list[str] = []
        seen = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[_Server, Path, Path]]:
    cert, key = _self_signed(tmp_path, "provider")
    other, _ = _self_signed(tmp_path, "impostor")
    s = _Server(cert, key)
    try:
        yield s, cert, other
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()


async def _get(url: str, pin: Path | None) -> int:
    http = client(httpx.Timeout(5.0), pin)
    try:
        return (await http.get(url + "/pay")).status_code
    finally:
        await http.aclose()


def test_a_pinned_client_reaches_the_pinned_server_only(
    server: tuple[_Server, Path, Path],
) -> None:
    s, cert, other = server
    assert asyncio.run(_get(s.url, cert)) == 200
    assert s.paths == ["/pay"]
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(_get(s.url, other))  # another certificate: refused in the handshake
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(_get(s.url, None))  # not in the public store either: never unverified
    assert s.paths == ["/pay"]  # neither request was sent


def test_a_pinned_context_checks_the_host_name(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path, "provider")
    ctx = pinned_context(cert)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


def _config(config_file: Path, pins: str) -> Path:
    config_file.write_text(config_file.read_text() + f"\n[tls.pins]\n{pins}\n")
    return config_file


def test_pins_are_checked_with_the_config(tmp_path: Path, config_file: Path) -> None:
    cert, _ = _self_signed(tmp_path, "provider")
    plain = config_file.read_text()
    cfg = config.load(_config(config_file, f'payby = "{cert}"\nfleet = "{cert}"'))
    assert cfg.tls.pins == {"payby": cert, "fleet": cert}
    config.check_tls_pins(cfg)

    config_file.write_text(plain)
    with pytest.raises(ConfigError, match=r"tls\.pins\.paybee"):
        config.load(_config(config_file, f'paybee = "{cert}"'))
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    for bad in (junk, tmp_path / "missing.pem"):
        config_file.write_text(plain)
        cfg = config.load(_config(config_file, f'rapyd = "{bad}"'))
        with pytest.raises(ConfigError, match=r"tls\.pins\.rapyd"):
            config.check_tls_pins(cfg)
