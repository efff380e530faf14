"""The code reader interface: something that yields decoded QR texts."""

from __future__ import annotations

from typing import Protocol


class CodeReader(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def next_code(self) -> str:
        """Wait for the next decoded code. The same code seen in consecutive frames is one
        scan. Decoding runs off the event loop."""
        ...
