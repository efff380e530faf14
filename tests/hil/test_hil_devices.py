"""Real-hardware smoke tests, skipped unless a port is named in the environment.

On a kiosk (the daemon stopped: it owns the ports)::

    KIOSK_HIL_VALIDATOR=essp:/dev/kiosk-validator \\
    KIOSK_HIL_PRINTER=/dev/kiosk-printer \\
    uv run pytest tests/hil -v

``KIOSK_HIL_VALIDATOR`` is ``essp:PORT`` or ``id003:PORT`` (add ``:CUR``, default EUR);
``KIOSK_HIL_PRINTER`` an ESC/POS port. Nothing here moves money: the validator is opened,
enabled and disabled; the printer reports its status and prints one test line.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from drivers.printer.base import Document, Line, QrBlock

pytestmark = pytest.mark.hil


def _validator_spec() -> tuple[str, str, str]:
    spec = os.environ.get("KIOSK_HIL_VALIDATOR", "")
    if not spec:
        pytest.skip("KIOSK_HIL_VALIDATOR not set (e.g. essp:/dev/kiosk-validator)")
    protocol, _, rest = spec.partition(":")
    port, _, currency = rest.partition(":")
    return protocol, port, currency or "EUR"


def test_validator_opens_reports_and_enables() -> None:
    protocol, port, currency = _validator_spec()

    async def main() -> None:
        if protocol == "essp":
            from drivers.essp.client import EsspValidator

            validator = EsspValidator(port, currency=currency)
        else:
            from drivers.id003.client import Id003Validator

            validator = Id003Validator(port, currency=currency)
        report = await validator.open()
        print(f"{protocol} on {port}: power-up report {report}")
        try:
            await validator.enable()
            await asyncio.sleep(1.0)
            await validator.disable()
        finally:
            await validator.close()

    asyncio.run(main())


def test_printer_status_and_one_line() -> None:
    port = os.environ.get("KIOSK_HIL_PRINTER", "")
    if not port:
        pytest.skip("KIOSK_HIL_PRINTER not set (e.g. /dev/kiosk-printer)")

    async def main() -> None:
        from drivers.escpos.client import EscposPrinter

        printer = EscposPrinter(port)
        await printer.open()
        try:
            status = await printer.status()
            print(f"printer on {port}: {status}")
            assert status.online, "the printer does not answer DLE EOT"
            if status.ready:
                await printer.print(
                    Document("hil", (Line("kiosk HIL test", bold=True), QrBlock("HIL")))
                )
        finally:
            await printer.close()

    asyncio.run(main())
