"""JCM ID-003 code tables: host commands, acceptor statuses, reject reasons, failure codes.

Sections named ``protocols.md §1.1`` are the shared reference (``shared/reference/protocols.md``),
built from lamassu-machine ``lib/id003/id003rs232.js``, hackwin ``jcmbillacceptorid003.h`` and
Portalum ``DeviceCommand.cs``. JCM's own specification (ID03-001E) is confidential; anything
taken from elsewhere names its source next to it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final


class Command(enum.IntEnum):
    """Host → acceptor command codes (protocols.md §1.1 "Host → acceptor commands")."""

    STATUS_REQUEST = 0x11
    RESET = 0x40
    STACK_1 = 0x41
    STACK_2 = 0x42
    RETURN = 0x43
    HOLD = 0x44
    WAIT = 0x45
    ACK = 0x50
    # setting commands, answered by an echo of command + data
    SET_DENOMINATIONS = 0xC0  # enable/disable denominations: d1 d2, bit = 1 inhibits
    SET_SECURITY = 0xC1  # d1 d2
    SET_COMMUNICATION_MODE = 0xC2  # n: 0 polled, 1/2 interrupt modes
    SET_INHIBIT = 0xC3  # 00 accept, 01 inhibit the acceptor
    SET_DIRECTION = 0xC4  # n
    SET_OPTIONAL_FUNCTION = 0xC5  # d1 d2
    SET_BARCODE_FUNCTION = 0xC6  # …
    SET_BAR_INHIBIT = 0xC7  # n
    # setting status requests: the answer is the same code + the data of the matching Cx
    GET_DENOMINATIONS = 0x80
    GET_SECURITY = 0x81
    GET_COMMUNICATION_MODE = 0x82
    GET_INHIBIT = 0x83
    GET_DIRECTION = 0x84
    GET_OPTIONAL_FUNCTION = 0x85
    # 0x86/0x87 (bar-code settings): a public Python ID-003 driver's GET_BAR_FUNC /
    # GET_BAR_INHIBIT; protocols.md lists 80..85 only.
    GET_BARCODE_FUNCTION = 0x86
    GET_BAR_INHIBIT = 0x87
    VERSION = 0x88  # ASCII answer
    BOOT_VERSION = 0x89  # ASCII answer
    CURRENCY_ASSIGN = 0x8A  # 4-byte records: escrow code, country code, mantissa, exponent


#: Setting commands (Cx) and the get command (8x) that reads each one back.
SETTINGS: Final[Mapping[Command, Command]] = {
    Command.SET_DENOMINATIONS: Command.GET_DENOMINATIONS,
    Command.SET_SECURITY: Command.GET_SECURITY,
    Command.SET_COMMUNICATION_MODE: Command.GET_COMMUNICATION_MODE,
    Command.SET_INHIBIT: Command.GET_INHIBIT,
    Command.SET_DIRECTION: Command.GET_DIRECTION,
    Command.SET_OPTIONAL_FUNCTION: Command.GET_OPTIONAL_FUNCTION,
    Command.SET_BARCODE_FUNCTION: Command.GET_BARCODE_FUNCTION,
    Command.SET_BAR_INHIBIT: Command.GET_BAR_INHIBIT,
}

#: Commands the acceptor answers with ACK (0x50) when it takes them.
OPERATIONS: Final = frozenset(
    {
        Command.RESET,
        Command.STACK_1,
        Command.STACK_2,
        Command.RETURN,
        Command.HOLD,
        Command.WAIT,
    }
)


class Status(enum.IntEnum):
    """Acceptor → host status and answer codes (protocols.md §1.1 "status codes")."""

    IDLING = 0x11  # enabled, waiting for a note
    ACCEPTING = 0x12
    ESCROW = 0x13  # + 1 byte escrow code
    STACKING = 0x14
    VEND_VALID = 0x15  # the safe credit point; repeated until the host sends ACK
    STACKED = 0x16
    REJECTING = 0x17  # + 1 byte reason (RejectReason)
    RETURNING = 0x18
    HOLDING = 0x19
    DISABLE = 0x1A  # inhibited
    INITIALIZE = 0x1B
    POWER_UP = 0x40
    POWER_UP_BILL_IN_ACCEPTOR = 0x41
    POWER_UP_BILL_IN_STACKER = 0x42
    STACKER_FULL = 0x43
    STACKER_OPEN = 0x44
    JAM_IN_ACCEPTOR = 0x45
    JAM_IN_STACKER = 0x46
    PAUSE = 0x47  # a second note is being pushed in
    CHEATED = 0x48
    FAILURE = 0x49  # + 1 byte failure code (FailureCode)
    COMMUNICATION_ERROR = 0x4A  # the acceptor got a frame with a bad CRC
    INVALID_COMMAND = 0x4B  # the acceptor cannot take that command now
    ACK = 0x50


#: Statuses the acceptor passes through by itself (the host waits for them to end).
TRANSIENT: Final = frozenset(
    {
        Status.ACCEPTING,
        Status.STACKING,
        Status.STACKED,
        Status.REJECTING,
        Status.RETURNING,
        Status.PAUSE,
        Status.INITIALIZE,
    }
)

POWER_UPS: Final = frozenset(
    {Status.POWER_UP, Status.POWER_UP_BILL_IN_ACCEPTOR, Status.POWER_UP_BILL_IN_STACKER}
)

#: Error statuses the acceptor reports until a person clears them.
FAULTS: Final = frozenset(
    {
        Status.STACKER_FULL,
        Status.STACKER_OPEN,
        Status.JAM_IN_ACCEPTOR,
        Status.JAM_IN_STACKER,
        Status.CHEATED,
        Status.FAILURE,
    }
)

#: Statuses that answer a status request (everything but the command answers 4A/4B/50).
STATUS_ANSWERS: Final = frozenset(Status) - {
    Status.COMMUNICATION_ERROR,
    Status.INVALID_COMMAND,
    Status.ACK,
}


class RejectReason(enum.IntEnum):
    """Data byte of REJECTING 0x17 (protocols.md §1.1, lamassu ``REJECTION_REASONS``,
    hackwin constants). The lower-case name is the ``NoteRejected.reason``."""

    INSERTION = 0x71  # crooked insertion
    MAGNETIC = 0x72  # magnetic pattern
    REMAINING_BILL = 0x73  # a note remained in the head / a sensor saw something while idle
    CALIBRATION = 0x74  # calibration / data amplitude
    CONVEYING = 0x75  # feed error
    DISCRIMINATION = 0x76  # denomination assessing error
    PHOTO_PATTERN = 0x77
    PHOTO_LEVEL = 0x78  # doubles, dirty notes
    INHIBIT = 0x79  # disabled by DIP switch or by command (C0 / C4)
    UNKNOWN = 0x7A
    OPERATION = 0x7B
    STACKER = 0x7C  # a note in the transport at the wrong time
    LENGTH = 0x7D
    PHOTO_PATTERN_2 = 0x7E  # colour pattern
    TRUE_BILL = 0x7F


def reject_reason_name(code: int) -> str:
    """``inhibit`` for 0x79; ``reject_0x99`` for a code outside the table."""
    try:
        return RejectReason(code).name.lower()
    except ValueError:
        return f"reject_0x{code:02x}"


class FailureCode(enum.IntEnum):
    """Data byte of FAILURE 0x49. Not in protocols.md: from max7019/Id003-.Net-driver
    ``DeviceError.cs`` and a public Python ID-003 driver's ``FAILURE_CODES`` (both agree)."""

    STACK_MOTOR = 0xA2
    TRANSPORT_MOTOR_SPEED = 0xA5
    TRANSPORT_MOTOR = 0xA6
    CASHBOX_NOT_READY = 0xAB
    HEAD_REMOVED = 0xAF
    BOOT_ROM = 0xB0
    EXTERNAL_ROM = 0xB1
    ROM = 0xB2
    EXTERNAL_ROM_WRITE = 0xB3


def failure_name(code: int) -> str:
    try:
        return FailureCode(code).name.lower()
    except ValueError:
        return f"failure_0x{code:02x}"


#: Escrow code → value in minor units (cents). EUR 0x62..0x68 = 5..500 (protocols.md §1.1:
#: lamassu ``test``, Portalum ``GetAmount``; 0x68 = 500 by extension of the series).
EUR_ESCROW: Final[Mapping[int, int]] = {
    0x62: 500,
    0x63: 1000,
    0x64: 2000,
    0x65: 5000,
    0x66: 10000,
    0x67: 20000,
    0x68: 50000,
}

#: USD 0x61 $1, 0x63 $5, 0x64 $10, 0x65 $20, 0x66 $50, 0x67 $100 (protocols.md §1.1, hackwin).
USD_ESCROW: Final[Mapping[int, int]] = {
    0x61: 100,
    0x63: 500,
    0x64: 1000,
    0x65: 2000,
    0x66: 5000,
    0x67: 10000,
}

#: Known escrow tables by ISO currency code.
ESCROW_TABLES: Final[Mapping[str, Mapping[int, int]]] = {"EUR": EUR_ESCROW, "USD": USD_ESCROW}

#: Escrow codes that SET_DENOMINATIONS can inhibit: bit i of d1 is escrow code 0x61 + i.
#: (A public Python ID-003 driver: "two bytes, only first byte used", denom1..8 = 0x61..0x68,
#: 1 = disabled; max7019/Id003-.Net-driver: an 8-entry table indexed by code - 0x61.)
FIRST_DENOMINATION: Final = 0x61
LAST_DENOMINATION: Final = 0x68
