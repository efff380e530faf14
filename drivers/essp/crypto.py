"""The eSSP encryption layer (ITL GA138 "Encryption Layer", "Encryption Keys").

Key negotiation is a Diffie-Hellman exchange over 64-bit numbers: SET GENERATOR (0x4A) and
SET MODULUS (0x4B) send two primes as 8 bytes LE, REQUEST KEY EXCHANGE (0x4C) sends the host
intermediate ``G^h mod M`` and the reply carries the slave's ``G^s mod M``; both sides then
hold ``key = (other intermediate)^own mod M``. The AES-128 key is
``LE64(fixed key) ‖ LE64(negotiated key)``; the fixed key defaults to 0x0123456701234567.

The protocol's 64-bit DH is weak by design (it only binds the session to a device that knows
the fixed key); we choose its numbers properly anyway: the modulus is a 63-bit *safe* prime
``p = 2q + 1`` generated at each negotiation (Miller-Rabin, deterministic below 3.3e24) and
the generator a prime primitive root of ``p`` (``g^q ≢ 1``), so the negotiated key ranges
over the whole group. 63 bits keep the numbers positive for peers that read them as signed
``int64`` (ITL's C code, kybarg's ``readBigInt64LE``).

An encrypted DATA field is ``STEX(0x7E)`` followed by AES-128-ECB over
``eLENGTH eCOUNT(4 LE) eDATA ePACKING eCRCL eCRCH``: random packing fills the plaintext to a
multiple of 16 bytes and the CRC-16/CMS covers eLENGTH..ePACKING.

eCOUNT: reset to 0 by each key negotiation. GA138's wording ("incremented each time a packet
is encrypted and sent, and each time one is received and decrypted") is ambiguous; the two
public host implementations that run against real devices agree on this sequence, which we
follow on both sides: a command sent with count ``c`` is answered with ``c + 1`` and the next
command carries ``c + 1`` (ITL's ``ITLSSPProc.c`` in PyPI ``eSSP6``: ``EncryptSSPPacket``
increments after sending and the reply must equal the incremented value; kybarg
``src/index.js``: reply must be ``count + 1``, then ``count += 1``). A packet whose count does
not match is discarded.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher as _AesCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes

from drivers.errors import FrameError
from drivers.essp.frames import STEX, crc_bytes

DEFAULT_FIXED_KEY: Final = 0x0123456701234567
BLOCK: Final = 16
_FIXED_PART: Final = 7  # eLENGTH(1) + eCOUNT(4) + eCRC(2)


def aes_key(fixed: int, negotiated: int) -> bytes:
    """The AES-128 key: ``LE64(fixed) ‖ LE64(negotiated)``."""
    return fixed.to_bytes(8, "little") + negotiated.to_bytes(8, "little")


# -- primes and Diffie-Hellman -------------------------------------------------------------------

_SMALL_PRIMES: Final = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61)
# Deterministic Miller-Rabin witnesses for n < 3,317,044,064,679,887,385,961,981.
_WITNESSES: Final = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)


def is_prime(n: int) -> bool:
    """Miller-Rabin, deterministic for every ``n`` below 3.3e24 (so for all 64-bit numbers)."""
    if n < 2:
        return False
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in _WITNESSES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


#: Generator, modulus and secrets stay below 2**31: ITL's own SDK (``ITLSSPProc.c``) computes
#: the exchange with 64-bit integers (``XpowYmodN`` squares numbers below the modulus), so a
#: unit running that code overflows on anything larger (GA138 example: generator 982451653,
#: modulus 1287821). ITL's host draws both as primes below 2**31 and sends the larger one as
#: the generator; so do we.
KEY_LIMIT: Final = 2**31


def safe_prime(bits: int = 31) -> int:
    """A random safe prime ``p = 2q + 1`` (``q`` prime) of exactly ``bits`` bits."""
    while True:
        q = secrets.randbits(bits - 1) | (1 << (bits - 2)) | 1
        # p = 2q + 1 is divisible by 3 when q ≡ 1 (mod 3): skip those cheaply.
        if q % 3 != 2 or not is_prime(q):
            continue
        p = 2 * q + 1
        if is_prime(p):
            return p


def prime_generator(p: int, limit: int = KEY_LIMIT) -> int:
    """A prime ``g`` with ``p < g < limit`` whose residue is a primitive root of the safe
    prime ``p`` (its order is ``p - 1``)."""
    q = (p - 1) // 2
    while True:
        g = secrets.randbelow(limit - p - 1) + p + 1
        r = g % p
        if is_prime(g) and r > 1 and pow(r, q, p) != 1 and pow(r, 2, p) != 1:
            return g


@dataclass(frozen=True, slots=True)
class HostKeys:
    """The host side of one negotiation: generator, modulus and the host's secret."""

    generator: int
    modulus: int
    secret: int

    @classmethod
    def generate(cls) -> HostKeys:
        modulus = safe_prime(31)  # in [2**30, 2**31)
        generator = prime_generator(modulus)
        return cls(generator, modulus, secrets.randbelow(KEY_LIMIT - 3) + 2)

    @property
    def intermediate(self) -> int:
        return pow(self.generator, self.secret, self.modulus)

    def negotiated(self, slave_intermediate: int) -> int:
        return pow(slave_intermediate, self.secret, self.modulus)


def slave_exchange(
    generator: int, modulus: int, host_intermediate: int, secret: int
) -> tuple[int, int]:
    """The slave side: (its intermediate ``G^s mod M``, the negotiated key)."""
    return pow(generator, secret, modulus), pow(host_intermediate, secret, modulus)


# -- packets -------------------------------------------------------------------------------------


def _ecb(key: bytes) -> _AesCipher[modes.ECB]:
    # ECB is what the protocol specifies (GA138 "Encryption Layer"); each packet carries a
    # counter and random packing, and the mode is not ours to choose.
    return _AesCipher(algorithms.AES(key), modes.ECB())  # noqa: S305


def packing_length(data_length: int) -> int:
    return -(data_length + _FIXED_PART) % BLOCK


@dataclass(frozen=True, slots=True)
class EncryptedPacket:
    """The plaintext inside ``STEX + AES(...)``: the counter, the data and its packing."""

    count: int
    data: bytes
    packing: bytes = b""

    def __post_init__(self) -> None:
        if not 1 <= len(self.data) <= 255:
            raise FrameError(f"eSSP eDATA is 1..255 bytes, not {len(self.data)}")
        if len(self.packing) != packing_length(len(self.data)):
            raise FrameError(f"eSSP packing of {len(self.packing)} bytes for {len(self.data)}")

    @classmethod
    def make(
        cls, count: int, data: bytes, random: Callable[[int], bytes] = os.urandom
    ) -> EncryptedPacket:
        return cls(count, data, random(packing_length(len(data))))

    def plaintext(self) -> bytes:
        body = bytes([len(self.data)]) + self.count.to_bytes(4, "little") + self.data
        body += self.packing
        return body + crc_bytes(body)

    def seal(self, key: bytes) -> bytes:
        """The frame DATA: STEX then the ciphertext."""
        enc = _ecb(key).encryptor()
        return bytes([STEX]) + enc.update(self.plaintext()) + enc.finalize()

    @classmethod
    def open(cls, key: bytes, data: bytes) -> EncryptedPacket:
        """Decrypt a frame's DATA. Raises ``FrameError`` (wrong key, corrupt, not eSSP)."""
        if not data or data[0] != STEX:
            raise FrameError("not an eSSP packet (no STEX)")
        blob = data[1:]
        if not blob or len(blob) % BLOCK:
            raise FrameError(f"eSSP ciphertext of {len(blob)} bytes is not whole blocks")
        dec = _ecb(key).decryptor()
        plain = dec.update(blob) + dec.finalize()
        if crc_bytes(plain[:-2]) != plain[-2:]:
            raise FrameError("eSSP CRC mismatch (wrong key or corrupt packet)")
        length = plain[0]
        if not 1 <= length <= len(plain) - _FIXED_PART:
            raise FrameError(f"eSSP eLENGTH {length} does not fit {len(plain)} bytes")
        packing = plain[5 + length : -2]
        return cls(int.from_bytes(plain[1:5], "little"), plain[5 : 5 + length], packing)


class Cipher:
    """One side's AES key. Counters are kept by the caller (see the module docstring)."""

    def __init__(self, key: bytes, *, random: Callable[[int], bytes] = os.urandom) -> None:
        if len(key) != 16:
            raise ValueError("an eSSP key is 16 bytes")
        self.key = key
        self._random = random

    def wrap(self, data: bytes, count: int) -> bytes:
        return EncryptedPacket.make(count, data, self._random).seal(self.key)

    def unwrap(self, data: bytes) -> tuple[int, bytes]:
        packet = EncryptedPacket.open(self.key, data)
        return packet.count, packet.data
