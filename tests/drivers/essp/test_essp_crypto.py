"""The eSSP encryption layer: key layout, primes, Diffie-Hellman, AES packets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import FrameError
from drivers.essp.crypto import (
    BLOCK,
    DEFAULT_FIXED_KEY,
    Cipher,
    EncryptedPacket,
    HostKeys,
    aes_key,
    is_prime,
    packing_length,
    prime_generator,
    safe_prime,
    slave_exchange,
)
from drivers.essp.frames import STEX, Frame, FrameParser, crc_bytes

KEY = aes_key(DEFAULT_FIXED_KEY, 0x1122334455667788)


def test_key_layout_is_fixed_then_negotiated_little_endian() -> None:
    # protocols.md §1.2: LE64(fixed) ‖ LE64(negotiated); SET FIXED KEY's vector sends
    # 67 45 23 01 67 45 23 01 for 0x0123456701234567.
    assert KEY[:8] == bytes.fromhex("67 45 23 01 67 45 23 01")
    assert KEY[8:] == bytes.fromhex("88 77 66 55 44 33 22 11")


def test_published_dh_numbers() -> None:
    """GA138's example generator and modulus are primes; the driver's own checks agree."""
    assert is_prime(982451653)
    assert is_prime(1287821)
    assert not is_prime(7554354432121)


@pytest.mark.parametrize(
    ("n", "prime"),
    [(0, False), (1, False), (2, True), (561, False), (2**61 - 1, True), (2**64 - 59, True)],
)
def test_is_prime(n: int, prime: bool) -> None:
    assert is_prime(n) is prime


def test_is_prime_matches_trial_division() -> None:
    def slow(n: int) -> bool:
        return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))

    assert [n for n in range(3000) if is_prime(n)] == [n for n in range(3000) if slow(n)]


def test_safe_prime_and_generator() -> None:
    p = safe_prime(31)
    assert p.bit_length() == 31 and is_prime(p) and is_prime((p - 1) // 2)
    g = prime_generator(p)
    assert is_prime(g) and p < g < 2**31  # ITL's host sends the larger prime as generator
    assert pow(g % p, (p - 1) // 2, p) == p - 1  # a primitive root of a safe prime


def test_diffie_hellman_both_sides_agree() -> None:
    host = HostKeys.generate()
    # ITL's SDK does the exchange in 64-bit integers: every number stays below 2**31
    assert max(host.modulus, host.generator, host.secret, host.intermediate) < 2**31
    slave_inter, slave_key = slave_exchange(
        host.generator, host.modulus, host.intermediate, secret=123456789
    )
    assert host.negotiated(slave_inter) == slave_key


def test_packet_layout() -> None:
    packet = EncryptedPacket.make(5, b"\x56", random=lambda n: bytes(range(n)))
    plain = packet.plaintext()
    assert len(plain) == 16
    assert plain[0] == 1 and plain[1:5] == (5).to_bytes(4, "little") and plain[5] == 0x56
    assert plain[-2:] == crc_bytes(plain[:-2])  # CRC over eLENGTH..ePACKING
    sealed = packet.seal(KEY)
    assert sealed[0] == STEX and len(sealed) == 17
    assert EncryptedPacket.open(KEY, sealed) == packet


@pytest.mark.parametrize("length", [1, 9, 10, 25, 255])
def test_packing_fills_whole_blocks(length: int) -> None:
    assert (length + 7 + packing_length(length)) % BLOCK == 0
    assert packing_length(length) < BLOCK


def test_wrong_key_or_corruption_is_a_frame_error() -> None:
    sealed = Cipher(KEY).wrap(b"\xf0\xee\x01", 3)
    with pytest.raises(FrameError):
        Cipher(aes_key(DEFAULT_FIXED_KEY, 1)).unwrap(sealed)
    with pytest.raises(FrameError):
        Cipher(KEY).unwrap(sealed[:-1])
    with pytest.raises(FrameError):
        Cipher(KEY).unwrap(b"\x07")
    assert Cipher(KEY).unwrap(sealed) == (3, b"\xf0\xee\x01")


@settings(max_examples=60)
@given(
    st.integers(0, 2**32 - 1),
    st.binary(min_size=1, max_size=233),  # 233 + 7 = 240 bytes + STEX: the largest frame
    st.integers(0, 0x7D),
    st.booleans(),
    st.binary(min_size=16, max_size=16),
)
def test_encrypted_frame_round_trip(
    count: int, data: bytes, address: int, seq: bool, key: bytes
) -> None:
    sealed = Cipher(key).wrap(data, count)
    raw = Frame(address, sealed, seq).serialize()
    parser = FrameParser()
    (frame,) = [f for b in raw for f in parser.feed(bytes([b]))]
    assert (frame.address, frame.seq) == (address, seq)
    assert Cipher(key).unwrap(frame.data) == (count, data)
