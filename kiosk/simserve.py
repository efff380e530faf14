"""``kiosk sim validator``: a validator simulator that speaks its protocol on a pseudo-terminal.

It links the pty at ``--link`` (point a driver, the daemon or a technician's tool at it as at
``/dev/kiosk-validator``) and, with ``--control SOCK``, listens for the control channel's JSON
lines (``insert``, ``insert_fake``, ``fault``, ``clear_fault``, ``power``, ``state``), the
same vocabulary as the daemon's simulated hardware. Runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from kiosk.devices import boundary
from kiosk.errors import UsageError

DEFAULT_NOTES = (500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)


def build_simulator(
    protocol: str,
    link: Path,
    currency: str,
    notes: tuple[int, ...],
    levels: dict[int, int] | None = None,
) -> tuple[Any, Coroutine[Any, Any, None]]:
    """The control-channel script and the coroutine that serves the device on ``link``."""
    if protocol == "id003":
        from drivers.id003.codes import ESCROW_TABLES
        from drivers.id003.sim import Id003Simulator, run_simulator
        from drivers.sim.wire import Id003Script

        table = None if currency in ESCROW_TABLES else {0x61 + i: v for i, v in enumerate(notes)}
        id003 = Id003Simulator(currency=currency, escrow_table=table)
        return Id003Script(id003), run_simulator(link, currency=currency, sim=id003)
    if protocol == "essp":
        from drivers.essp.sim import EsspSimulator
        from drivers.essp.sim import run_simulator as run_essp
        from drivers.sim.wire import EsspScript

        essp = EsspSimulator(
            currency=currency, channels=dict(enumerate(notes, start=1)), levels=levels
        )
        return EsspScript(essp), run_essp(link, currency=currency, sim=essp)
    raise ValueError(f"unknown protocol {protocol!r}")


async def serve_validator(
    protocol: str,
    link: Path,
    currency: str,
    control: Path | None,
    notes: tuple[int, ...],
    levels: dict[int, int] | None = None,
) -> None:
    from drivers.sim.control import ValidatorRig, serve_control

    script, device = build_simulator(protocol, link, currency, notes, levels)
    try:
        server = await serve_control(ValidatorRig(script), control) if control else None
    except OSError as exc:  # start-up: a refusal naming the socket, never a traceback
        device.close()  # never started
        raise UsageError(
            f"--control {control}: cannot listen there ({exc.strerror or exc}): name a socket"
            " path in a directory you may write"
        ) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(device)
    print(
        f"{protocol} validator simulator ({currency}) on {link}"
        + (f"; control socket {control}" if control else ""),
        flush=True,
    )
    try:
        await asyncio.wait(
            {task, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError), boundary(f"{protocol} simulator"):
                await task  # the pty or its link could not be made: a DeviceError
        finally:
            if server is not None:
                server.close()
