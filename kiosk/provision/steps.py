"""A step: one file, directory or symlink on the kiosk as it must be; what differs from it under
the root, and making it so (a file atomically, with its mode and owner before the rename). A
step's or a check's :class:`Outcome` is one line of the report."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from kiosk.provision.errors import ProvisionError


@dataclass(frozen=True, slots=True)
class Step:
    """One file, directory or symlink on the kiosk, as it must be."""

    path: Path
    """On the kiosk (absolute; written under the root)."""
    mode: int
    owner: str = "root"
    group: str = "root"
    content: bytes | None = field(default=None, repr=False)
    """A file's bytes; ``None``: a directory, or a symlink when ``link`` is set."""
    link: str | None = None
    keep: bool = False
    """Created once, never replaced (the device key)."""

    @property
    def kind(self) -> str:
        return "link" if self.link is not None else "dir" if self.content is None else "file"


class Status(StrEnum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    PENDING = "pending"
    FAILED = "failed"
    OK = "ok"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    status: Status
    detail: str = ""
    check: bool = False
    """A check (config, provider, self-test), not an action."""


def differences(step: Step, target: Path) -> list[str]:
    """What differs between ``target`` and the step; ProvisionError for a thing in the way."""
    if step.link is not None:
        if target.is_symlink():
            return [] if str(target.readlink()) == step.link else ["link"]
        if target.exists():
            raise ProvisionError(f"{target}: not a symlink: move it away")
        return ["created"]
    if target.is_symlink() or (target.exists() and target.is_dir() != (step.content is None)):
        raise ProvisionError(f"{target}: in the way of a {step.kind}: move it away")
    if not target.exists():
        return ["created"]
    changes = []
    if step.content is not None and not step.keep and target.read_bytes() != step.content:
        changes.append("content")
    mode = stat.S_IMODE(target.stat().st_mode)
    if mode != step.mode:
        changes.append(f"mode {mode:04o} -> {step.mode:04o}")
    return changes


def _write(
    target: Path, data: bytes, mode: int, chown: Callable[[Path], None] | None = None
) -> None:
    """Atomically: a temporary file with the mode (and owner), fsynced, renamed over."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.provision")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.chmod(mode)
    if chown is not None:
        chown(tmp)
    tmp.replace(target)


def _make(step: Step, target: Path, chown: Callable[[Path], None] | None) -> None:
    if step.link is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.symlink_to(step.link)
    elif step.content is None:
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(step.mode)
        if chown is not None:
            chown(target)
    elif step.keep and target.exists():
        target.chmod(step.mode)
    else:
        _write(target, step.content, step.mode, chown)
