"""``kiosk bench outbox``: how fast the outbox drains, and how fast a kiosk with a long
backlog of pending payments is READY.

1. **Drain rate.** ``--drain N`` PayBy Cash Top Up payments left ``pending`` in a journal on
   disk (each with its order CREATED at the local sandbox and its pay request sealed in the
   outbox), then the forwarder delivers them all, as the daemon does in the background: signed
   requests, signed replies verified, one fsync'd decision per payment. Target on the
   development machine: ≥ 200 transactions/s.
2. **READY with a backlog.** ``--pending N`` (default 10,000) pending rows in a kiosk's journal;
   ``kiosk run --simulate`` is started and timed from spawn to ``READY=1`` (recovery runs
   before READY, and must not wait on PayBy: here PayBy is unreachable). Target: ≤ 5 s.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGETS = {"drain_tps": 200.0, "ready_s": 5.0}


def _fill(journal: Any, orders: list[tuple[str, str]], amount: int, cfg: Any) -> None:
    """``orders`` (orderNo, tokenUrl) as pending transactions, in one commit."""
    from kiosk.flows.payby_cashin import pay_call

    now = int(time.time() * 1000)
    with journal.atomic():
        for order_no, token_url in orders:
            tx = journal.begin("payby_cashin", currency="AED")
            tx = journal.transition(tx.id, "accepting", amount_due=amount, provider_ref=order_no)
            call = pay_call(cfg, tx, token_url, order_no, amount, now)
            tx, eff, _ = journal.start_call(tx.id, "paying", call)
            journal.transition(tx.id, "pending", reason="bench")
            journal.outcome(eff.id, "unknown")


def _orders_at(url: str, files: Any, n: int) -> list[tuple[str, str]]:
    """The store's wallet topped up for ``n`` orders of 1.00, and the orders (orderNo,
    tokenUrl), created through the sandbox's hooks."""
    import httpx

    from kiosk.simkiosk import STORE_PARTNER_ID

    hooks = f"{url}/_sandbox/payby"
    orders = []
    with httpx.Client(timeout=10.0) as http:
        http.post(
            f"{hooks}/merchants",
            json={
                "partnerId": STORE_PARTNER_ID,
                "publicKeyPem": files.store_public_pem.decode(),
                "balance": {"currency": "AED", "amount": str(n + 100)},
            },
        ).raise_for_status()
        for _ in range(n):
            created = http.post(f"{hooks}/orders", json={"amount": "1.00", "currency": "AED"})
            created.raise_for_status()
            orders.append((created.json()["orderNo"], created.json()["tokenUrl"]))
    return orders


async def _drain(files: Any, orders: list[tuple[str, str]]) -> dict[str, float]:
    from kiosk import config
    from kiosk.flows.context import Context
    from kiosk.journal import AsyncJournal
    from kiosk.providers.registry import connect_all

    cfg = config.load(files.config)
    secrets = config.load_secrets(cfg.secrets_file)
    journal = await AsyncJournal.open(
        cfg.journal_path, kiosk_id=cfg.kiosk_id, code_key=secrets.journal_key
    )
    await journal.call(_fill, journal.sync, orders, 100, cfg)
    clients, connections = connect_all(cfg, secrets)
    # The forwarder needs no device: it settles payments whose customer has left.
    ctx = Context(cfg, journal, None, None, None, clients=clients)  # type: ignore[arg-type]
    forwarder = ctx.outbox()
    started = time.perf_counter()
    task = asyncio.create_task(forwarder.run())
    while forwarder.settled < len(orders) and not task.done():  # noqa: ASYNC110 - a bench
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    task.cancel()
    paid = sum(
        1
        for tx in await journal.call(journal.sync.transactions, limit=len(orders) + 10)
        if tx.state == "completed"
    )
    for conn in connections:
        await conn.aclose()
    await journal.close()
    return {"drained": float(paid), "seconds": elapsed, "tps": paid / elapsed}


def _spawn_sandbox(state: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """``kiosk sandbox`` in its own process (PayBy is another machine: it does not share the
    kiosk's CPU time here either), on a free loopback port."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "sandbox", "--port", str(port), "--dir", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/_sandbox/clock", timeout=1).read()  # noqa: S310
            return url, proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the sandbox did not start") from None
            time.sleep(0.1)


def _ready_with_backlog(n: int, root: Path) -> float:
    from kiosk import config
    from kiosk.journal import Journal
    from kiosk.providers.payby.client import generate_key_pair
    from kiosk.simkiosk import DaemonProcess, write_kiosk

    _, payby_public = generate_key_pair()
    files = write_kiosk(root, payby_url="http://127.0.0.1:9", payby_public_pem=payby_public)
    cfg = config.load(files.config)
    secrets = config.load_secrets(cfg.secrets_file)
    j = Journal.open(cfg.journal_path, kiosk_id=cfg.kiosk_id, code_key=secrets.journal_key)
    _fill(j, [(f"ORD{i}", f"https://x/{i}") for i in range(n)], 100, cfg)
    j.close()
    daemon = DaemonProcess(files)
    try:
        return daemon.start(timeout=120.0)
    finally:
        daemon.stop()


def outbox(*, drain: int = 1000, pending: int = 10_000) -> int:
    import logging

    from kiosk.simkiosk import _register_at

    logging.getLogger().setLevel(logging.WARNING)  # one line per payment is not the bench
    root = Path(tempfile.mkdtemp(prefix="kiosk-bench-outbox-"))
    url, sandbox = _spawn_sandbox(root / "sandbox")
    try:
        files = _register_at(root / "kiosk", url, {})
        d = asyncio.run(_drain(files, _orders_at(url, files, drain)))
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    ready = _ready_with_backlog(pending, root / "backlog")
    ok_rate, ok_ready = d["tps"] >= TARGETS["drain_tps"], ready <= TARGETS["ready_s"]
    print(
        f"drain      {int(d['drained'])}/{drain} pending payments settled in"
        f" {d['seconds']:.2f} s: {d['tps']:.0f} tx/s"
        f" (target >= {TARGETS['drain_tps']:.0f}) {'ok' if ok_rate else 'MISSED'}"
    )
    print(
        f"ready      with {pending} pending rows: READY in {ready:.2f} s"
        f" (target <= {TARGETS['ready_s']:.0f}) {'ok' if ok_ready else 'MISSED'}"
    )
    return 0 if ok_rate and ok_ready and d["drained"] == drain else 1
