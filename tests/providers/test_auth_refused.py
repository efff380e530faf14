"""A provider refusing the kiosk's own credentials (issue 16): each client says so with
:class:`ProviderAuthFailed`, the provider is taken out of service (its journeys refused before
any note) and stays so until its probe is accepted again; the daemon logs it at ERROR once,
journals each change, and the fleet sees it (heartbeat, metric, alert)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk import config
from kiosk.errors import ProviderAuthFailed
from kiosk.fleet.heartbeat import build
from kiosk.providers.payby.client import generate_key_pair
from kiosk.providers.registry import Watched, connect_all, providers
from kiosk.reachability import Reachability
from kiosk.sandbox.kit import Request
from kiosk.sandbox.server import Sandbox, start_sandbox
from kiosk.simkiosk import (
    PAYSERA_CLIENT_ID,
    STORE_PARTNER_ID,
    KioskFiles,
    cashii_merchant,
    rapyd_pos,
    sandbox_kiosk,
)


def _payby(sb: Sandbox, files: KioskFiles, revoke: bool) -> None:
    key = generate_key_pair()[1] if revoke else files.store_public_pem  # another key on file
    sb.payby.register_merchant(STORE_PARTNER_ID, key)


def _paysera(sb: Sandbox, files: KioskFiles, revoke: bool) -> None:
    sb.paysera.clients[PAYSERA_CLIENT_ID] = "x" * 32 if revoke else files.paysera_mac_key


def _rapyd(sb: Sandbox, files: KioskFiles, revoke: bool) -> None:
    pos = {**rapyd_pos(files), **({"secret_key": "s" * 40} if revoke else {})}
    sb.app.providers["rapyd"].handle_hook(Request("POST", "/pos", json.dumps(pos).encode()))


def _cashii(sb: Sandbox, files: KioskFiles, revoke: bool) -> None:
    merchants = sb.app.providers["cashii"].ledger.merchants
    if revoke:
        merchants.pop(files.cashii_api_key)
    else:
        merchants[files.cashii_api_key] = cashii_merchant(files)["account"]


REVOKE: dict[str, Callable[[Sandbox, KioskFiles, bool], None]] = {
    "payby": _payby,
    "paysera": _paysera,
    "rapyd": _rapyd,
    "cashii": _cashii,
}


@pytest.mark.parametrize("name", sorted(REVOKE))
def test_a_provider_that_refuses_our_keys_is_down_until_it_accepts_them(
    tmp_path: Path, name: str
) -> None:
    with start_sandbox(tmp_path / "sb") as sb:
        files = sandbox_kiosk(tmp_path / "kiosk", sb)
        cfg = config.load(files.config)
        secrets = config.load_secrets(cfg.secrets_file)
        reach = Reachability()
        told: list[tuple[str, str]] = []

        def recorder(provider: str) -> Callable[[str], object]:
            return lambda said: (told.append((provider, said)), reach.auth(provider, said))

        clients, connections = connect_all(
            cfg, secrets, reach.recorder, reach.clock_recorder, recorder
        )
        probe = providers()[name].resolve("probe")

        async def scenario() -> None:
            try:
                assert isinstance(clients[name], Watched)
                await probe(clients[name], cfg)  # the keys work
                assert not reach.is_down(name) and told == []
                REVOKE[name](sb, files, True)
                with pytest.raises(ProviderAuthFailed):
                    await probe(clients[name], cfg)
                assert told and told[0][0] == name
                assert reach.is_down(name) and reach.auth_refused(name)
                assert reach.status()[name]["auth_refused"]
                reach.record(name, True)  # any reply: still down while it refuses our keys
                assert reach.is_down(name)
                REVOKE[name](sb, files, False)
                await probe(clients[name], cfg)  # accepted again (the daemon then clears it)
            finally:
                for c in connections:
                    await c.aclose()

        asyncio.run(scenario())


def test_the_latch_changes_once_each_way() -> None:
    reach = Reachability()
    assert reach.auth("rapyd", "rapyd: unauthorized (code ERROR_UNAUTHORIZED)")
    assert not reach.auth("rapyd", "rapyd: again")  # still refused: no news
    assert reach.is_down("rapyd") and not reach.is_down("payby")
    assert reach.auth("rapyd", None) and not reach.is_down("rapyd")
    assert not reach.auth("rapyd", None)


def test_the_daemon_logs_at_error_journals_and_clears_on_a_probe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kiosk.daemon import Daemon
    from tests.flows.rig import rig, run

    async def scenario() -> None:
        async with rig(tmp_path) as r:
            d = Daemon(r.ctx.config, config.load_secrets(r.ctx.config.secrets_file))
            reach = r.ctx.reachability
            with caplog.at_level(logging.WARNING, logger="kiosk.daemon"):
                d._auth(reach, "payby", "payby: our signature was rejected (code 403)")
                d._auth(reach, "payby", "payby: our signature was rejected (code 403)")
            errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
            assert len(errors) == 1 and "kiosk provider check payby" in errors[0].getMessage()
            facts = d.facts(r.ctx)
            (payby,) = [p for p in facts.providers if p.name == "payby"]
            assert payby.auth_refused
            await d._probe_providers(r.ctx)  # the sandbox accepts our keys: cleared
            assert reach.auth_refused("payby") is None and not reach.is_down("payby")
            j = r.ctx.journal
            events = await j.call(j.sync.events, None, limit=100)
            kinds = [e["kind"] for e in reversed(events)]
            assert kinds.count("provider.auth_refused") == 1
            assert kinds.index("provider.auth_refused") < kinds.index("provider.auth_accepted")

    run(scenario)


def test_the_heartbeat_and_metrics_carry_it() -> None:
    from jsonschema import Draft202012Validator

    from kiosk.fleet import heartbeat
    from kiosk.fleet.metrics import Metrics
    from kiosk.fleet.view import ProviderView
    from tests.fleet.test_heartbeat import make_view

    current = make_view(providers=(ProviderView("rapyd", True, 60.0, None, None, True),))
    doc = build(current, 1, 0)
    assert doc["providers"]["rapyd"]["auth_refused"] is True
    Draft202012Validator(json.loads(heartbeat.SCHEMA_PATH.read_text())).validate(doc)
    m = Metrics("KSK-0001", "dev", "test")
    m.update(current)
    assert 'kiosk_provider_auth_refused{provider="rapyd"} 1.0' in m.exposition().decode()
