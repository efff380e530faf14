"""The acceptor's currency table (CURRENCY ASSIGN 0x8A) against the kiosk's currency."""

from __future__ import annotations

import pytest

from drivers.errors import DeviceFault
from drivers.id003.client import Id003Validator
from drivers.id003.codes import EUR_ESCROW, Command, Status
from drivers.id003.frames import Frame
from drivers.validator.base import NoteRejected
from tests.drivers.id003.test_id003_client import (
    FAST,
    TEN,
    device,
    escrowed,
    event,
    opened,
    run,
    status_is,
    until,
)

EUR, AED = 0x01, 0x02  # JCM country bytes, chosen for the test (JCM's numbering is not public)


def test_a_table_without_the_kiosk_currency_fails_open() -> None:
    async def main() -> None:
        async with device(country_code=EUR) as (_, port):
            v = Id003Validator(str(port.path), currency="AED", country_code=AED, **FAST)
            with pytest.raises(DeviceFault) as wrong:
                await v.open()
            message = str(wrong.value)
            assert "AED" in message and "EUR" in message  # "EUR" from the acceptor's version
            assert "0x01" in message and "0x02" in message
            assert v.link is None

    run(main())


def test_the_kiosk_currency_is_taken_from_a_multi_currency_table() -> None:
    async def main() -> None:
        foreign = {0x6A: 10000}
        async with (
            device(country_code=EUR, foreign_table=foreign, foreign_country=AED) as (sim, port),
            opened(port, country_code=EUR) as (v, _),
        ):
            assert v.escrow_table == EUR_ESCROW
            await v.enable()
            assert await escrowed(v, sim, 1000) == TEN

    run(main())


def test_a_foreign_note_in_escrow_is_returned_never_credited() -> None:
    async def main() -> None:
        foreign = {0x6A: 10000}  # 0x6A: no inhibit bit, so the acceptor can escrow it
        async with (
            device(country_code=EUR, foreign_table=foreign, foreign_country=AED) as (sim, port),
            opened(port, country_code=EUR) as (v, _),
        ):
            await v.enable()
            await until(status_is(sim, Status.IDLING))
            assert sim.insert(10000, foreign=True)
            assert await event(v) == NoteRejected("foreign_currency")
            assert Frame(Command.RETURN) in sim.received
            await until(status_is(sim, Status.IDLING))
            assert sim.cashbox() == {}

    run(main())


def test_foreign_codes_with_an_inhibit_bit_are_inhibited() -> None:
    async def main() -> None:
        ours = {c: v for c, v in EUR_ESCROW.items() if c != 0x68}
        async with (
            device(escrow_table=ours, foreign_table={0x68: 500}, foreign_country=AED) as (
                sim,
                port,
            ),
            opened(port, country_code=0) as (v, _),
        ):
            await v.enable()
            assert sim.state().denominations == b"\x81\x00"  # 0x61 (unassigned) and 0x68
            await until(status_is(sim, Status.IDLING))
            assert sim.insert(500, foreign=True)
            assert await event(v) == NoteRejected("inhibit")

    run(main())


def test_several_currencies_without_a_configured_country_fail_open() -> None:
    async def main() -> None:
        async with device(foreign_table={0x6A: 10000}, foreign_country=AED) as (_, port):
            v = Id003Validator(str(port.path), currency="EUR", **FAST)
            with pytest.raises(DeviceFault, match="several currencies"):
                await v.open()

    run(main())


def test_a_single_currency_table_is_the_kiosk_currency_without_a_country() -> None:
    async def main() -> None:
        async with device(country_code=0x2A) as (sim, port), opened(port) as (v, _):
            assert v.escrow_table == EUR_ESCROW
            await v.enable()
            assert await escrowed(v, sim, 1000) == TEN

    run(main())
