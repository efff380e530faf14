"""ITL SSP / eSSP code tables.

Sources: ITL "SSP Protocol Manual" GA138 (section named on each table; public copies listed in
protocols.md §1.2) and the command/event tables of ``kybarg/encrypted-smiley-secure-protocol``
(``src/command.js``, ``src/status_desc.js``, ``src/reject_note.js``, ``src/unit_type.js``).
"""

from __future__ import annotations

import enum
from typing import Final


class Command(enum.IntEnum):
    """Command codes (GA138 "Generic Commands", "Banknote Validator", "SMART Payout",
    "Encryption Keys" command tables)."""

    RESET = 0x01
    SET_INHIBITS = 0x02
    SETUP_REQUEST = 0x05
    HOST_PROTOCOL_VERSION = 0x06
    POLL = 0x07
    REJECT = 0x08
    DISABLE = 0x09
    ENABLE = 0x0A
    SERIAL_NUMBER = 0x0C
    UNIT_DATA = 0x0D
    SYNC = 0x11
    LAST_REJECT_CODE = 0x17
    HOLD = 0x18
    GET_ALL_LEVELS = 0x22
    PAYOUT_AMOUNT = 0x33
    GET_DENOMINATION_LEVEL = 0x35
    HALT_PAYOUT = 0x38
    SET_DENOMINATION_ROUTE = 0x3B
    GET_DENOMINATION_ROUTE = 0x3C
    EMPTY_ALL = 0x3F
    SET_GENERATOR = 0x4A
    SET_MODULUS = 0x4B
    REQUEST_KEY_EXCHANGE = 0x4C
    SET_BAUD_RATE = 0x4D
    SMART_EMPTY = 0x52
    CASHBOX_PAYOUT_OPERATION_DATA = 0x53
    POLL_WITH_ACK = 0x56
    EVENT_ACK = 0x57
    DISABLE_PAYOUT_DEVICE = 0x5B
    ENABLE_PAYOUT_DEVICE = 0x5C
    SET_FIXED_KEY = 0x60
    RESET_FIXED_KEY = 0x61


class Response(enum.IntEnum):
    """Generic responses: the first DATA byte of every reply (GA138 "Generic Responses")."""

    OK = 0xF0
    UNKNOWN_COMMAND = 0xF2
    WRONG_PARAMETERS = 0xF3
    PARAMETER_OUT_OF_RANGE = 0xF4
    CANNOT_PROCESS = 0xF5
    SOFTWARE_ERROR = 0xF6
    FAIL = 0xF8
    KEY_NOT_SET = 0xFA


class Event(enum.IntEnum):
    """Poll events (GA138 NV200 / SMART Payout event tables; kybarg ``status_desc.js``)."""

    SLAVE_RESET = 0xF1
    READ = 0xEF  # channel: 0 reading, n > 0 note n in escrow
    CREDIT = 0xEE  # channel: the safe credit point
    REJECTING = 0xED
    REJECTED = 0xEC
    STACKING = 0xCC
    STACKED = 0xEB
    SAFE_JAM = 0xEA
    UNSAFE_JAM = 0xE9
    DISABLED = 0xE8
    STACKER_FULL = 0xE7
    FRAUD_ATTEMPT = 0xE6  # channel (validator) or value list (SMART devices, protocol >= 6)
    CASHBOX_REPLACED = 0xE4
    CASHBOX_REMOVED = 0xE3
    CLEARED_TO_CASHBOX = 0xE2  # channel, at power-up
    CLEARED_FROM_FRONT = 0xE1  # channel, at power-up
    NOTE_PATH_OPEN = 0xE0
    INCOMPLETE_FLOAT = 0xDD  # dispensed + requested per country
    INCOMPLETE_PAYOUT = 0xDC  # dispensed + requested per country
    NOTE_STORED_IN_PAYOUT = 0xDB
    DISPENSING = 0xDA  # value list
    TIMEOUT = 0xD9  # value list
    FLOATED = 0xD8  # value list
    FLOATING = 0xD7  # value list
    HALTED = 0xD6  # value list
    JAMMED = 0xD5  # value list
    DISPENSED = 0xD2  # value list
    CASHBOX_PAID = 0xDE  # value list
    DEVICE_FULL = 0xCF
    NOTE_HELD_IN_BEZEL = 0xCE  # value (protocol >= 8)
    NOTE_DISPENSED_AT_POWER_UP = 0xCD  # value (protocol >= 6)
    NOTE_PAID_INTO_STORE_AT_POWER_UP = 0xCB  # value (protocol >= 8)
    NOTE_PAID_INTO_STACKER_AT_POWER_UP = 0xCA  # value (protocol >= 8)
    NOTE_TRANSFERRED_TO_STACKER = 0xC9  # value (protocol >= 6)
    PAYOUT_OUT_OF_SERVICE = 0xC6
    EMPTIED = 0xC3
    EMPTYING = 0xC2
    INITIALISING = 0xB6
    CHANNEL_DISABLE = 0xB5
    SMART_EMPTIED = 0xB4  # value list
    SMART_EMPTYING = 0xB3  # value list
    ERROR_DURING_PAYOUT = 0xB1  # (value list, protocol >= 7) + error byte
    JAM_RECOVERY = 0xB0


#: Events that POLL WITH ACK repeats until EVENT ACK (GA138 event tables, "Poll with Ack"
#: column; checked against issue 8's reading of GA138): the credits, the notes moved at
#: power-up, the ends of payouts, floats and empties, and a fraud attempt. Not JAMMED (D5)
#: nor HALTED (D6): they are reported once. GA138 is silent on TIMEOUT (D9) and NOTE CLEARED
#: FROM FRONT (E1); they are not in the column and are treated as reported once.
ACK_REQUIRED: Final = frozenset(
    {
        Event.CREDIT,
        Event.CLEARED_TO_CASHBOX,
        Event.FRAUD_ATTEMPT,
        Event.ERROR_DURING_PAYOUT,
        Event.NOTE_TRANSFERRED_TO_STACKER,
        Event.NOTE_PAID_INTO_STACKER_AT_POWER_UP,
        Event.NOTE_PAID_INTO_STORE_AT_POWER_UP,
        Event.NOTE_DISPENSED_AT_POWER_UP,
        Event.DISPENSED,
        Event.FLOATED,
        Event.INCOMPLETE_PAYOUT,
        Event.INCOMPLETE_FLOAT,
        Event.CASHBOX_PAID,
        Event.SMART_EMPTIED,
    }
)

#: Of those, the events that move the customer's money: acknowledged only once the kiosk's
#: journal has committed them (a credit in :meth:`stack`'s ``on_credit``, a power-up report
#: in ``ack_power_up``, a stray credit in ``ack_credit``). The others are acknowledged at once.
MONEY_EVENTS: Final = frozenset(
    {
        Event.CREDIT,
        Event.CLEARED_TO_CASHBOX,
        Event.NOTE_PAID_INTO_STACKER_AT_POWER_UP,
        Event.NOTE_PAID_INTO_STORE_AT_POWER_UP,
        Event.NOTE_DISPENSED_AT_POWER_UP,
        Event.INCOMPLETE_PAYOUT,
        Event.INCOMPLETE_FLOAT,
    }
)


class RejectCode(enum.IntEnum):
    """LAST REJECT CODE reply (GA138 "Reject Codes"; kybarg ``src/reject_note.js``)."""

    NOTE_ACCEPTED = 0x00
    LENGTH_FAIL = 0x01
    AVERAGE_FAIL = 0x02
    COASTLINE_FAIL = 0x03
    GRAPH_FAIL = 0x04
    BURIED_FAIL = 0x05
    CHANNEL_INHIBIT = 0x06
    SECOND_NOTE_DETECTED = 0x07
    REJECT_BY_HOST = 0x08
    CROSS_CHANNEL_DETECTED = 0x09
    REAR_SENSOR_ERROR = 0x0A
    NOTE_TOO_LONG = 0x0B
    DISABLED_BY_HOST = 0x0C
    SLOW_MECH = 0x0D
    STRIM_ATTEMPT = 0x0E
    FRAUD_CHANNEL = 0x0F
    NO_NOTES_DETECTED = 0x10
    PEAK_DETECT_FAIL = 0x11
    TWISTED_NOTE_REJECT = 0x12
    ESCROW_TIMEOUT = 0x13
    BAR_CODE_SCAN_FAIL = 0x14
    NO_CAM_ACTIVATE = 0x15
    SLOT_FAIL_1 = 0x16
    SLOT_FAIL_2 = 0x17
    LENS_OVERSAMPLE = 0x18
    WIDTH_DETECTION_FAIL = 0x19
    SHORT_NOTE_DETECT = 0x1A
    PAYOUT_NOTE = 0x1B
    DOUBLE_NOTE_DETECTED = 0x1C
    UNABLE_TO_STACK = 0x1D


class UnitType(enum.IntEnum):
    """SETUP REQUEST unit type (GA138 "Setup Request"; kybarg ``src/unit_type.js``)."""

    VALIDATOR = 0x00
    SMART_HOPPER = 0x03
    SMART_PAYOUT = 0x06
    NOTE_FLOAT = 0x07


class PayoutError(enum.IntEnum):
    """The error byte after F5 for PAYOUT AMOUNT (GA138 "Payout Amount"). kybarg's
    ``utils.js`` numbers the first two 0 and 1; GA138 says 1 and 2, which we follow, and a
    0 is read as "not enough value" too."""

    NOT_ENOUGH_VALUE = 1
    CANNOT_PAY_EXACT = 2
    BUSY = 3
    DISABLED = 4


class Route(enum.IntEnum):
    """SET DENOMINATION ROUTE (GA138 "Set Denomination Route")."""

    PAYOUT = 0  # stored, recycled for payouts
    CASHBOX = 1


PAYOUT_NOW: Final = 0x58  # PAYOUT AMOUNT option: pay (GA138, protocol >= 6)
PAYOUT_TEST: Final = 0x19  # PAYOUT AMOUNT option: test only, no note moves
