"""JCM ID-003 (UBA, iVIZION, iPRO…): ``frames`` (bytes ⇄ frames, CRC-16/KERMIT), ``protocol``
(stream parser, host exchange), ``client`` (:class:`Id003Validator`, a ``BillValidator``,
built from ``core`` (exchanges, status tracking), ``startup`` and ``stacking``),
``codes`` (command/status tables) and ``sim`` (a byte-exact simulated acceptor, imported
explicitly: it is not part of the daemon's path)."""

from drivers.id003.client import Id003Validator

__all__ = ["Id003Validator"]
