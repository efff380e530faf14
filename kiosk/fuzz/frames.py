"""Fuzz targets for what comes off the serial lines and the admin socket: the eSSP and ID-003
frame parsers (random bytes, valid frames buried in garbage, cut, with flipped bits, fed whole
or byte by byte) and the admin socket's dispatcher (any line a local process could send).

Properties: a frame parser never raises on any byte stream and hands out only frames whose
bytes it was given whole (re-serialised, each is found in the input); ``deserialize`` raises
only ``FrameError``; the admin dispatcher always answers a JSON object with ``ok`` and never
raises. ``kiosk bench fuzz frames|admin --seconds N`` runs them for N seconds (a seeded
loop); the tests run them briefly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from typing import Any

from drivers.errors import FrameError
from drivers.essp import frames as essp
from drivers.id003 import frames as id003
from drivers.id003.protocol import FrameParser as Id003Parser


def essp_frame(rng: random.Random) -> bytes:
    data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    return essp.Frame(rng.randint(0, 0x7D), data, rng.random() < 0.5).serialize()


def id003_frame(rng: random.Random) -> bytes:
    data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 30)))
    return id003.Frame(rng.randrange(256), data).serialize()


def stream(rng: random.Random, make: Callable[[random.Random], bytes]) -> bytes:
    """Valid frames and garbage, some cut short or with a flipped bit."""
    out = bytearray()
    for _ in range(rng.randint(0, 6)):
        kind = rng.random()
        if kind < 0.3:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))
        else:
            frame = bytearray(make(rng))
            if kind < 0.45 and frame:
                del frame[rng.randrange(len(frame)) :]
            elif kind < 0.6 and frame:
                frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
            out += frame
    return bytes(out)


def _chunks(rng: random.Random, data: bytes) -> list[bytes]:
    if rng.random() < 0.3:
        return [data[i : i + 1] for i in range(len(data))]
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 16)
        out.append(data[i : i + n])
        i += n
    return out


def check_essp(rng: random.Random) -> str:
    data = stream(rng, essp_frame)
    parser = essp.FrameParser()
    found = [f for chunk in _chunks(rng, data) for f in parser.feed(chunk)]
    for frame in found:  # only what was on the wire, whole (STX stuffing undone)
        if frame.serialize()[1:].replace(b"\x7f\x7f", b"\x7f") not in data.replace(
            b"\x7f\x7f", b"\x7f"
        ):
            return f"eSSP parser gave a frame that was not on the wire: {frame}"
    with contextlib.suppress(FrameError):  # the one error it may raise
        essp.Frame.deserialize(data)
    return ""


def check_id003(rng: random.Random) -> str:
    data = stream(rng, id003_frame)
    parser = Id003Parser()
    found = [f for chunk in _chunks(rng, data) for f in parser.feed(chunk)]
    for frame in found:
        if frame.serialize() not in data:
            return f"ID-003 parser gave a frame that was not on the wire: {frame}"
    with contextlib.suppress(FrameError):
        id003.Frame.deserialize(data)
    return ""


def admin_line(rng: random.Random) -> bytes:
    shapes: list[Callable[[], Any]] = [
        lambda: {"cmd": rng.choice(["status", "payout", "refund", "levels", "nope", ""])},
        lambda: {"cmd": "payout", "amount": rng.choice([0, -1, 2**70, 1.5, "20.00", None, []])},
        lambda: {"cmd": "refund", "ref": rng.choice([None, 7, "x" * 5000]), "amount": [1]},
        lambda: [1, 2, 3],
        lambda: rng.choice([None, 1, "cmd", True]),
        lambda: {"cmd": {"nested": ["x"] * rng.randint(0, 50)}},
    ]
    if rng.random() < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    return json.dumps(rng.choice(shapes)()).encode()


def check_admin(rng: random.Random, loop: asyncio.AbstractEventLoop) -> str:
    from kiosk.admin import _dispatch

    async def echo(req: dict[str, Any]) -> dict[str, Any]:
        if req.get("cmd") == "payout" and type(req.get("amount")) is not int:
            raise ValueError("amount must be a positive integer of minor units")
        return {"cmd": req.get("cmd")}

    handlers = {"status": echo, "payout": echo, "refund": echo, "levels": echo}
    line = admin_line(rng)
    reply = loop.run_until_complete(_dispatch(line, handlers))  # type: ignore[arg-type]
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        return f"admin reply {reply!r} to {line[:60]!r}"
    json.dumps(reply)  # it must go back on the wire
    return ""


TARGETS = ("essp", "id003", "admin")


def fuzz_frames(
    target: str, seconds: float, seed: int, *, out: Callable[[str], None] = print
) -> int:
    """Run ``target`` (essp, id003 or admin) for ``seconds``; 0 when no property failed."""
    rng = random.Random(seed)
    loop = asyncio.new_event_loop()
    runs, failures = 0, 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                if target == "admin":
                    problem = check_admin(rng, loop)
                else:
                    problem = (check_essp if target == "essp" else check_id003)(rng)
            except Exception as exc:  # a property: nothing may raise
                problem = f"{type(exc).__name__}: {exc}"
            runs += 1
            if problem:
                failures += 1
                if failures <= 10:
                    out(f"  FAILED: {problem}")
    finally:
        loop.close()
    out(f"kiosk bench fuzz {target}: {runs} cases in {seconds:.0f} s, seed {seed}: "
        f"{failures} failed")  # fmt: skip
    return 1 if failures else 0
