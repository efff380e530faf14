"""The panel's checks: ``leds`` and ``buzzer`` (the technician confirms what is seen and heard;
set without anyone watching otherwise), ``buttons`` and ``door`` (the technician presses green,
red, opens and closes the door, each within the session's press timeout; skipped when not
interactive)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

from kiosk.selftest.result import Verdict, failed, passed, skipped

if TYPE_CHECKING:
    from drivers.panel import PanelEvent
    from kiosk.selftest.session import Session

SHOW_S = 0.4  # how long each LED stays lit when nobody is asked

LEDS: Final = (("green", "ready"), ("amber", "insert_notes"), ("red", "out_of_service"))


async def check_leds(s: Session) -> Verdict:
    from drivers.panel import PanelState

    panel, pins = s.devices.panel, s.config.panel
    await panel.open()
    dark = []
    for colour, state in LEDS:
        panel.show(PanelState(state))
        lit = {k for k, on in panel.outputs().items() if on and k != "buzzer"}
        if lit != {colour}:
            dark.append(f"{colour} (GPIO {getattr(pins, 'led_' + colour)} reads {sorted(lit)})")
        elif s.interactive and not await s.prompt.ask(f"Is the {colour.upper()} light on?"):
            dark.append(f"{colour} (GPIO {getattr(pins, 'led_' + colour)})")
        elif not s.interactive:
            await asyncio.sleep(SHOW_S)
    if dark:
        return failed(
            f"did not light: {', '.join(dark)}",
            "check the LED and its wire from that GPIO (through its resistor) to ground",
        )
    how = "seen by the technician" if s.interactive else "set without error; nobody watched"
    return passed(f"green, amber and red lit in turn ({how})")


async def check_buzzer(s: Session) -> Verdict:
    panel = s.devices.panel
    for _ in range(3):
        panel.tick()
        await asyncio.sleep(panel.timing.beep_short + panel.timing.beep_gap + 0.1)
    if s.interactive and not await s.prompt.ask("Did you hear three short beeps?"):
        return failed(
            "not heard", f"check the buzzer and its transistor on GPIO {s.config.panel.buzzer}"
        )
    return passed("three beeps (heard)" if s.interactive else "three beeps sent; nobody listened")


async def _await_event(s: Session, among: set[PanelEvent]) -> PanelEvent | None:
    """The first of ``among`` within the press timeout (others are ignored), or None."""
    panel = s.devices.panel
    try:
        async with asyncio.timeout(s.press_timeout_s):
            while (got := await panel.next_event()) not in among:
                pass
    except TimeoutError:
        return None
    return got


async def _drain(s: Session) -> None:
    with contextlib.suppress(TimeoutError):
        while True:
            await asyncio.wait_for(s.devices.panel.next_event(), 0.05)


async def check_buttons(s: Session) -> Verdict:
    from drivers.panel import PanelEvent

    if not s.interactive:
        return skipped("not interactive (--no-buttons, or stdin is not a terminal)")
    panel, pins = s.devices.panel, s.config.panel
    await panel.open()
    await _drain(s)
    buttons = {PanelEvent.CONFIRM: ("GREEN", pins.confirm), PanelEvent.CANCEL: ("RED", pins.cancel)}
    for want, (colour, pin) in buttons.items():
        s.prompt.tell(f"Press the {colour} button (within {s.press_timeout_s:.0f} s)")
        got = await _await_event(s, set(buttons))
        if got is None:
            return failed(
                f"no press of {colour.lower()} in {s.press_timeout_s:.0f} s",
                f"check the button and its wire from GPIO {pin} to ground (pressed = closed)",
            )
        if got is not want:
            return failed(
                f"pressing {colour.lower()} read as the other button",
                f"the buttons are swapped: confirm goes to GPIO {pins.confirm}, cancel to "
                f"GPIO {pins.cancel}",
            )
    return passed("green (confirm) and red (cancel) read")


async def check_door(s: Session) -> Verdict:
    from drivers.panel import PanelEvent

    panel, pin = s.devices.panel, s.config.panel.door
    where = "open" if panel.door_open else "closed"
    if not s.interactive:
        return skipped(f"not interactive; the switch reads {where}")
    await panel.open()
    await _drain(s)
    steps = [("Open the door", PanelEvent.DOOR_OPEN), ("Close the door", PanelEvent.DOOR_CLOSED)]
    if panel.door_open:
        steps.insert(0, ("Close the door", PanelEvent.DOOR_CLOSED))
    for text, want in steps:
        s.prompt.tell(f"{text} (within {s.press_timeout_s:.0f} s)")
        if await _await_event(s, {want}) is None:
            return failed(
                f"{text.lower()}: not seen in {s.press_timeout_s:.0f} s (the switch read {where})",
                f"check the door switch and its wire from GPIO {pin} to ground",
            )
    return passed("opened and closed: the switch follows the door")
