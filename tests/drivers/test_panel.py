"""The GPIO panel on gpiozero's MockFactory."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import gpiozero
import pytest
from gpiozero.pins.mock import MockFactory

from drivers.panel import Panel, PanelEvent, PanelPins, PanelState, PanelTiming

PINS = PanelPins()
FAST = PanelTiming(blink_on=0.01, blink_off=0.01, beep_short=0.01, beep_gap=0.01, beep_long=0.03)


@pytest.fixture
def factory() -> Iterator[Any]:
    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.fixture
def panel(factory: Any) -> Iterator[Panel]:
    panel = Panel(PINS, pin_factory=factory, timing=FAST)
    yield panel
    panel.close()


async def event(panel: Panel) -> PanelEvent:
    return await asyncio.wait_for(panel.next_event(), 1)


def press(factory: Any, pin: int) -> None:
    factory.pin(pin).drive_low()
    factory.pin(pin).drive_high()


def test_buttons_reach_the_loop(panel: Panel, factory: Any) -> None:
    async def main() -> None:
        await panel.open()
        press(factory, PINS.confirm)
        assert await event(panel) is PanelEvent.CONFIRM
        press(factory, PINS.cancel)
        assert await event(panel) is PanelEvent.CANCEL
        press(factory, PINS.service_key)  # the technician turns the key, and back
        assert await event(panel) is PanelEvent.SERVICE_KEY
        with pytest.raises(TimeoutError):  # a release is not a press
            await asyncio.wait_for(panel.next_event(), 0.05)

    asyncio.run(main())


def test_presses_from_another_thread(panel: Panel, factory: Any) -> None:
    """gpiozero calls back on its own threads; events still arrive on the loop, in order."""

    async def main() -> list[PanelEvent]:
        await panel.open()

        def presses() -> None:
            for pin in (PINS.confirm, PINS.cancel, PINS.confirm):
                press(factory, pin)

        thread = threading.Thread(target=presses)
        thread.start()
        got = [await event(panel) for _ in range(3)]
        thread.join()
        return got

    assert asyncio.run(main()) == [PanelEvent.CONFIRM, PanelEvent.CANCEL, PanelEvent.CONFIRM]


def test_no_events_before_open(panel: Panel, factory: Any) -> None:
    press(factory, PINS.confirm)

    async def main() -> None:
        await panel.open()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(panel.next_event(), 0.05)

    asyncio.run(main())


def test_door(panel: Panel, factory: Any) -> None:
    door = factory.pin(PINS.door)

    def door_open() -> bool:
        return panel.door_open

    assert door_open()  # pull-up, switch not closed
    door.drive_low()
    assert not door_open()

    async def main() -> None:
        await panel.open()
        door.drive_high()
        assert await event(panel) is PanelEvent.DOOR_OPEN
        assert door_open()
        door.drive_low()
        assert await event(panel) is PanelEvent.DOOR_CLOSED
        assert not door_open()

    asyncio.run(main())


def lit(factory: Any) -> tuple[bool, bool, bool]:
    return (
        bool(factory.pin(PINS.led_green).state),
        bool(factory.pin(PINS.led_amber).state),
        bool(factory.pin(PINS.led_red).state),
    )


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (PanelState.READY, (True, False, False)),
        (PanelState.INSERT_NOTES, (False, True, False)),
        (PanelState.OUT_OF_SERVICE, (False, False, True)),
    ],
)
def test_steady_states(
    panel: Panel, factory: Any, state: PanelState, expected: tuple[bool, bool, bool]
) -> None:
    panel.show(PanelState.REFUSED)  # from a blinking, beeping state
    panel.show(state)
    assert lit(factory) == expected
    assert panel.state is state
    assert panel.lights()["sound"] == "silent"
    assert not factory.pin(PINS.buzzer).state


def toggled(pin: Any, timeout: float = 1.0) -> bool:
    """The pin went on and off (blinking or beeping) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {s.state for s in pin.states[1:]}
        if states >= {True, False}:
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize(
    ("state", "blinking", "others_off"),
    [
        (PanelState.READING, PINS.led_green, (PINS.led_amber, PINS.led_red)),
        (PanelState.WAIT, PINS.led_amber, (PINS.led_green, PINS.led_red)),
        (PanelState.REFUSED, PINS.led_red, (PINS.led_green, PINS.led_amber)),
    ],
)
def test_blinking_states(
    panel: Panel, factory: Any, state: PanelState, blinking: int, others_off: tuple[int, int]
) -> None:
    factory.pin(blinking).clear_states()
    panel.show(state)
    assert toggled(factory.pin(blinking))
    assert not any(factory.pin(p).state for p in others_off)
    assert "blink" in panel.lights().values()


def test_done_beeps_twice_and_refused_once(panel: Panel, factory: Any) -> None:
    buzzer = factory.pin(PINS.buzzer)
    buzzer.clear_states()
    panel.show(PanelState.DONE)
    assert lit(factory) == (True, False, False)
    deadline = time.monotonic() + 1
    while len(buzzer.states) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    assert [s.state for s in buzzer.states[1:]] == [True, False, True, False]

    buzzer.clear_states()
    panel.show(PanelState.REFUSED)
    deadline = time.monotonic() + 1
    while len(buzzer.states) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    states = buzzer.states[1:]
    assert [s.state for s in states] == [True, False]
    assert states[1].timestamp >= FAST.beep_long * 0.8  # a long one
    assert panel.lights() == {"green": "off", "amber": "off", "red": "blink", "sound": "one_long"}


def test_approval_blinks_amber_with_red_steady(panel: Panel, factory: Any) -> None:
    factory.pin(PINS.led_amber).clear_states()
    panel.show(PanelState.APPROVAL)
    assert toggled(factory.pin(PINS.led_amber))
    assert factory.pin(PINS.led_red).state and not factory.pin(PINS.led_green).state
    assert panel.lights() == {"green": "off", "amber": "blink", "red": "on", "sound": "one_long"}


def test_close_releases_pins_and_never_sets_the_global_factory(factory: Any) -> None:
    panel = Panel(PINS, pin_factory=factory)
    panel.show(PanelState.READING)
    panel.close()
    panel.close()  # idempotent
    again = Panel(PINS, pin_factory=factory)  # the pins are free again
    again.close()
    assert gpiozero.Device.pin_factory is None


def test_a_pin_clash_releases_what_was_taken(factory: Any) -> None:
    with pytest.raises(gpiozero.GPIOPinInUse):
        Panel(PanelPins(led_red=PINS.confirm), pin_factory=factory)
    Panel(PINS, pin_factory=factory).close()  # nothing left reserved
