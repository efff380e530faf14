"""The eSSP simulator, frame in / frame out: published exchanges byte for byte, and behaviour."""

from __future__ import annotations

import pytest

from drivers.essp.codes import Command, Event, RejectCode, Response, Route
from drivers.essp.crypto import DEFAULT_FIXED_KEY, Cipher, aes_key
from drivers.essp.frames import (
    Amount,
    Frame,
    PayoutRequest,
    PollEvent,
    Reply,
    Request,
    parse_events,
    parse_levels,
    u64le,
)
from drivers.essp.sim import EsspSimulator, fewest_notes

C = Command


class Host:
    """A minimal host talking to the simulator without a wire."""

    def __init__(self, sim: EsspSimulator, *, synced: bool = True) -> None:
        self.sim = sim
        self.seq = True
        self.cipher: Cipher | None = None
        self.count = 0
        if synced:
            assert self.send(C.SYNC).ok

    def send(self, code: int, params: bytes = b"") -> Reply:
        data = Request(code, params).serialize()
        if self.cipher is not None:
            data = self.cipher.wrap(data, self.count)
        reply = self.sim.handle(Frame(self.sim.address, data, self.seq))
        assert reply is not None
        self.seq = False if code == C.SYNC else not self.seq
        out = reply.data
        if self.cipher is not None and out[0] == 0x7E:
            count, out = self.cipher.unwrap(out)
            assert count == self.count + 1
            self.count = count
        return Reply.deserialize(out)[0]

    def wire(self, request: str) -> str:
        """Send published bytes (flag set) and return the reply as published."""
        if not self.seq:
            assert self.send(C.SERIAL_NUMBER).ok  # flip the flag so the vector's 0x80 is new
        frame, _ = Frame.deserialize(bytes.fromhex(request))
        reply = self.sim.handle(frame)
        assert reply is not None
        self.seq = not self.seq
        return reply.serialize().hex(" ").upper()

    def events(self, ack: bool = True) -> tuple[PollEvent, ...]:
        reply = self.send(C.POLL_WITH_ACK if ack else C.POLL)
        assert reply.ok
        return parse_events(reply.data, protocol=self.sim.state().protocol, smart=self.sim.payout)

    def codes(self, ack: bool = True) -> list[Event]:
        return [e.code for e in self.events(ack)]


def plain(**kw: object) -> EsspSimulator:
    return EsspSimulator(require_encryption=False, **kw)  # type: ignore[arg-type]


def ready(sim: EsspSimulator) -> Host:
    """Synced, slave reset reported, every channel enabled, unit enabled."""
    host = Host(sim)
    assert host.send(C.HOST_PROTOCOL_VERSION, b"\x08").ok
    host.events()
    assert host.send(C.SET_INHIBITS, b"\xff\xff").ok
    assert host.send(C.ENABLE).ok
    return host


def escrow(host: Host, value: int) -> None:
    assert host.sim.insert(value)
    assert host.codes() == [Event.READ]  # READ 0
    (read,) = host.events()
    assert read.code == Event.READ and read.channel


# -- published exchanges (protocols.md §6.2), byte for byte ---------------------------------------


def test_sync_ok() -> None:
    assert Host(plain(), synced=False).wire("7F 80 01 11 65 82") == "7F 80 01 F0 23 80"


def test_reset_ok_then_slave_reset() -> None:
    sim = plain()
    host = ready(sim)
    assert host.wire("7F 80 01 01 06 02") == "7F 80 01 F0 23 80"
    assert sim.state().pending_events == (PollEvent(Event.SLAVE_RESET),)


def test_host_protocol_8_ok_and_9_fail() -> None:
    sim = plain(max_protocol=8)
    host = Host(sim, synced=False)
    assert host.wire("7F 80 02 06 08 03 94") == "7F 80 01 F0 23 80"
    assert Host(sim).wire("7F 80 02 06 09 06 14") == "7F 80 01 F8 10 00"


def test_poll_after_power_up_slave_reset_and_disabled() -> None:
    host = Host(plain(), synced=False)
    assert host.wire("7F 80 01 07 12 02") == "7F 80 03 F0 F1 E8 BF 8C"
    assert Host(host.sim).wire("7F 80 01 07 12 02") == "7F 80 02 F0 E8 4F A2"  # disabled


def test_read_reading_then_escrow_channel_3() -> None:
    host = ready(plain())
    assert host.sim.insert(2000)
    assert host.wire("7F 80 01 07 12 02") == "7F 80 03 F0 EF 00 CF CA"
    assert host.wire("7F 80 01 07 12 02") == "7F 80 03 F0 EF 03 C5 CA"
    assert host.sim.state().escrow is not None


POLL, POLL_ACK, EVENT_ACK = "7F 80 01 07 12 02", "7F 80 01 56 F7 83", "7F 80 01 57 F2 03"
OK = "7F 80 01 F0 23 80"
CANNOT = "7F 80 01 F5 3D 80"


def test_stacking_credit_event_ack_stacked() -> None:
    host = ready(plain())
    escrow(host, 500)  # channel 1
    assert host.wire(POLL) == "7F 80 02 F0 CC 97 A2"  # the poll after READ n accepts: stacking
    assert host.wire(POLL_ACK) == "7F 80 04 F0 CC EE 01 62 AA"  # stacking, credit 1
    assert host.codes() == [Event.CREDIT]  # repeated until acknowledged
    assert host.wire(EVENT_ACK) == OK
    assert host.wire(POLL) == "7F 80 02 F0 EB 45 A2"  # stacked
    assert host.sim.state().cashbox == {500: 1}
    assert host.wire(EVENT_ACK) == CANNOT  # nothing left to acknowledge


def test_credit_channel_4_repeats() -> None:
    host = ready(plain())
    escrow(host, 5000)  # channel 4
    assert host.codes() == [Event.STACKING]
    assert host.codes() == [Event.STACKING, Event.CREDIT]
    assert host.wire(POLL_ACK) == "7F 80 03 F0 EE 04 D7 CC"


def test_plain_poll_reports_credit_once() -> None:
    host = ready(plain())
    escrow(host, 500)
    assert host.codes(ack=False) == [Event.STACKING]
    assert host.codes(ack=False) == [Event.STACKING, Event.CREDIT]
    assert host.codes(ack=False) == [Event.STACKED]


def test_fake_note_rejecting_rejected() -> None:
    host = ready(plain())
    assert host.sim.insert_fake()
    assert host.codes() == [Event.READ]
    assert host.wire(POLL) == "7F 80 02 F0 ED 51 A2"
    assert host.wire(POLL) == "7F 80 02 F0 EC 54 22"
    assert host.send(C.LAST_REJECT_CODE) == Reply(Response.OK, bytes([RejectCode.AVERAGE_FAIL]))


def test_reject_by_host_and_last_reject_code() -> None:
    host = ready(plain())
    escrow(host, 1000)
    assert host.wire("7F 80 01 08 30 02") == OK  # REJECT
    assert host.codes() == [Event.REJECTING]
    assert host.codes() == [Event.REJECTED]
    assert host.wire("7F 80 01 17 71 82") == "7F 80 02 F0 08 0C 20"  # 0x08: reject by host
    assert host.sim.state().cashbox == {}


def test_reject_and_hold_without_a_note_cannot_be_processed() -> None:
    host = ready(plain())
    assert host.wire("7F 80 01 08 30 02") == CANNOT
    assert host.wire("7F 80 01 18 53 82") == CANNOT


@pytest.mark.parametrize(
    ("fault", "reply"),
    [
        ("jam", "7F 80 02 F0 E9 4A 22"),
        ("cashbox_full", "7F 80 02 F0 E7 6D A2"),
        ("note_path_open", "7F 80 02 F0 E0 7C 22"),
    ],
)
def test_level_faults_every_poll(fault: str, reply: str) -> None:
    host = ready(plain())
    getattr(host.sim, fault)()
    assert host.wire(POLL) == reply
    assert host.wire(POLL) == reply
    assert not host.sim.insert(500)  # a faulted unit takes no note
    host.sim.clear_faults()
    assert host.codes() == []


def test_fraud_on_a_validator_reports_the_channel() -> None:
    host = ready(plain(payout=False))
    host.sim.fraud(2)
    assert host.wire(POLL) == "7F 80 03 F0 E6 02 C0 7C"
    assert host.codes() == []


def test_fraud_on_a_smart_payout_reports_the_value() -> None:
    host = ready(plain())
    host.sim.fraud(2)
    assert host.events() == (PollEvent(Event.FRAUD_ATTEMPT, amounts=(Amount(1000, "EUR"),)),)


def test_cashbox_removed_then_replaced() -> None:
    host = ready(plain())
    host.sim.cashbox_removed()
    assert host.codes() == [Event.CASHBOX_REMOVED]
    assert host.codes() == [Event.CASHBOX_REMOVED]
    host.sim.cashbox_replaced()
    assert host.codes() == [Event.CASHBOX_REPLACED]
    assert host.codes() == []


def test_enable_disable_inhibits_serial() -> None:
    host = Host(plain(), synced=False)
    assert host.wire("7F 80 01 0A 3F 82") == OK
    assert host.wire("7F 80 01 09 35 82") == OK
    assert host.wire("7F 80 03 02 FF FF 25 A4") == OK
    assert host.wire("7F 80 01 0C 2B 82") == "7F 80 05 F0 00 1C 96 2C D4 97"
    assert host.wire("7F 80 03 4D 01 00 E4 27") == OK  # SET BAUD RATE 38400


def test_key_exchange_with_the_published_numbers() -> None:
    secret = 0x1234
    sim = EsspSimulator(random=lambda n: secret.to_bytes(n, "little"))
    host = Host(sim, synced=False)
    assert host.wire("7F 80 09 4A C5 05 8F 3A 00 00 00 00 B2 73") == OK  # generator 982451653
    assert host.wire("7F 80 09 4B 8D A6 13 00 00 00 00 00 6C F6") == OK  # modulus 1287821
    reply = host.wire("7F 80 09 4C 79 C8 9C E2 DE 06 00 00 9D 52")  # host inter 7554354432121
    frame, _ = Frame.deserialize(bytes.fromhex(reply))
    assert frame.data[0] == Response.OK and len(frame.data) == 9
    s = secret % (1287821 - 3) + 2
    assert int.from_bytes(frame.data[1:], "little") == pow(982451653, s, 1287821)
    key = aes_key(DEFAULT_FIXED_KEY, pow(7554354432121, s, 1287821))
    assert sim.state().encrypted
    host.cipher = Cipher(key)
    assert host.send(C.SERIAL_NUMBER) == Reply(Response.OK, (0x001C962C).to_bytes(4, "big"))


def test_key_exchange_refuses_a_non_prime() -> None:
    host = Host(EsspSimulator(), synced=False)
    assert (
        host.send(C.SET_GENERATOR, u64le(7554354432121)).status == Response.PARAMETER_OUT_OF_RANGE
    )


def encrypted_host(sim: EsspSimulator) -> Host:
    host = Host(sim)
    assert host.send(C.SET_GENERATOR, u64le(982451653)).ok
    assert host.send(C.SET_MODULUS, u64le(1287821)).ok
    reply = host.send(C.REQUEST_KEY_EXCHANGE, u64le(pow(982451653, 7, 1287821)))
    slave = int.from_bytes(reply.data, "little")
    host.cipher = Cipher(aes_key(sim.fixed_key, pow(slave, 7, 1287821)))
    return host


def test_key_not_set_until_negotiated_then_encrypted() -> None:
    sim = EsspSimulator()
    host = Host(sim)
    assert host.send(C.ENABLE).status == Response.KEY_NOT_SET
    assert host.send(C.POLL).status == Response.KEY_NOT_SET
    assert host.send(C.SETUP_REQUEST).ok  # allowed before keys
    # Host intermediate 982451653^7 mod 1287821, so both ends share the key.
    host = Host(sim)
    assert host.send(C.SET_GENERATOR, u64le(982451653)).ok
    assert host.send(C.SET_MODULUS, u64le(1287821)).ok
    reply = host.send(C.REQUEST_KEY_EXCHANGE, u64le(pow(982451653, 7, 1287821)))
    slave = int.from_bytes(reply.data, "little")
    host.cipher = Cipher(aes_key(DEFAULT_FIXED_KEY, pow(slave, 7, 1287821)))
    assert host.send(C.ENABLE).ok
    assert host.count == 1  # command 0, reply 1
    assert host.send(C.POLL_WITH_ACK).ok
    assert host.count == 2


def test_payout_commands_only_encrypted() -> None:
    sim = plain(levels={1000: 2})
    host = ready(sim)
    assert host.send(C.ENABLE_PAYOUT_DEVICE, b"\x00").ok
    params = PayoutRequest(1000, "EUR", 0x58).serialize()
    assert host.send(C.PAYOUT_AMOUNT, params).status == Response.KEY_NOT_SET
    assert host.send(C.SET_FIXED_KEY, u64le(1)).status == Response.KEY_NOT_SET
    assert sim.state().levels[1000] == 2


def test_wrong_ecount_or_key_is_discarded() -> None:
    sim = EsspSimulator()
    host = encrypted_host(sim)
    assert host.cipher is not None
    ahead = host.cipher.wrap(bytes([C.ENABLE]), host.count + 5)
    assert sim.handle(Frame(0, ahead, host.seq)) is None
    wrong = Cipher(aes_key(DEFAULT_FIXED_KEY, 42)).wrap(bytes([C.ENABLE]), host.count)
    assert sim.handle(Frame(0, wrong, host.seq)) is None
    assert not sim.state().enabled
    assert host.send(C.ENABLE).ok  # the right count and key still work


def test_repeated_flag_gets_the_last_reply_without_executing_again() -> None:
    sim = plain(levels={1000: 3})
    host = ready(sim)
    frame = Frame(0, Request(C.ENABLE).serialize(), host.seq)
    first = sim.handle(frame)
    again = sim.handle(frame)
    assert first == again and first is not None
    assert sim.received.count(C.ENABLE) == 2  # once in ready(), once here
    assert sim.retransmissions == 1


def test_drop_replies_executes_but_does_not_answer() -> None:
    sim = plain()
    host = ready(sim)
    sim.drop_replies(1, command=C.DISABLE)
    assert sim.handle(Frame(0, Request(C.SERIAL_NUMBER).serialize(), host.seq)) is not None
    frame = Frame(0, Request(C.DISABLE).serialize(), not host.seq)
    assert sim.handle(frame) is None
    assert not sim.state().enabled
    assert sim.handle(frame) == Frame(0, Reply(Response.OK).serialize(), frame.seq)


def test_escrow_timeout_rejects_unless_held() -> None:
    now = [0.0]
    sim = EsspSimulator(require_encryption=False, escrow_timeout=10.0, clock=lambda: now[0])
    host = ready(sim)
    escrow(host, 1000)
    now[0] = 9.0
    assert host.send(C.HOLD).ok
    now[0] = 18.0
    assert host.send(C.HOLD).ok  # 9 s since the last HOLD
    now[0] = 28.5
    assert host.send(C.HOLD).status == Response.CANNOT_PROCESS  # 10.5 s: rejected
    assert host.codes() == [Event.REJECTING]
    assert host.codes() == [Event.REJECTED]
    assert host.send(C.LAST_REJECT_CODE).data == bytes([RejectCode.ESCROW_TIMEOUT])


def test_inhibited_channel_is_rejected() -> None:
    sim = plain()
    host = Host(sim)
    host.events()
    assert host.send(C.SET_INHIBITS, b"\x01\x00").ok  # channel 1 only
    assert host.send(C.ENABLE).ok
    assert sim.insert(1000)
    assert host.codes() == [Event.READ]
    assert host.codes() == [Event.REJECTING]
    assert host.codes() == [Event.REJECTED]
    assert host.send(C.LAST_REJECT_CODE).data == bytes([RejectCode.DISABLED_BY_HOST])
    assert not plain().insert(500)  # a disabled unit takes nothing


def test_power_cut_in_escrow_reports_cleared_from_front() -> None:
    sim = plain()
    host = ready(sim)
    escrow(host, 2000)
    sim.power_cut()
    assert sim.handle(Frame(0, bytes([C.SYNC]), True)) is None
    sim.power_on()
    host = Host(sim)
    assert host.events() == (
        PollEvent(Event.SLAVE_RESET),
        PollEvent(Event.CLEARED_FROM_FRONT, channel=3),
        PollEvent(Event.DISABLED),
    )
    # NOTE CLEARED FROM FRONT is not in GA138's "Poll with Ack" column: reported once
    assert host.codes() == [Event.DISABLED]
    assert host.send(C.EVENT_ACK).status == Response.CANNOT_PROCESS  # nothing to acknowledge
    assert sim.state().cashbox == {}


def test_power_cut_while_stacking_reports_cleared_into_cashbox() -> None:
    sim = plain()
    host = ready(sim)
    escrow(host, 2000)
    assert host.codes() == [Event.STACKING]
    sim.power_cut()
    sim.power_on()
    host = Host(sim)
    assert host.codes() == [Event.SLAVE_RESET, Event.CLEARED_TO_CASHBOX, Event.DISABLED]
    assert sim.state().cashbox == {2000: 1}


# -- SMART Payout -------------------------------------------------------------------------------


def payout_host(levels: dict[int, int]) -> Host:
    sim = EsspSimulator(levels=levels)
    host = encrypted_host(sim)
    assert host.send(C.HOST_PROTOCOL_VERSION, b"\x08").ok
    host.events()
    assert host.send(C.ENABLE_PAYOUT_DEVICE, b"\x00").ok
    assert host.send(C.ENABLE).ok  # GA973: PAYOUT AMOUNT is refused while disabled
    return host


def test_payout_amount_is_refused_while_the_validator_is_disabled() -> None:
    host = payout_host({2000: 1})
    assert host.send(C.DISABLE).ok
    for option in (0x58, 0x19):  # a real payout and a test one alike
        got = host.send(C.PAYOUT_AMOUNT, PayoutRequest(2000, "EUR", option).serialize())
        assert got == Reply(Response.CANNOT_PROCESS, b"\x04")  # GA138: 4 = disabled
    assert host.sim.state().levels[2000] == 1


def test_get_all_levels() -> None:
    host = payout_host({1000: 3, 2000: 1})
    levels = parse_levels(host.send(C.GET_ALL_LEVELS).data)
    assert {lv.value: lv.count for lv in levels if lv.count} == {1000: 3, 2000: 1}
    assert len(levels) == len(host.sim.channels)


def test_payout_pays_fewest_notes_then_dispensed() -> None:
    host = payout_host({1000: 3, 2000: 2})
    assert host.send(C.PAYOUT_AMOUNT, PayoutRequest(5000, "EUR", 0x58).serialize()).ok
    seen = [host.events() for _ in range(4)]
    assert [e.code for batch in seen for e in batch if e.code != Event.DISABLED] == [
        Event.DISPENSING,
        Event.DISPENSING,
        Event.DISPENSING,
        Event.DISPENSED,
    ]
    assert seen[3][0].total("EUR") == 5000
    assert host.sim.state().levels[1000] == 2 and host.sim.state().levels[2000] == 0


def test_payout_test_option_moves_nothing_and_errors() -> None:
    host = payout_host({2000: 1})
    test = PayoutRequest(2000, "EUR", 0x19).serialize()
    assert host.send(C.PAYOUT_AMOUNT, test).ok
    assert not host.sim.state().paying_out
    short = host.send(C.PAYOUT_AMOUNT, PayoutRequest(5000, "EUR", 0x19).serialize())
    assert short == Reply(Response.CANNOT_PROCESS, b"\x01")  # GA138: 1 not enough value
    exact = host.send(C.PAYOUT_AMOUNT, PayoutRequest(1000, "EUR", 0x19).serialize())
    assert exact == Reply(Response.CANNOT_PROCESS, b"\x02")  # GA138: 2 cannot pay exact


def test_payout_stop_after_reports_incomplete() -> None:
    host = payout_host({1000: 5})
    host.sim.payout_stop_after(2)
    assert host.send(C.PAYOUT_AMOUNT, PayoutRequest(4000, "EUR", 0x58).serialize()).ok
    host.events()
    host.events()
    (incomplete, *_) = host.events()
    assert incomplete.code == Event.INCOMPLETE_PAYOUT
    assert incomplete.incomplete[0].dispensed == 2000
    assert incomplete.incomplete[0].requested == 4000


ACKED = (Event.NOTE_TRANSFERRED_TO_STACKER, Event.SMART_EMPTIED)


def test_halt_and_route_and_smart_empty() -> None:
    host = payout_host({1000: 2, 2000: 1})
    assert host.send(C.HALT_PAYOUT).status == Response.CANNOT_PROCESS
    assert host.send(C.PAYOUT_AMOUNT, PayoutRequest(3000, "EUR", 0x58).serialize()).ok
    host.events()
    assert host.send(C.HALT_PAYOUT).ok
    (halted, *_) = host.events()
    assert halted.code == Event.HALTED and halted.total("EUR") == 2000
    assert host.send(C.EVENT_ACK).status == Response.CANNOT_PROCESS  # D6 needs no ack
    route = bytes([Route.CASHBOX]) + Amount(1000, "EUR").serialize()
    assert host.send(C.SET_DENOMINATION_ROUTE, route).ok
    assert host.sim.state().routes[1000] is Route.CASHBOX
    assert host.send(C.SMART_EMPTY).ok
    codes: list[list[int]] = []
    for _ in range(12):  # every note moved: C9, repeated until EVENT ACK (GA138)
        codes.append(host.codes())
        acked = [c for c in codes[-1] if c in ACKED]
        if acked:
            assert [c for c in host.codes() if c in ACKED] == acked  # repeated until acked
            assert host.send(C.EVENT_ACK).ok
        if Event.SMART_EMPTIED in codes[-1]:
            break
    assert Event.SMART_EMPTIED in codes[-1]
    assert sum(c.count(Event.NOTE_TRANSFERRED_TO_STACKER) for c in codes) == 2
    data = parse_levels(host.send(C.CASHBOX_PAYOUT_OPERATION_DATA).data)
    assert {lv.value: lv.count for lv in data if lv.count} == {1000: 2}
    assert host.sim.state().cashbox == {1000: 2}


def test_fewest_notes() -> None:
    assert fewest_notes(6000, {5000: 1, 2000: 3, 1000: 0}) == [2000, 2000, 2000]
    assert fewest_notes(7000, {5000: 1, 2000: 3}) == [5000, 2000]
    assert fewest_notes(3000, {2000: 5}) is None
    assert fewest_notes(0, {}) == []


def test_enable_payout_device_takes_its_option_byte_from_firmware_4_16() -> None:
    old = encrypted_host(EsspSimulator(firmware="0415"))
    assert old.send(C.ENABLE_PAYOUT_DEVICE, b"\x00").status == Response.WRONG_PARAMETERS
    assert old.send(C.ENABLE_PAYOUT_DEVICE).ok
    new = encrypted_host(EsspSimulator(firmware="0416"))
    assert new.send(C.ENABLE_PAYOUT_DEVICE, b"\x00").ok


def test_polls_sooner_than_200_ms_are_counted() -> None:
    now = [0.0]
    sim = EsspSimulator(require_encryption=False, clock=lambda: now[0])
    host = Host(sim)
    host.send(C.SYNC)
    host.events()
    now[0] += 0.25
    host.events()
    assert sim.fast_polls == 0
    now[0] += 0.05
    host.events()
    assert sim.fast_polls == 1


def test_host_protocol_version_refusal_is_configurable() -> None:
    for refusal in (Response.FAIL, Response.PARAMETER_OUT_OF_RANGE):
        host = Host(plain(max_protocol=7, version_refusal=refusal))
        host.send(C.SYNC)
        assert host.send(C.HOST_PROTOCOL_VERSION, b"\x08").status == refusal
        assert host.send(C.HOST_PROTOCOL_VERSION, b"\x07").ok


def test_a_unit_without_poll_with_ack_answers_unknown() -> None:
    host = Host(plain(poll_with_ack=False))
    host.send(C.SYNC)
    assert host.send(C.POLL_WITH_ACK).status == Response.UNKNOWN_COMMAND
    assert host.send(C.EVENT_ACK).status == Response.UNKNOWN_COMMAND
    assert host.send(C.POLL).ok


def test_key_numbers_from_2_31_on_are_refused() -> None:
    host = Host(EsspSimulator())
    host.send(C.SYNC)
    big_prime = 2147483659  # the first prime above 2**31
    assert host.send(C.SET_GENERATOR, u64le(big_prime)).status == Response.PARAMETER_OUT_OF_RANGE
    assert host.send(C.SET_MODULUS, u64le(big_prime)).status == Response.PARAMETER_OUT_OF_RANGE
    assert host.send(C.SET_GENERATOR, u64le(982451653)).ok
