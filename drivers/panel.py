"""The customer panel: two buttons, a door switch, a technician's service key switch, three
LEDs and a buzzer, through gpiozero.

The kiosk has no screen. What the customer sees and hears:

==================  ===============  ===============  ======================================
state               lights           buzzer           meaning for the customer
==================  ===============  ===============  ======================================
``READY``           green steady     silent           "show me your code"
``READING``         green blinking   silent           "got it, checking your code"
``INSERT_NOTES``    amber steady     silent           "insert notes; press confirm when
                                                      done, cancel to stop"
``CHOOSE``          green blinking,  one short beep   "pick an amount from the printed list:
                    amber steady     per press        press green once for the first, twice
                                                      for the second..., then wait"
``WAIT``            amber blinking   silent           "working, please wait"
``APPROVAL``        amber blinking,  one long beep    "an attendant must approve this amount:
                    red steady                        please wait (cancel to stop)"
``DONE``            green steady     two short beeps  "done, take your receipt"
``REFUSED``         red blinking     one long beep    "refused: take your notes or receipt"
``OUT_OF_SERVICE``  red steady       silent           "kiosk out of service"
==================  ===============  ===============  ======================================

Wiring (BCM numbers, :class:`PanelPins` defaults): confirm button GPIO5 and cancel button GPIO6,
each to ground (internal pull-up, pressed = low); door switch GPIO26 to ground, closed by the
door (pull-up: door closed = low, door open or wire cut = high); the technician's service key
switch GPIO13 to ground (pull-up: turning the key closes it, low = :attr:`PanelEvent.SERVICE_KEY`;
the key approves an amount waiting for approval); LEDs green GPIO17, amber
GPIO27, red GPIO22 and an active buzzer GPIO18, each active high (through a transistor for the
buzzer).

The pin factory is always injected (``LGPIOFactory()`` on a Pi 5, ``MockFactory()`` in tests and
simulation); :attr:`gpiozero.Device.pin_factory` is never touched. Button and door callbacks
arrive on gpiozero's threads and are handed to the event loop with ``call_soon_threadsafe``;
:meth:`Panel.next_event` returns them in order. :meth:`Panel.open` binds the running loop;
changes before it are not reported.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PanelPins:
    """BCM GPIO numbers of the panel."""

    confirm: int = 5
    cancel: int = 6
    door: int = 26
    service_key: int = 13
    led_green: int = 17
    led_amber: int = 27
    led_red: int = 22
    buzzer: int = 18


@dataclass(frozen=True, slots=True)
class PanelTiming:
    """Blink and beep durations, in seconds."""

    blink_on: float = 0.5
    blink_off: float = 0.5
    beep_short: float = 0.12
    beep_gap: float = 0.12
    beep_long: float = 0.8


DEFAULT_PINS: Final = PanelPins()
DEFAULT_TIMING: Final = PanelTiming()


class PanelEvent(enum.StrEnum):
    CONFIRM = "confirm"
    CANCEL = "cancel"
    DOOR_OPEN = "door_open"
    DOOR_CLOSED = "door_closed"
    SERVICE_KEY = "service_key"


class PanelState(enum.StrEnum):
    READY = "ready"
    READING = "reading"
    INSERT_NOTES = "insert_notes"
    CHOOSE = "choose"
    WAIT = "wait"
    APPROVAL = "approval"
    DONE = "done"
    REFUSED = "refused"
    OUT_OF_SERVICE = "out_of_service"


class Light(enum.StrEnum):
    OFF = "off"
    ON = "on"
    BLINK = "blink"


class Sound(enum.StrEnum):
    SILENT = "silent"
    TWO_SHORT = "two_short"
    ONE_LONG = "one_long"


@dataclass(frozen=True, slots=True)
class Pattern:
    green: Light = Light.OFF
    amber: Light = Light.OFF
    red: Light = Light.OFF
    sound: Sound = Sound.SILENT


#: The table of the module docstring.
PATTERNS: Final[dict[PanelState, Pattern]] = {
    PanelState.READY: Pattern(green=Light.ON),
    PanelState.READING: Pattern(green=Light.BLINK),
    PanelState.INSERT_NOTES: Pattern(amber=Light.ON),
    PanelState.CHOOSE: Pattern(green=Light.BLINK, amber=Light.ON),
    PanelState.WAIT: Pattern(amber=Light.BLINK),
    PanelState.APPROVAL: Pattern(amber=Light.BLINK, red=Light.ON, sound=Sound.ONE_LONG),
    PanelState.DONE: Pattern(green=Light.ON, sound=Sound.TWO_SHORT),
    PanelState.REFUSED: Pattern(red=Light.BLINK, sound=Sound.ONE_LONG),
    PanelState.OUT_OF_SERVICE: Pattern(red=Light.ON),
}


class Panel:
    """The panel's devices on an injected gpiozero pin factory.

    :param pins: BCM numbers.
    :param pin_factory: a gpiozero ``Factory``; passed to every device.
    :param bounce_time: button and door debounce, seconds.
    :param timing: blink and beep durations.
    """

    def __init__(
        self,
        pins: PanelPins = DEFAULT_PINS,
        *,
        pin_factory: Any,
        bounce_time: float = 0.05,
        timing: PanelTiming = DEFAULT_TIMING,
    ) -> None:
        self.pins = pins
        self.timing = timing
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[PanelEvent] = asyncio.Queue()
        self._state: PanelState | None = None
        self._pattern = Pattern()
        self._devices: list[Any] = []
        from gpiozero import LED, Button, Buzzer, DigitalInputDevice  # only when built

        try:
            self._confirm = self._add(
                Button(pins.confirm, pull_up=True, bounce_time=bounce_time, pin_factory=pin_factory)
            )
            self._cancel = self._add(
                Button(pins.cancel, pull_up=True, bounce_time=bounce_time, pin_factory=pin_factory)
            )
            self._service_key = self._add(
                Button(
                    pins.service_key, pull_up=True, bounce_time=bounce_time, pin_factory=pin_factory
                )
            )
            self._door = self._add(
                DigitalInputDevice(
                    pins.door, pull_up=True, bounce_time=bounce_time, pin_factory=pin_factory
                )
            )
            self._leds = {
                "green": self._add(LED(pins.led_green, pin_factory=pin_factory)),
                "amber": self._add(LED(pins.led_amber, pin_factory=pin_factory)),
                "red": self._add(LED(pins.led_red, pin_factory=pin_factory)),
            }
            self._buzzer = self._add(Buzzer(pins.buzzer, pin_factory=pin_factory))
        except Exception:
            self.close()
            raise

    def _add(self, device: Any) -> Any:
        self._devices.append(device)
        return device

    async def open(self) -> None:
        """Start delivering button and door events to the running loop."""
        self._loop = asyncio.get_running_loop()
        self._confirm.when_pressed = functools.partial(self._deliver, PanelEvent.CONFIRM)
        self._cancel.when_pressed = functools.partial(self._deliver, PanelEvent.CANCEL)
        self._service_key.when_pressed = functools.partial(self._deliver, PanelEvent.SERVICE_KEY)
        self._door.when_activated = functools.partial(self._deliver, PanelEvent.DOOR_CLOSED)
        self._door.when_deactivated = functools.partial(self._deliver, PanelEvent.DOOR_OPEN)

    def close(self) -> None:
        """Release every device (idempotent)."""
        devices, self._devices = self._devices, []
        for device in reversed(devices):
            try:
                device.close()
            except Exception:  # closing must go on for the other devices
                log.exception("panel: closing %r failed", device)
        self._loop = None

    async def next_event(self) -> PanelEvent:
        """Wait for the next button press or door change."""
        return await self._events.get()

    @property
    def door_open(self) -> bool:
        """True when the door is open (switch released, or its wire cut)."""
        return not bool(self._door.is_active)

    @property
    def state(self) -> PanelState | None:
        """The state last shown (``None`` before the first :meth:`show`)."""
        return self._state

    def show(self, state: PanelState) -> None:
        """Set the lights and sound for ``state`` (see the table of the module docstring)."""
        pattern = PATTERNS[PanelState(state)]
        self._state = PanelState(state)
        self._pattern = pattern
        t = self.timing
        for colour, light in (
            ("green", pattern.green),
            ("amber", pattern.amber),
            ("red", pattern.red),
        ):
            led = self._leds[colour]
            if light is Light.ON:
                led.on()
            elif light is Light.BLINK:
                led.blink(on_time=t.blink_on, off_time=t.blink_off, background=True)
            else:
                led.off()
        if pattern.sound is Sound.TWO_SHORT:
            self._buzzer.beep(on_time=t.beep_short, off_time=t.beep_gap, n=2, background=True)
        elif pattern.sound is Sound.ONE_LONG:
            self._buzzer.beep(on_time=t.beep_long, off_time=0, n=1, background=True)
        else:
            self._buzzer.off()

    def tick(self) -> None:
        """One short beep, the pattern unchanged (a press counted while choosing)."""
        t = self.timing
        self._buzzer.beep(on_time=t.beep_short, off_time=0, n=1, background=True)

    def lights(self) -> dict[str, str]:
        """The pattern shown: ``{"green": "on"|"off"|"blink", "amber": ..., "red": ...,
        "sound": "silent"|"two_short"|"one_long"}``."""
        p = self._pattern
        return {
            "green": p.green.value,
            "amber": p.amber.value,
            "red": p.red.value,
            "sound": p.sound.value,
        }

    def outputs(self) -> dict[str, bool]:
        """The live level of each output (a blinking LED reads on or off)."""
        levels = {colour: bool(led.is_lit) for colour, led in self._leds.items()}
        levels["buzzer"] = bool(self._buzzer.is_active)
        return levels

    def _deliver(self, event: PanelEvent) -> None:
        """Called on a gpiozero thread (or the thread driving a mock pin)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop closed between the check and the call
            return
