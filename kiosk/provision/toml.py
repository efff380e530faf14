"""TOML out: the project reads TOML with :mod:`tomllib`, which does not write.

:func:`dumps` writes the config and the secrets (scalars, lists, nested tables, in their order);
a value TOML cannot hold as the config reader wants it is :class:`Unwritable`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_BARE_RE = re.compile(r"[A-Za-z0-9_-]+")


def _string(s: str, multiline: bool = True) -> str:
    literal_ok = all(c in "\n\t" or (c >= " " and c != "\x7f") for c in s)
    if multiline and "\n" in s and literal_ok and "'''" not in s and not s.endswith("'"):
        return "'''\n" + s + "'''"  # PEM keys stay readable
    text = "".join(
        _ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f" else c) for c in s
    )
    return f'"{text}"'


def _key(k: str) -> str:
    return k if _BARE_RE.fullmatch(k) else _string(k, multiline=False)


class Unwritable(ValueError):
    """A value TOML cannot hold as the config reader wants it (a date, NaN); ``key``: where."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"{key}: expected strings, numbers, booleans and lists")


def _value(v: object, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x, where) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x, where)}" for k, x in v.items()) + " }"
    raise Unwritable(where)


def dumps(table: Mapping[str, Any], prefix: str = "") -> str:
    """TOML text of ``table`` (scalars, lists, nested tables), in its order."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and (scalars or len(scalars) == len(table)) else []
    lines += [
        f"{_key(k)} = {_value(v, f'{prefix}.{k}' if prefix else k)}" for k, v in scalars.items()
    ]
    out = "".join(line + "\n" for line in lines)
    for k, v in table.items():
        if isinstance(v, dict):
            out += ("\n" if out else "") + dumps(v, f"{prefix}.{_key(k)}" if prefix else _key(k))
    return out
