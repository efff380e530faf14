"""Signed commands in a heartbeat reply: verified, replay-checked, journaled, then run.

A reply may carry ``{"commands": [...]}``, each command::

    {"seq": 17, "kiosk": "KSK-0001", "cmd": "out_of_service",
     "args": {"reason": "cash collection at 14:00"},
     "issued_at": "2025-01-31T12:00:00Z", "sig": "<base64>"}

``sig`` is the fleet's Ed25519 signature (64 bytes, base64) over the canonical JSON
(:func:`kiosk.fleet.heartbeat.canonical`: sorted keys, no spaces, ASCII) of the command without
its ``sig``. ``args`` (optional, default ``{}``) per command, no other key allowed:

- ``out_of_service``: ``{"reason": "..."}`` (1-200 characters, required)
- ``in_service``: ``{}``
- ``reprint``: ``{"ref": "KSK-0001-000017"}`` (every receipt of that transaction)
- ``restart``: ``{}`` or ``{"reason": "..."}``
- ``approve``: ``{"ref": "...", "amount": {"currency": "AED", "minor": 150000}}``: the
  approval is for that transaction and that amount only: it lets a journey waiting for a
  technician's approval go on (:mod:`kiosk.approvals`); for a reference that waits for none
  (unknown, finished, already approved) or another amount it is refused, with the reason.

:class:`CommandGate` refuses, with the reason in words, a command when no fleet key is
configured, with a missing or bad signature, for another kiosk, an unknown ``cmd``, malformed
fields or args, an ``issued_at`` more than 24 h old or more than 5 min ahead, or a ``seq`` not
greater than the last accepted one (replay). The last accepted ``seq`` is kept in
``state_file`` (JSON, written atomically: temp file, fsync, rename, fsync of the directory); a
command is accepted only once its seq is on disk. An unreadable state file refuses every
command until a technician restores or removes it (failing closed: a lost seq would let the
last 24 h of commands replay).

Wiring (the daemon)::

    gate = CommandGate(load_public_key(cfg.fleet.public_key_file) if cfg.fleet.public_key_file
                       else None, cfg.kiosk_id, cfg.state_dir / "fleet-commands.json")

    async def on_commands(cmds: list[dict[str, Any]]) -> None:  # HeartbeatPusher's callback
        await handle(cmds, gate, run_command, journal)  # run_command(cmd) -> str, in words

:func:`handle` journals ``fleet.command`` for each command (``{seq, cmd, accepted, reason}``,
and ``args`` when accepted; never the signature) *before* running it, so that a ``restart`` is
on record, then ``fleet.command.result`` (``{seq, cmd, ok, result}``) once ``run`` returns or
fails.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kiosk.errors import KioskError
from kiosk.fleet.heartbeat import canonical

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from kiosk.journal import AsyncJournal

log = logging.getLogger("kiosk.fleet")

MAX_AGE_S: Final = 24 * 3600.0
MAX_AHEAD_S: Final = 5 * 60.0
FIELDS: Final = frozenset({"seq", "kiosk", "cmd", "args", "issued_at", "sig"})
_REF_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CURRENCY_RE: Final = re.compile(r"[A-Z]{3,4}")


class FleetKeyError(KioskError, ValueError):
    """The fleet's public key file cannot be used; the message names the file."""


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The fleet's Ed25519 public key from ``path``: PEM (SubjectPublicKeyInfo), or one line
    of base64 of the raw 32 bytes (the form :attr:`kiosk.identity.Identity.public_b64` has)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FleetKeyError(
            f"{path}: cannot read the fleet's public key ({exc.strerror}): check"
            " fleet.public_key_file"
        ) from None
    key: object = None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise FleetKeyError(
            f"{path}: not an Ed25519 public key (expected PEM, or the raw 32 bytes in base64):"
            " ask the fleet's operator for its command-signing key"
        )
    return key


def signing_bytes(cmd: dict[str, Any]) -> bytes:
    """What the fleet signs: the canonical JSON of ``cmd`` without ``sig``."""
    return canonical({k: v for k, v in cmd.items() if k != "sig"})


def _text(value: object, most: int = 200) -> bool:
    return isinstance(value, str) and 0 < len(value) <= most and value.isprintable()


def _check_args(cmd: str, args: dict[str, Any]) -> str:
    """What is wrong with ``args`` for ``cmd`` (``""``: nothing)."""
    allowed = {
        "out_of_service": {"reason"},
        "in_service": set(),
        "reprint": {"ref"},
        "restart": {"reason"},
        "approve": {"ref", "amount"},
    }[cmd]
    extra = sorted(set(args) - allowed)
    if extra:
        return f"unexpected args {', '.join(map(str, extra))}"
    if "reason" in args and not _text(args["reason"]):
        return "reason: expected 1-200 printable characters"
    if cmd == "out_of_service" and "reason" not in args:
        return "reason: required"
    if cmd in ("reprint", "approve"):
        ref = args.get("ref")
        if not isinstance(ref, str) or not _REF_RE.fullmatch(ref):
            return "ref: expected a transaction reference (1-64 of A-Z a-z 0-9 _ -)"
    if cmd == "approve":
        amount = args.get("amount")
        if not (
            isinstance(amount, dict)
            and set(amount) == {"currency", "minor"}
            and isinstance(amount["currency"], str)
            and _CURRENCY_RE.fullmatch(amount["currency"])
            and type(amount["minor"]) is int
            and amount["minor"] > 0
        ):
            return 'amount: expected {"currency": "AED", "minor": <integer above 0>}'
    return ""


def _issued_at(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


class CommandGate:
    """Decides whether a command from the fleet may run; see the module's docstring."""

    COMMANDS: Final = frozenset({"out_of_service", "in_service", "reprint", "restart", "approve"})

    def __init__(
        self,
        fleet_public_key: Ed25519PublicKey | None,
        kiosk_id: str,
        state_file: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = fleet_public_key
        self.kiosk_id = kiosk_id
        self.state_file = state_file
        self._clock = clock
        self._lock = threading.Lock()
        self._last_seq, self._broken = self._load()

    @property
    def last_seq(self) -> int:
        """The last accepted seq (0: none yet)."""
        return self._last_seq

    def _load(self) -> tuple[int, str]:
        try:
            text = self.state_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0, ""
        except OSError as exc:
            return 0, f"{self.state_file}: unreadable ({exc.strerror})"
        try:
            seq = json.loads(text)["last_seq"]
        except (ValueError, KeyError, TypeError):
            seq = None
        if type(seq) is not int or seq < 0:
            return 0, f"{self.state_file}: not a command state file"
        return seq, ""

    def _save(self, seq: int) -> None:
        """``state_file`` replaced atomically by ``{"last_seq": seq}``, durable on return."""
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps({"last_seq": seq}).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.state_file)
        dir_fd = os.open(self.state_file.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def accept(self, cmd: dict[str, Any]) -> tuple[bool, str]:
        """``(True, "accepted")`` and its seq recorded, else ``(False, <why, in words>)``.
        Does file I/O (an fsync): call it off the event loop (:func:`handle` does)."""
        with self._lock:
            why = self._refusal(cmd)
            if why:
                return False, why
            seq: int = cmd["seq"]
            try:
                self._save(seq)
            except OSError as exc:
                return False, f"cannot record seq {seq} in {self.state_file} ({exc.strerror})"
            self._last_seq = seq
            return True, "accepted"

    def _refusal(self, cmd: object) -> str:  # object: whatever JSON the reply held
        if not isinstance(cmd, dict):
            return "not a JSON object"
        if self._key is None:
            return "no fleet public key configured (fleet.public_key_file)"
        if self._broken:
            return (
                f"command state lost: {self._broken}; restore it from a backup (or remove it:"
                " commands signed in the last 24 h could then be replayed)"
            )
        why = self._bad_signature(cmd)
        if why:
            return why
        extra = sorted(set(map(str, cmd)) - FIELDS)
        if extra:
            return f"malformed: unexpected fields {', '.join(extra)}"
        seq, kiosk, name = cmd.get("seq"), cmd.get("kiosk"), cmd.get("cmd")
        if type(seq) is not int or seq < 1:
            return "malformed: seq must be an integer above 0"
        if not isinstance(kiosk, str):
            return "malformed: kiosk must be a string"
        if kiosk != self.kiosk_id:
            return f"for kiosk {kiosk[:32]!r}, not this one ({self.kiosk_id})"
        if not isinstance(name, str) or name not in self.COMMANDS:
            return f"unknown command {str(name)[:32]!r}"
        args = cmd.get("args", {})
        if not isinstance(args, dict):
            return "malformed: args must be an object"
        why = _check_args(name, args)
        if why:
            return f"malformed args for {name}: {why}"
        return self._bad_time(cmd.get("issued_at")) or self._replayed(seq)

    def _bad_signature(self, cmd: dict[str, Any]) -> str:
        from cryptography.exceptions import InvalidSignature

        assert self._key is not None
        sig = cmd.get("sig")
        if not isinstance(sig, str) or not sig:
            return "no signature"
        try:
            self._key.verify(base64.b64decode(sig, validate=True), signing_bytes(cmd))
        except (binascii.Error, ValueError, TypeError, InvalidSignature):
            return "bad signature (not signed by the fleet's key)"
        return ""

    def _bad_time(self, issued_at: object) -> str:
        when = _issued_at(issued_at)
        if when is None or not math.isfinite(when):
            return "malformed: issued_at must be an ISO 8601 time with a time zone"
        age = self._clock() - when
        if age > MAX_AGE_S:
            return f"too old: issued {age / 3600:.1f} h ago (at most 24 h)"
        if -age > MAX_AHEAD_S:
            return f"issued {-age / 60:.1f} min in the future (at most 5 min): check the clocks"
        return ""

    def _replayed(self, seq: int) -> str:
        if seq <= self._last_seq:
            return f"replayed: seq {seq} is not after the last accepted ({self._last_seq})"
        return ""


def _summary(cmd: object) -> dict[str, Any]:
    """seq and cmd as given, when they have the right type (a refused command is untrusted)."""
    seq = cmd.get("seq") if isinstance(cmd, dict) else None
    name = cmd.get("cmd") if isinstance(cmd, dict) else None
    return {
        "seq": seq if type(seq) is int else None,
        "cmd": name[:32] if isinstance(name, str) else None,
    }


def _order(commands: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ascending seq (so a batch sent out of order is not refused as replay), malformed last."""
    return sorted(
        commands,
        key=lambda c: (
            (0, c["seq"]) if isinstance(c, dict) and type(c.get("seq")) is int else (1, 0)
        ),
    )


async def handle(
    commands: Iterable[dict[str, Any]],
    gate: CommandGate,
    run: Callable[[dict[str, Any]], Awaitable[str]],
    journal: AsyncJournal,
) -> list[dict[str, Any]]:
    """Each command through ``gate``; accepted ones journaled then run, refused ones journaled.
    Returns one entry per command: ``{seq, cmd, accepted, reason}`` and, when it ran,
    ``ok`` and ``result`` (``run``'s answer, or ``"failed: <error>"``)."""
    out: list[dict[str, Any]] = []
    for cmd in _order(commands):
        entry = _summary(cmd)
        ok, reason = await asyncio.to_thread(gate.accept, cmd)
        entry |= {"accepted": ok, "reason": reason}
        if not ok:
            log.warning("fleet: command %s #%s refused: %s", entry["cmd"], entry["seq"], reason)
            await journal.call(journal.sync.log, "fleet.command", entry)
            out.append(entry)
            continue
        await journal.call(
            journal.sync.log, "fleet.command", {**entry, "args": cmd.get("args", {})}
        )
        log.info("fleet: command %s #%s accepted", entry["cmd"], entry["seq"])
        try:
            result, done = await run(cmd), True
        except asyncio.CancelledError:
            raise
        except KioskError as exc:  # refused in words (an approve for nothing waiting)
            log.warning("fleet: command %s #%s not run: %s", entry["cmd"], entry["seq"], exc)
            result, done = f"refused: {exc}"[:500], False
        except Exception as exc:
            log.exception("fleet: command %s #%s failed", entry["cmd"], entry["seq"])
            result, done = f"failed: {type(exc).__name__}: {exc}"[:500], False
        entry |= {"ok": done, "result": str(result)[:500]}
        await journal.call(
            journal.sync.log,
            "fleet.command.result",
            {k: entry[k] for k in ("seq", "cmd", "ok", "result")},
        )
        out.append(entry)
    return out
