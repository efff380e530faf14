"""``kiosk sim fleet``'s command line: see :mod:`kiosk.fleet.sim`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.fleet.sim.runner import (
    MIN_INTERVAL_S,
    SimFleetError,
    Summary,
    check_args,
    check_url,
    run_fleet,
)


def _arg(parse: Callable[[str], Any], check: Callable[[Any], None]) -> Callable[[str], Any]:
    """An argparse ``type``: a bad value is argparse's clean message and exit status 2."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
            check(value)
        except (SimFleetError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc).partition(": ")[2] or str(exc)) from None
        return value

    return convert


def _kiosks(n: int) -> None:
    check_args(n, MIN_INTERVAL_S, None, 1)


def _interval(s: float) -> None:
    check_args(1, s, None, 1)


def _duration(s: float) -> None:
    check_args(1, MIN_INTERVAL_S, s, 1)


def _concurrency(n: int) -> None:
    check_args(1, MIN_INTERVAL_S, None, n)


def add_sim_parser(simsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers ``kiosk sim fleet`` on the ``kiosk sim`` subparsers (``kiosk.cli``)."""
    p = simsub.add_parser(
        "fleet",
        help="N simulated kiosks pushing signed heartbeats and metrics, to test a fleet side",
        description="N simulated kiosks in one process, each with its own Ed25519 key, push"
        " heartbeats (and metrics to a Pushgateway) from a seeded random walk: customers,"
        " faults (paper, jams, the door, providers, the clock, silence, liabilities) that come"
        " and go. A line every interval, a summary at the end (Ctrl-C). Without --url and"
        " --pushgateway: a dry run (heartbeats built, signed and checked). Exit 0; 1 when"
        " nothing was delivered or a heartbeat was invalid; 2 bad arguments.",
    )
    p.add_argument(
        "--kiosks", type=_arg(int, _kiosks), default=100, metavar="N", help="default 100"
    )
    p.add_argument(
        "--url",
        type=_arg(lambda u: check_url(u, "--url"), lambda _: None),
        metavar="URL",
        help="the fleet's heartbeat endpoint (POST)",
    )
    p.add_argument(
        "--pushgateway",
        type=_arg(lambda u: check_url(u, "--pushgateway"), lambda _: None),
        metavar="URL",
        help="a Prometheus Pushgateway (PUT /metrics/job/kiosk/kiosk/<id>)",
    )
    p.add_argument(
        "--interval-s",
        type=_arg(float, _interval),
        default=60.0,
        metavar="S",
        help="seconds between a kiosk's heartbeats (default 60, at least 1)",
    )
    p.add_argument(
        "--duration-s",
        type=_arg(float, _duration),
        metavar="S",
        help="stop after S seconds (default: at Ctrl-C)",
    )
    p.add_argument("--seed", type=int, default=1, help="the same seed, the same kiosks' walks")
    p.add_argument(
        "--concurrency",
        type=_arg(int, _concurrency),
        default=50,
        metavar="N",
        help="requests in flight at most (default 50)",
    )
    p.add_argument(
        "--print-keys",
        metavar="FILE",
        help="write the kiosks' ids and public keys (JSON) for the fleet to verify signatures",
    )
    p.set_defaults(fn=cmd_sim_fleet)


def cmd_sim_fleet(args: argparse.Namespace) -> int:
    """``kiosk sim fleet``; Ctrl-C (or SIGTERM) ends it with the summary."""
    fleet_log = logging.getLogger("kiosk.fleet")
    level = fleet_log.level
    if not getattr(args, "verbose", False):  # else every kiosk would say "unreachable"
        fleet_log.setLevel(logging.ERROR)
    try:
        summary = asyncio.run(_main(args))
    except SimFleetError as exc:
        print(f"kiosk sim fleet: {exc}", file=sys.stderr)
        return 2
    finally:
        fleet_log.setLevel(level)
    tried = summary.sent + summary.failed + summary.pushes + summary.push_failed
    nothing = tried > 0 and summary.sent + summary.pushes == 0
    return 1 if summary.invalid or nothing else 0


async def _main(args: argparse.Namespace) -> Summary:
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)

    def interrupted() -> None:
        stop.set()
        for sig in signals:  # a second Ctrl-C stops at once
            loop.remove_signal_handler(sig)

    for sig in signals:
        loop.add_signal_handler(sig, interrupted)
    try:
        return await run_fleet(
            args.kiosks,
            url=args.url,
            pushgateway=args.pushgateway,
            interval_s=args.interval_s,
            duration_s=args.duration_s,
            seed=args.seed,
            concurrency=args.concurrency,
            keys_file=Path(args.print_keys) if args.print_keys else None,
            stop=stop,
        )
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
