"""What a check gives back: a :class:`Verdict` (:func:`passed`, :func:`failed` with what to
do, :func:`skipped`), and the :class:`Check` line the runner makes of it (``PASS`` / ``FAIL`` /
``SKIP``, or JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the self-test. ``ok`` is None for a check that was skipped; ``fix`` says, in
    plain words, what the technician does about a failure."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    @property
    def status(self) -> str:
        return "SKIP" if self.ok is None else "PASS" if self.ok else "FAIL"

    def line(self) -> str:
        text = f"{self.detail} — {self.fix}" if self.ok is False and self.fix else self.detail
        return f"{self.status}  {self.name:<9}  {text}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.lower(),
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool | None
    detail: str
    fix: str = ""


def passed(detail: str) -> Verdict:
    return Verdict(True, detail)


def failed(detail: str, fix: str) -> Verdict:
    return Verdict(False, detail, fix)


def skipped(detail: str) -> Verdict:
    return Verdict(None, detail)
