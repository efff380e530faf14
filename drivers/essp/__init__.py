"""ITL SSP / eSSP: NV200, NV9, NV4000 note validators with SMART Payout (protocols.md §1.2).

Layers: :mod:`~drivers.essp.codes` (command, response, event and reject-code tables),
:mod:`~drivers.essp.frames` (bytes ⇄ frozen dataclasses, CRC-16/CMS, byte stuffing, a
resynchronising parser, event and SETUP REQUEST layouts), :mod:`~drivers.essp.crypto` (the
Diffie-Hellman key exchange and the AES-128 packet layer), :mod:`~drivers.essp.protocol`
(sequence flag, retransmission, eSSP counter), :mod:`~drivers.essp.client`
(:class:`EsspValidator`: BillValidator and NoteDispenser, with the poll task; built from
:mod:`~drivers.essp.core`, :mod:`~drivers.essp.startup` and :mod:`~drivers.essp.payout`) and
:mod:`~drivers.essp.sim` (:class:`EsspSimulator`, the byte-exact device side, and
:func:`run_simulator`; built from :mod:`~drivers.essp.sim_device` and
:mod:`~drivers.essp.sim_commands`).

Facts not in protocols.md, and where they come from:

- SETUP REQUEST layout, unit types, reject codes, event data sizes per protocol version,
  ENABLE PAYOUT DEVICE's option byte, SET BAUD RATE's parameters: kybarg
  ``encrypted-smiley-secure-protocol`` ``src/utils.js``, ``src/unit_type.js``,
  ``src/reject_note.js``.
- A channel's value = its 4-byte expanded value x the *real* value multiplier: ITL's C# SDK
  (``ValidatorSetupRequest`` in the public ITL-based ``ITLCashValidator`` code).
- The eSSP counter sequence (reply = command count + 1, next command = that value): ITL's
  ``ITLSSPProc.c`` and kybarg ``src/index.js``; see :mod:`~drivers.essp.crypto`.
- CASHBOX PAYOUT OPERATION DATA reports every denomination, zeros included, as
  count(2 LE) value(4 LE) country(3): ITL NV11 manual set, section 5.

Inferred (no public table found; the simulator does the same, so a real unit may differ):
the set of events POLL WITH ACK repeats until EVENT ACK (``codes.ACK_REQUIRED``), which
commands a unit requiring encryption answers before keys exist, and NV4000's unit type (pass
``payout=True`` if its SETUP REQUEST does not say SMART Payout).
"""

from drivers.essp.client import EsspValidator

__all__ = ["EsspValidator"]  # the simulator stays off the daemon's path: drivers.essp.sim
