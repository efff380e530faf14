"""The config reader against generated and mutated TOML (``kiosk bench fuzz config``).

The property: :func:`kiosk.config.load` returns a :class:`~kiosk.config.Config` or raises
:class:`~kiosk.errors.ConfigError`, never anything else, and a Config it returns holds only
finite floats, 64-bit integers and URLs :func:`kiosk.config.https_or_loopback` takes; the same for
:func:`kiosk.config.load_secrets` (a :class:`~kiosk.config.Secrets` or ConfigError).

Each case is a document from one of four sources:

- ``random``: random tables and keys (the reader's own key names mixed with arbitrary ones)
  holding values of every TOML type (strings, integers of any size, floats with ``inf``,
  ``-inf`` and ``nan``, booleans, the four date and time types, arrays, inline tables);
- ``mutated``: ``provisioning/kiosk.toml.example`` as parsed, with values replaced by random
  ones, keys removed, renamed or added, tables replaced by values;
- ``text``: the example's text with lines dropped, repeated or swapped, bytes flipped, the
  file cut short, a number replaced by ``inf``, ``nan`` or 10**400;
- ``secrets``: ``provisioning/secrets.toml.example`` mutated likewise, for ``load_secrets``
  (mode 600, sometimes 644).

Wiring::

    from kiosk.fuzz.config import fuzz_config
    status = fuzz_config(seconds=600, seed=1)   # 0: no failure; 1: failures, printed

Only the standard library (``random``): it runs on a kiosk without the development tools. A
failure is printed with its case seed; ``document(random.Random(case_seed), seeds())`` makes
the same document again. The tests (``tests/fuzz/test_config_fuzz.py``) make documents with
hypothesis (which shrinks a failure to its smallest document) and check them with :func:`check`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import os
import random
import re
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from kiosk import config
from kiosk.errors import ConfigError
from kiosk.fuzz import where

EXAMPLES: Final = Path(__file__).resolve().parents[2] / "provisioning"
"""``kiosk.toml.example`` and ``secrets.toml.example`` (in a checkout; absent on a kiosk
installed from a wheel: then only random documents are made)."""

# -- TOML out, every type -----------------------------------------------------------------------

_BARE_RE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
                   "\r": "\\r"}  # fmt: skip


def toml_string(s: str) -> str:
    """A TOML basic string holding exactly ``s``."""
    return (
        '"'
        + "".join(
            _ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " or c == "\x7f" else c) for c in s
        )
        + '"'
    )


def toml_key(k: str) -> str:
    return k if _BARE_RE.fullmatch(k) else toml_string(k)


def toml_value(v: object) -> str:
    """One value, inline (tables inside values become inline tables)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"not a TOML value: {type(v).__name__}")


def dumps(doc: Mapping[str, Any], prefix: str = "") -> str:
    """A TOML document of ``doc``: its values, then a ``[table]`` for each dict in it."""
    lines = [f"[{prefix}]"] if prefix else []
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    out = "".join(line + "\n" for line in lines)
    for k, v in doc.items():
        if isinstance(v, dict):
            out += "\n" + dumps(v, f"{prefix}.{toml_key(k)}" if prefix else toml_key(k))
    return out


# -- values of every type -----------------------------------------------------------------------

STRINGS: Final = (
    "", " ", "sim", "essp", "id003", "escpos", "replay", "picamera2", "usb", "scanner", "auto",
    "kiosk", "zxing", "pyzbar", "AED", "EUR", "BUSD", "XYZ", "aed", "KSK-0001", "bad id!",
    "9600 8N2", "115200 8E1", "9600 8X1", "0", "-1", "200.00", "0.001", "1e999", "nan", "inf",
    "99999999999999999999999999999.99", "/etc/kiosk/x.pem", "relative/path", "/dev/null",
    "https://api.example.com", "http://127.0.0.1:8700", "http://localhost.evil.example/",
    "http://127.0.0.1.evil.example", "https://user@host", "https://host:port",
    "https://host\\@evil", "http://[::1]:80", "https://[::1", "checkout.payby.com",
    "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n", "\x00", "é", "\u202e",
    "a" * 300,
)  # fmt: skip
INTS: Final = (0, 1, -1, 2, 5, 8, 27, 28, 58, 80, 125, 126, 255, 256, 300, 65535, 65536,
               2**31, 2**63 - 1, -(2**63), 10**400)  # fmt: skip
FLOATS: Final = (0.0, -0.0, 0.01, 0.2, 0.5, 1.0, 1e-300, 5e-324, 1e308, -1.5, 60.0, 3600.5,
                 math.inf, -math.inf, math.nan)  # fmt: skip


def scalar(rng: random.Random) -> object:
    """A TOML scalar of a random type, often one of the values a reader's checks turn on."""
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(STRINGS) if rng.random() < 0.7 else _text(rng)
    if kind == 1:
        return rng.choice(INTS) if rng.random() < 0.6 else rng.randint(-(10**6), 10**6)
    if kind == 2:
        return rng.choice(FLOATS) if rng.random() < 0.6 else rng.uniform(-1e3, 1e3)
    if kind == 3:
        return rng.random() < 0.5
    if kind == 4:  # offset date-time
        return dt.datetime(1979, 5, 27, 7, 32, tzinfo=dt.UTC) + dt.timedelta(rng.randrange(10**5))
    if kind == 5:  # local date-time
        return dt.datetime(2025, 1, 31, 12, 0) + dt.timedelta(seconds=rng.randrange(10**6))
    if kind == 6:  # local date
        return dt.date(2000, 1, 1) + dt.timedelta(rng.randrange(20_000))
    return dt.time(rng.randrange(24), rng.randrange(60), rng.randrange(60))  # local time


def _text(rng: random.Random) -> str:
    alphabet = "abcAZ09 ._-:/@\\[]\"'\n\t\x7f\x01éß€\u202e"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))


def value(rng: random.Random, depth: int = 0) -> object:
    """A scalar, an array (of anything: TOML 1.0 mixes types) or an inline table."""
    r = rng.random()
    if depth < 3 and r < 0.15:
        return [value(rng, depth + 1) for _ in range(rng.randrange(5))]
    if depth < 3 and r < 0.2:
        return {key(rng): value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return scalar(rng)


ODD_KEYS: Final = ("", " ", "a.b", "é", "\x00", "ID", "url", "timeout_s")


def key(rng: random.Random, known: tuple[str, ...] = ()) -> str:
    """One of the reader's names for this table (``known``), an odd one, or any."""
    r = rng.random()
    if known and r < 0.7:
        return rng.choice(known)
    if r < 0.8:
        return rng.choice(ODD_KEYS)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_-0123456789") for _ in range(5))


# -- what the examples hold --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seeds:
    """The example config and secrets, as text and as parsed (empty when not in a checkout),
    and the reader's key names by table path (from the example)."""

    config_text: str
    config: dict[str, Any]
    secrets_text: str
    secrets: dict[str, Any]
    keys: dict[tuple[str, ...], tuple[str, ...]]


def _keys(
    doc: Mapping[str, Any], at: tuple[str, ...], out: dict[tuple[str, ...], set[str]]
) -> None:
    out.setdefault(at, set()).update(doc)
    for k, v in doc.items():
        if isinstance(v, dict):
            _keys(v, (*at, k), out)


def seeds(examples: Path = EXAMPLES) -> Seeds:
    texts = []
    for name in ("kiosk.toml.example", "secrets.toml.example"):
        try:
            texts.append((examples / name).read_text(encoding="utf-8"))
        except OSError:
            texts.append("")
    parsed = [tomllib.loads(t) if t else {} for t in texts]
    found: dict[tuple[str, ...], set[str]] = {}
    _keys(parsed[0], (), found)
    _keys(parsed[1], (), found)
    keys = {at: tuple(sorted(names)) for at, names in found.items()}
    keys.setdefault((), ("kiosk", "hardware", "payby", "fleet"))
    return Seeds(texts[0], parsed[0], texts[1], parsed[1], keys)


# -- documents ----------------------------------------------------------------------------------


def random_doc(
    rng: random.Random, s: Seeds, at: tuple[str, ...] = (), depth: int = 0
) -> dict[str, Any]:
    """Random tables and keys: the reader's own names (from the example) or any."""
    doc: dict[str, Any] = {}
    for _ in range(rng.randrange(1, 7)):
        k = key(rng, s.keys.get(at, ()))
        if depth < 3 and ((*at, k) in s.keys or rng.random() < 0.1) and rng.random() < 0.8:
            doc[k] = random_doc(rng, s, (*at, k), depth + 1)
        else:
            doc[k] = value(rng)
    return doc


def _tables(
    doc: dict[str, Any], at: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    yield at, doc
    for k, v in doc.items():
        if isinstance(v, dict):
            yield from _tables(v, (*at, k))


def mutate_doc(rng: random.Random, doc: dict[str, Any], s: Seeds, n: int) -> dict[str, Any]:
    """``doc`` (a deep copy) after ``n`` mutations: set a key to a random value, remove or
    rename a key, add a key, replace a table by a value or a value by a table."""
    out = copy.deepcopy(doc)
    for _ in range(n):
        at, table = rng.choice(list(_tables(out)))
        op = rng.randrange(5)
        names = list(table)
        if op == 0 or not names:
            table[key(rng, s.keys.get(at, ()))] = value(rng)
        elif op == 1:
            del table[rng.choice(names)]
        elif op == 2:
            old = rng.choice(names)
            table[old + rng.choice(("x", "_", "s", "S"))] = table.pop(old)  # a typo
        elif op == 3:
            table[rng.choice(names)] = value(rng)
        else:
            k = rng.choice(names)
            table[k] = (
                random_doc(rng, s, (*at, k), 2) if not isinstance(table[k], dict) else scalar(rng)
            )
    return out


_NUMBER_RE = re.compile(r"(?m)(=\s*)(-?[0-9][0-9_.eE+-]*)")
_SPECIALS: Final = ("inf", "-inf", "+inf", "nan", "-nan", "1e999", "10" + "0" * 400, "-0.0", "0")


def mutate_text(rng: random.Random, text: str, n: int) -> bytes:
    """``text`` after ``n`` edits of its lines, numbers or bytes; maybe no longer UTF-8."""
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(n):
        op = rng.randrange(5)
        i = rng.randrange(len(lines))
        if op == 0 and len(lines) > 1:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            spans = list(_NUMBER_RE.finditer(lines[i]))
            if spans:
                m = rng.choice(spans)
                lines[i] = lines[i][: m.start(2)] + rng.choice(_SPECIALS) + lines[i][m.end(2) :]
    data = bytearray("".join(lines).encode("utf-8"))
    for _ in range(rng.randrange(3) if rng.random() < 0.3 else 0):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.1:
        del data[rng.randrange(len(data) + 1) :]
    return bytes(data)


def document(rng: random.Random, s: Seeds | None = None) -> tuple[str, bytes]:
    """One case: its source (``random``, ``mutated``, ``text`` or ``secrets``) and its bytes."""
    s = s or seeds()
    r = rng.random()
    if not s.config or r < 0.3:
        return "random", dumps(random_doc(rng, s)).encode("utf-8")
    if r < 0.65:
        return "mutated", dumps(mutate_doc(rng, s.config, s, rng.randrange(1, 5))).encode()
    if r < 0.9:
        return "text", mutate_text(rng, s.config_text, rng.randrange(1, 4))
    if rng.random() < 0.5:
        return "secrets", mutate_text(rng, s.secrets_text, rng.randrange(1, 4))
    return "secrets", dumps(mutate_doc(rng, s.secrets, s, rng.randrange(1, 4))).encode()


# -- the property -------------------------------------------------------------------------------


def violations(obj: object, where: str = "config") -> list[str]:
    """What in a loaded Config (or Secrets) breaks the reader's promises: a float that is not
    finite, an integer beyond 64 bits, a URL :func:`kiosk.config.https_or_loopback` refuses."""
    found: list[str] = []
    if isinstance(obj, float) and not math.isfinite(obj):
        found.append(f"{where} = {obj!r}: not finite")
    elif isinstance(obj, int) and not -(2**63) <= obj < 2**63:
        found.append(f"{where} = {obj!r}: not a 64-bit integer")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            url = f.name.endswith("url") and isinstance(v, str) and v
            if url and not config.https_or_loopback(v):
                found.append(f"{where}.{f.name} = {v!r}: not https or loopback")
            found += violations(v, f"{where}.{f.name}")
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            found += violations(v, f"{where}.{k}")
    elif isinstance(obj, tuple | list):
        for i, v in enumerate(obj):
            found += violations(v, f"{where}[{i}]")
    return found


def check(source: str, data: bytes, directory: Path, *, mode: int = 0o600) -> str:
    """Load ``data`` as a config (as secrets, for ``source == "secrets"``) from a file in
    ``directory``: "loaded" or "refused" (a ConfigError) when the property holds; any other
    exception propagates, and a broken promise is an AssertionError."""
    path = directory / ("secrets.toml" if source == "secrets" else "kiosk.toml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)
    try:
        loaded: object = config.load_secrets(path) if source == "secrets" else config.load(path)
    except ConfigError as exc:
        if exc.file != str(path):
            raise AssertionError(f"a ConfigError that names another file: {exc}") from exc
        return "refused"
    broken = violations(loaded)
    if broken:
        raise AssertionError("; ".join(broken))
    return "loaded"


def fuzz_config(
    seconds: float, seed: int, *, out: Callable[[str], None] = print, examples: Path = EXAMPLES
) -> int:
    """Documents for ``seconds`` from ``seed``; 0 when every one held, 1 with the failures
    printed (each with its case seed; at most three a kind)."""
    rng = random.Random(seed)
    s = seeds(examples)
    if not s.config:
        out(f"fuzz config: no {examples}/kiosk.toml.example here: random documents only")
    sources: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108
    # tmpfs: ext4 flushes a file truncated after a write (auto_da_alloc), 2 ms a document
    with tempfile.TemporaryDirectory(prefix="kiosk-fuzz-", dir=shm) as tmp:
        while time.monotonic() - started < seconds:
            case = rng.getrandbits(64)
            case_rng = random.Random(case)
            source, data = document(case_rng, s)
            mode = 0o644 if source == "secrets" and case_rng.random() < 0.1 else 0o600
            sources[source] += 1
            try:
                outcomes[check(source, data, Path(tmp), mode=mode)] += 1
            except Exception as exc:  # the point: anything but a ConfigError is a failure
                what = str(exc).split(" = ")[0] if isinstance(exc, AssertionError) else ""
                kind = f"{type(exc).__name__} at {where(exc)}{f' ({what})' if what else ''}"
                kinds[kind] += 1
                if kinds[kind] <= 3:
                    out(f"FAIL case {case} ({source}): {kind}: {exc}\n  document: {data[:2000]!r}")
    elapsed = time.monotonic() - started
    total = sum(sources.values())
    out(
        f"fuzz config: {total} documents in {elapsed:.0f} s (seed {seed}):"
        f" {sources['random']} random, {sources['mutated']} mutated example, {sources['text']}"
        f" edited example text, {sources['secrets']} secrets; {outcomes['loaded']} loaded,"
        f" {outcomes['refused']} refused with a ConfigError, {sum(kinds.values())} failures"
    )
    for kind, n in kinds.most_common():
        out(f"  {n} x {kind}")
    return 1 if kinds else 0
