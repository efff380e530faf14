"""The daemon and the fleet, end to end: ``kiosk run --simulate`` pushes signed heartbeats to a
loopback fleet (each valid against the schema, signed by the identity ``kiosk provision``
writes), answers ``/healthz`` (503 with the reason once the door opens), ``/heartbeat`` and
``/metrics``, and runs a fleet command signed with the fleet's key (journaled), while a
forged one is refused."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from drivers.sim.control import SimControl
from kiosk.fleet.commands import signing_bytes
from kiosk.fleet.heartbeat import SCHEMA_PATH
from kiosk.fleet.push import verify
from kiosk.journal import read_rows
from kiosk.sandbox.server import start_sandbox
from kiosk.simkiosk import DaemonProcess, sandbox_kiosk, wait_for

pytestmark = pytest.mark.slow


class Fleet:
    """A fleet endpoint on loopback: records each heartbeat; replies with ``commands``."""

    def __init__(self) -> None:
        self.beats: list[tuple[bytes, dict[str, str]]] = []
        self.commands: list[dict[str, Any]] = []
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fleet.beats.append((body, dict(self.headers)))
                reply = json.dumps({"commands": fleet.commands}).encode()
                fleet.commands = []
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/heartbeat"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed(key: Ed25519PrivateKey, **cmd: Any) -> dict[str, Any]:
    cmd.setdefault("issued_at", datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    cmd.setdefault("args", {})
    return {**cmd, "sig": base64.b64encode(key.sign(signing_bytes(cmd))).decode()}


def test_heartbeats_endpoints_and_commands(tmp_path: Path) -> None:
    fleet_key = Ed25519PrivateKey.generate()
    pem = fleet_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "fleet.pem").write_bytes(pem)
    fleet, port = Fleet(), free_port()
    schema = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    with start_sandbox(tmp_path / "sandbox") as sandbox:
        files = sandbox_kiosk(
            tmp_path / "kiosk",
            sandbox,
            fleet_url=fleet.url,
            fleet_port=port,
            fleet_interval_s=5,
            fleet_public_key_file=tmp_path / "fleet.pem",
        )
        daemon = DaemonProcess(files)
        daemon.start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: fleet.beats, timeout=20)
            body, headers = fleet.beats[0]
            doc = json.loads(body)
            schema.validate(doc)
            public = (files.root / "etc" / "identity.toml").read_text().split('public_key = "')[1]
            assert verify(body, headers["X-Kiosk-Signature"], public.split('"')[0])
            assert not verify(body + b" ", headers["X-Kiosk-Signature"], public.split('"')[0])
            assert (doc["kiosk_id"], doc["state"], doc["seq"] >= 1) == (
                "KSK-DEMO",
                "in_service",
                True,
            )
            assert httpx.get(f"{base}/healthz").status_code == 200
            assert httpx.get(f"{base}/heartbeat").json()["kiosk_id"] == "KSK-DEMO"
            names = {
                f.name for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)
            }
            assert {"kiosk_in_service", "kiosk_info", "kiosk_outbox_depth"} <= names
            SimControl(files.control_socket).call("door", open=True)
            wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 503, timeout=10)
            assert "door open" in " ".join(httpx.get(f"{base}/healthz").json()["reasons"])
            SimControl(files.control_socket).call("door", open=False)
            # a command signed by the fleet runs; a forged one (another key) is refused
            forged = signed(Ed25519PrivateKey.generate(), seq=1, kiosk="KSK-DEMO", cmd="restart")
            good = signed(fleet_key, seq=2, kiosk="KSK-DEMO", cmd="out_of_service",
                          args={"reason": "audit"})  # fmt: skip
            fleet.commands = [forged, good]
            seen = len(fleet.beats)
            wait_for(lambda: len(fleet.beats) > seen + 1, timeout=20)
            rows = read_rows(files.journal, "SELECT data FROM events WHERE kind = 'fleet.command'")
            said = [json.loads(r["data"]) for r in rows]
            assert [(d["seq"], d["accepted"]) for d in said] == [(1, False), (2, True)]
            reasons = httpx.get(f"{base}/healthz").json()["reasons"]
            assert "out of service by the fleet: audit" in reasons
            assert daemon.proc is not None and daemon.proc.poll() is None  # never restarted
            time.sleep(0.1)
        finally:
            daemon.stop()
            fleet.close()
