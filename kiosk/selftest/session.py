"""What every check is given: the :class:`Session` (the config, the secrets, the devices and
the technician's :class:`Prompt`, a :class:`Terminal` at the command line), and the
:class:`Step` that names a check, bounds its time and says what to do when it raises."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from kiosk.config import Config, Secrets
    from kiosk.hardware import Hardware
    from kiosk.selftest.result import Verdict

DEVICE_TIMEOUT_S: Final = 60.0  # the longest one device check may take (a silent port: ~20 s)
ANSWER_TIMEOUT_S: Final = 120.0  # a technician's y/n answer


class Prompt(Protocol):
    """How the self-test talks to the technician: an instruction, or a yes/no question
    (``None``: no answer in time)."""

    def tell(self, text: str) -> None: ...

    async def ask(self, question: str) -> bool | None: ...


class Terminal:
    """The technician at the terminal: prompts on stderr (stdout holds the results), answers
    read from stdin without blocking the event loop."""

    def __init__(self, out: Any = None, stdin: Any = None) -> None:
        self.out, self.stdin = out or sys.stderr, stdin or sys.stdin

    def tell(self, text: str) -> None:
        print(f"  >> {text}", file=self.out, flush=True)

    async def ask(self, question: str) -> bool | None:
        while True:
            self.tell(f"{question} [y/n]")
            line = await self._readline(ANSWER_TIMEOUT_S)
            if line is None:
                return None
            answer = line.strip().lower()
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")

    async def _readline(self, timeout: float) -> str | None:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[str] = loop.create_future()
        fd = self.stdin.fileno()

        def readable() -> None:  # a terminal hands over one line per read
            if not got.done():
                got.set_result(os.read(fd, 1024).decode(errors="replace"))

        loop.add_reader(fd, readable)
        try:
            async with asyncio.timeout(timeout):
                line = await got
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(fd)
        return line or None  # "" is the end of input


@dataclass
class Session:
    config: Config
    secrets: Secrets
    hw: Hardware | None
    interactive: bool
    press_timeout_s: float
    prompt: Prompt
    validator_error: str | None = None  # why the validator did not open

    @property
    def devices(self) -> Hardware:
        assert self.hw is not None  # device steps are skipped without hardware
        return self.hw

    def money(self, minor: int) -> str:
        from kiosk.money import Money

        return str(Money.of(minor, self.config.currency.code))


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    run: Callable[[Session], Awaitable[Verdict]]
    fix: str  # what to do when the check itself raises
    device: bool = True
    timeout_s: float | None = DEVICE_TIMEOUT_S
