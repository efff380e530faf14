"""``kiosk support-bundle``: what support needs about one transaction or a period, as one
``.tar.gz`` a technician can send, with every secret and every customer code taken out.

::

    kiosk support-bundle [--config F] [--ref REF | --since T [--until T]] [--out FILE]

``T`` is an ISO 8601 time (UTC unless it carries an offset: ``2026-11-21``,
``2026-11-21T17:00``, ``2026-11-21T17:00:00+04:00``) or an age (``90m``, ``24h``, ``7d``);
the period is ``[since, until)``, ``until`` defaulting to now. Without ``--ref`` or
``--since``: the last 24 hours. ``FILE`` defaults to
``./kiosk-support-<kiosk id>-<UTC time>.tar.gz``; it is created with mode 0600 and never
overwritten.

Members, each passed through :class:`Redactor`:

- ``manifest.json``: kiosk id, firmware version, when, what was asked and the window it
  covers, where the logs came from, the secrets file's key names (never a value), each other
  member's size and SHA-256;
- ``config.toml``: the config file, every value keyed like *key*, *secret*, *token*,
  *password* (…) replaced by ``"<redacted>"``; the secrets file's key names appended as
  comments (the secrets file itself is never included);
- ``journal.json``: the transaction ``REF``, or every transaction created or with an event in
  the period, each with its events, effects (request, outcome), liabilities, outbox rows
  (never ``sealed``, the encrypted request: not even read) and receipt documents; the
  kiosk-level events and receipts of the window; the events' hash-chain check. Codes' keyed
  hashes (``used_codes``, ``transactions.code_hash``) and the chain's hashes are left out;
- ``logs.txt``: ``journalctl -u kiosk`` for the window (``REF``: its first event minus 5
  minutes to its last plus 5), else the lines of the window of ``state_dir/*.log``, else a
  note;
- ``status.json``: the running daemon's ``status`` over ``state_dir/admin.sock``, or a note.

Read-only: the journal is opened read-only and never migrated; when no daemon has it open
(no ``-wal``/``-shm`` beside it) it is opened ``immutable``, so not even those files appear.
Nothing is created but the bundle. Exit status (through :mod:`kiosk.cli`): 0 written; 1 no
journal, an unknown ``REF``, the bundle cannot be written; 2 a bad option or configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from kiosk.errors import KioskError, StorageError

if TYPE_CHECKING:
    import sqlite3

DEFAULT_WINDOW: Final = timedelta(hours=24)
REF_MARGIN: Final = timedelta(minutes=5)
STATUS_TIMEOUT_S: Final = 3.0
JOURNALCTL_TIMEOUT_S: Final = 60.0
MAX_LOG_BYTES: Final = 16 * 1024 * 1024  # the newest part is kept
MAX_TRANSACTIONS: Final = 10_000
MIN_LITERAL: Final = 8  # shorter values of the secrets file are not secrets worth a pattern


class BundleError(KioskError):
    """The bundle cannot be made: no journal, an unknown reference, an unwritable file
    (exit 1). The message says what to check."""

    exit_status = 1


class BundleUsageError(BundleError, ValueError):
    """A bad option (exit 2): the message names it and the expected form."""

    exit_status = 2


# --- redaction ---------------------------------------------------------------------------------


def _mark(kind: str) -> str:
    return f"<redacted:{kind}>"


_SEP = r"(?:\s|\\[nr])+"  # between PEM lines: a newline, or one escaped in JSON / a repr
_B64 = r"[A-Za-z0-9+/=]"
_PEM_BLOCK = r"-----BEGIN ([A-Z0-9 ]{1,40})-----[\s\S]{0,10000}?-----END \1-----"
_PEM_OPEN = (  # a block cut short (a truncated log line): its full lines, its last
    rf"-----BEGIN [A-Z0-9 ]{{1,40}}-----(?:{_SEP}{_B64}{{64}})*"
    rf"(?:{_SEP}(?=[A-Za-z0-9+/]*[0-9+/=]){_B64}{{1,64}}(?!{_B64}))?"
)
_PEM_MARKER = r"-----(?:BEGIN|END) [A-Z0-9 ]{1,40}-----"
_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'"
_AUTH = (
    r"(?i)(?<![A-Za-z0-9_-])(?P<head>[\"']?(?:proxy-)?authorization|[\"']?(?:set-)?cookie)"
    rf"(?P<sep>[\"']?\s*[:=]\s*)(?P<val>{_QUOTED}|[^\r\n]*)"
)
_BEARER = r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"
# name: value / name = value / "name": "value" (headers, dict reprs, JSON in a log line)
_FIELDS = (
    r"sign|signature|x-signature|[a-z_-]*(?:api|mac|secret|private|access|journal)[_-]?key"
    r"|secret|client[_-]?secret|password|passwd|[a-z_]*token|otp|phone(?:[_-]?number)?"
    r"|token[_-]?url|tokenurl|pay[_-]?url|pay[_-]?code|qr"
)
_NAMED = (
    rf"(?i)(?<![A-Za-z0-9_-])(?P<head>[\"']?(?P<name>{_FIELDS}))"
    rf"(?P<sep>[\"']?\s*[:=]\s*)(?P<val>{_QUOTED}|[^\s&,;\"'<>)}}\]]+)"
)
# query parameters that are codes (kiosk envelopes, pay pages, tokenUrls): name=value only
_PARAM = r"(?i)(?<![A-Za-z0-9_-])(?P<name>code|otp|phone|ft|key|token)=(?P<val>[^\s&#\"'<>]+)"
_URL = r"(?i)\b(?P<scheme>https?://)(?P<auth>[^/\s?#\"'<>]+)(?P<rest>[/?#][^\s\"'<>]*)?"
_PHONE = r"(?i)(?:(?<![A-Za-z0-9+])\+|%2B)[1-9][0-9]{6,14}(?![0-9])"
_RESERVATION = r"(?<![0-9])[0-9]{4}(?: ?[0-9]{4}){6}(?![0-9])"  # Paysera, 28 digits
_EVP = r"(?i)(?<![A-Za-z0-9])EVP[0-9]{12}(?![0-9])"  # Paysera cash-in
_CARD16 = r"(?<![0-9])[0-9]{4}(?:[ -]?[0-9]{4}){3}(?![0-9])"  # Cashii pay codes
_LONG = r"[A-Za-z0-9+/_=-]{32,}"
_HEX = r"[0-9A-Fa-f]+"
# what each rule below the literals needs to match at all (a cheap first look)
_TRIGGER = (
    r"[0-9]{4}[ -]?[0-9]{3}|[A-Za-z0-9+/_=-]{32}|://|=|\+|%2[Bb]"
    r"|(?i:evp|bearer|basic|authorization|cookie|sign|key|secret|passw|token|otp|phone|url|code|qr)"
)
_WORD = r"[0-9]{1,14}|[A-Za-z][a-z]*(?:[A-Z]+[a-z]*){0,3}[0-9]{0,4}|"


def _wordy(token: str) -> bool:
    """A path or identifier made of words (``/acquire2/cashTopUp/resolveToken``,
    ``KSK-0001-000042-pay``, ``unconfirmed_note``), not a random string: every piece between
    ``/ _ - . ~`` is a word or a short number, none longer than 20 characters."""
    pieces = re.split(r"[/_.~-]+", token)
    return all(len(p) <= 20 and re.fullmatch(_WORD, p) for p in pieces)


def _long(m: re.Match[str]) -> str:
    token = m.group(0)
    if re.fullmatch(_HEX, token):
        return _mark("hex")
    return token if _wordy(token) else _mark("base64")


def _url(m: re.Match[str]) -> str:
    scheme, auth, rest = m.group("scheme"), m.group("auth"), m.group("rest") or ""
    if "@" in auth:  # user info is a credential
        auth = _mark("userinfo") + "@" + auth.rsplit("@", 1)[1]
    path_only = not any(c in rest for c in "?#&=;")
    if not rest or rest == "/" or (path_only and all(_wordy(s) for s in rest.split("/"))):
        return scheme + auth + rest
    return f"{scheme}{auth}/{_mark('url')}"


def _named(m: re.Match[str]) -> str:
    val = m.group("val")
    if "<redacted" in val:
        return m.group(0)
    quoted = val[:1] in "\"'" and len(val) >= 2
    if not quoted and not re.search(r"[0-9]", val) and len(val) < 12:
        return m.group(0)  # "bad signature: the reply…" is prose, not a header
    if quoted and len(val) == 2:
        return m.group(0)  # empty
    kind = _kind_of(m.group("name"))
    mark = _mark(kind)
    return m.group("head") + m.group("sep") + (val[0] + mark + val[0] if quoted else mark)


def _auth(m: re.Match[str]) -> str:
    val = m.group("val")
    if not val.strip():
        return m.group(0)
    quoted = val[:1] in "\"'" and len(val) >= 2
    mark = _mark("auth")
    return m.group("head") + m.group("sep") + (val[0] + mark + val[0] if quoted else mark)


def _param(m: re.Match[str]) -> str:
    if m.group("val").startswith("<redacted"):
        return m.group(0)
    return f"{m.group('name')}={_mark(_kind_of(m.group('name')))}"


def _kind_of(name: str) -> str:
    n = name.lower().replace("-", "_")
    if "sign" in n:
        return "sign"
    if n.startswith("phone"):
        return "phone"
    if n in ("otp", "code", "pay_code", "paycode", "qr", "ft"):
        return n.replace("paycode", "pay_code")
    if "url" in n:
        return "url"
    if "token" in n:
        return "token"
    return "secret"


@functools.lru_cache(maxsize=8)
def _literal_pattern(literals: tuple[str, ...]) -> re.Pattern[str] | None:
    if not literals:
        return None
    ordered = sorted(set(literals), key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in ordered))


@dataclass(frozen=True, slots=True)
class Redactor:
    """Removes secrets and customer codes from text and JSON values, each replaced by
    ``<redacted:kind>``; amounts, references, states, timestamps and reasons stay.

    ``literals``: the values of the secrets file (and their base64 and hex forms), removed
    wherever they appear. Whatever the literals, removed by their form: PEM blocks; hex
    strings of 32 characters or more and base64 strings of 32 or more that are not a path of
    words; ``Authorization``/``Cookie`` headers and ``Bearer``/``Basic`` credentials;
    ``sign``/``signature`` headers and values named like a key, secret, token, password, OTP,
    phone, pay URL/code; the ``code=``, ``otp=``, ``phone=``, ``ft=``, ``key=``, ``token=``
    parameters (kiosk envelopes, pay pages); the path and query of URLs (the host stays),
    unless the path is plain words without a query; phone numbers (``+`` and 7-15 digits,
    ``%2B`` too); Paysera's 28-digit reservation codes and ``EVP`` codes; 16-digit codes
    (Cashii's pay codes, also in groups of 4)."""

    literals: tuple[str, ...] = ()

    def text(self, text: str) -> str:
        if "-----" in text:
            text = re.sub(_PEM_BLOCK, _mark("pem"), text)
            text = re.sub(_PEM_OPEN, _mark("pem"), text)
            text = re.sub(_PEM_MARKER, _mark("pem"), text)
        pattern = _literal_pattern(self.literals)
        if pattern is not None:
            text = pattern.sub(_mark("secret"), text)
        if not re.search(_TRIGGER, text):
            return text  # most journal values: states, kinds, timestamps, references
        text = re.sub(_AUTH, _auth, text)
        text = re.sub(_BEARER, lambda m: f"{m.group(1)} {_mark('auth')}", text)
        text = re.sub(_NAMED, _named, text)
        text = re.sub(_URL, _url, text)
        text = re.sub(_PARAM, _param, text)
        text = re.sub(_LONG, _long, text)  # before the digit rules: none may split a long token
        text = re.sub(_PHONE, _mark("phone"), text)
        text = re.sub(_RESERVATION, _mark("reservation_code"), text)
        text = re.sub(_EVP, _mark("evp_code"), text)
        return re.sub(_CARD16, _mark("code16"), text)

    def value(self, value: Any) -> Any:
        """A JSON value with every string redacted, and the value of every key that names a
        code or a secret (``token_url``, ``otp``, ``phone``, ``qr``, ``*key``, …) replaced."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):  # a code sent as a JSON number
            kind = {16: "code16", 28: "reservation_code"}.get(len(str(abs(value))))
            return value if kind is None else _mark(kind)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = self.text(str(k))
                out[key] = _mark(_kind_of(str(k))) if _secret_key(str(k), v) else self.value(v)
            return out
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return self.text(str(value))


_SECRET_KEY = rf"(?i)(?:{_FIELDS}|session|sealed|code_hash|credential.*)"


def _secret_key(key: str, value: Any) -> bool:
    return bool(re.fullmatch(_SECRET_KEY, key)) and value not in (None, "", [], {})


def redact(text: str, literals: Sequence[str] = ()) -> str:
    """``text`` without secrets or codes (:class:`Redactor`)."""
    return Redactor(tuple(literals)).text(text)


def redact_json(value: Any, literals: Sequence[str] = ()) -> Any:
    """A JSON value without secrets or codes (:meth:`Redactor.value`)."""
    return Redactor(tuple(literals)).value(value)


# --- the secrets file: its values (to remove them) and its key names (to list them) ---------


def literals_of(values: Iterable[str]) -> tuple[str, ...]:
    """Each secret value as it may appear: whole, line by line, a PEM's body on one line, in
    base64 (standard and URL-safe, padded or not), in hex, and for a hex value its bytes in
    base64; values shorter than :data:`MIN_LITERAL` are left to the generic rules."""
    import base64

    out: set[str] = set()

    def add(s: str) -> None:
        if len(s) >= MIN_LITERAL:
            out.add(s)

    for value in values:
        lines = [line.strip() for line in value.splitlines()]
        for form in (value, value.strip(), *lines):
            add(form)
        if "-----BEGIN" in value:  # the body on one line (the DER in base64)
            add("".join(line for line in lines if not line.startswith("-----")))
        raw = [value.encode()]
        with contextlib.suppress(ValueError):
            raw.append(bytes.fromhex(value.strip()))
        for data in raw:
            if len(data) < MIN_LITERAL // 2:
                continue
            for enc in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
                add(enc.decode())
                add(enc.decode().rstrip("="))
            add(data.hex())
            add(data.hex().upper())
        if value.strip() and re.fullmatch(_HEX, value.strip()):
            add(value.strip().lower())
            add(value.strip().upper())
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class SecretsView:
    """What the bundle may know of the secrets file: its values to remove, its key names."""

    path: Path
    readable: bool
    note: str
    names: tuple[str, ...]  # dotted key names, e.g. "payby.private_key"
    literals: tuple[str, ...]


def read_secrets_view(path: Path) -> SecretsView:
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        why = f"not readable ({type(exc).__name__}): only the generic rules removed secrets"
        return SecretsView(path, False, why, (), ())
    except UnicodeDecodeError:
        text = path.read_bytes().decode("utf-8", "replace")
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        found = tuple(re.findall(r"(?m)^\s*([A-Za-z0-9_.-]+)\s*=", text))
        quoted = [a or b for a, b in re.findall(r"\"([^\"\n]+)\"|'([^'\n]+)'", text)]
        why = "not valid TOML: each of its lines and quoted values removed"
        return SecretsView(path, True, why, found, literals_of([*quoted, *text.splitlines()]))
    names: list[str] = []
    values: list[str] = []

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, list):
            names.append(prefix)
            values.extend(json.dumps(v) if isinstance(v, dict | list) else str(v) for v in node)
        else:
            names.append(prefix)
            values.append(str(node))

    walk("", data)
    return SecretsView(path, True, "", tuple(names), literals_of(values))


def secrets_names_toml(view: SecretsView) -> str:
    """The secrets file's key names, each with ``"<redacted>"``, as TOML comments."""
    lines = [f"# --- the secrets file {view.path}: key names only, never a value ---"]
    if not view.readable:
        return "\n".join([*lines, f"# {view.note}"]) + "\n"
    table = None
    for name in view.names:
        head, _, key = name.rpartition(".")
        if head != table:
            lines.append(f"# [{head}]" if head else "#")
            table = head
        lines.append(f'# {key} = "<redacted>"')
    return "\n".join(lines) + "\n"


# --- the config file ---------------------------------------------------------------------------

_TOML_LINE = r"^(?P<lead>\s*)(?P<key>[A-Za-z0-9_.\"'-]+)(?P<eq>\s*=\s*)(?P<val>.*)$"
_SENSITIVE = r"(?i)key|secret|token|passw|private|credential|auth|sign"
_EXEMPT = r"(?i)(?:_file|_path|_dir|_hosts)$"


def redact_config(text: str, redactor: Redactor) -> str:
    """The config file with each string, array or table value of a key named like a secret
    (*key*, *secret*, *token*, *password*, *private*, *auth*, *sign*; not ``*_file``,
    ``*_path``, ``*_dir``, ``*_hosts``) replaced by ``"<redacted>"``, then the whole text
    through ``redactor``."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        m = re.match(_TOML_LINE, line)
        if m is None or line.lstrip().startswith(("#", "[")):
            out.append(line)
            continue
        name = m.group("key").strip("\"'").rsplit(".", 1)[-1]
        val = m.group("val").lstrip()
        if not re.search(_SENSITIVE, name) or re.search(_EXEMPT, name) or val[:1] not in "\"'[{":
            out.append(line)
            continue
        i = _skip_value(lines, i, val)
        out.append(f'{m.group("lead")}{m.group("key")}{m.group("eq")}"<redacted>"')
    return redactor.text("\n".join(out) + ("\n" if text.endswith("\n") else ""))


def _skip_value(lines: list[str], i: int, val: str) -> int:
    """The index of the line after a TOML value that starts with ``val`` on line ``i - 1``."""
    for quote3 in ('"""', "'''"):
        if val.startswith(quote3):
            if quote3 in val[3:]:
                return i
            while i < len(lines):
                i += 1
                if quote3 in lines[i - 1]:
                    return i
            return i
    if val.startswith("["):
        depth = _depth(val)
        while depth > 0 and i < len(lines):
            depth += _depth(lines[i])
            i += 1
    return i


def _depth(text: str) -> int:
    """Brackets opened minus closed on a line of a TOML array (strings and comments aside)."""
    code = re.sub(_QUOTED, '""', text).split("#", 1)[0]
    return code.count("[") - code.count("]")


# --- times ---------------------------------------------------------------------------------------

_AGE = r"([0-9]{1,6})([mhd])"


def parse_time(text: str, option: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC when it has no offset) or an age (``90m``, ``24h``, ``7d``)."""
    m = re.fullmatch(_AGE, text.strip())
    if m is not None:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return now - timedelta(**{unit: int(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BundleUsageError(
            f"{option} {text!r}: expected an ISO 8601 time, UTC unless it has an offset"
            " (e.g. 2026-11-21, 2026-11-21T17:00, 2026-11-21T17:00:00+04:00), or an age"
            " (90m, 24h, 7d)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def journal_time(when: datetime) -> str:
    """The journal's own form (``2026-11-21T17:00:00.123Z``), which sorts as text."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


# --- the journal, read only ----------------------------------------------------------------------


@contextlib.contextmanager
def open_read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """The journal at ``path``, read-only, never migrated, leaving nothing behind: beside a
    daemon (its ``-wal`` and ``-shm`` exist) through them; closed cleanly (neither exists)
    ``immutable``, so SQLite creates neither; a ``-wal`` without its ``-shm`` (after a crash)
    from a copy in a temporary directory."""
    import shutil
    import sqlite3
    import tempfile

    if not path.is_file():
        raise BundleError(
            f"no journal at {path}: has the kiosk run with this state directory?"
            " (check kiosk.state_dir in the config, or pass --config)"
        )
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    with contextlib.ExitStack() as stack:
        if wal.exists() and shm.exists():
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        elif not wal.exists():
            uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kiosk-support-")))
            try:
                shutil.copyfile(path, tmp / "journal.db")
                shutil.copyfile(wal, tmp / "journal.db-wal")
            except OSError as exc:
                raise StorageError(f"journal {path}: cannot read it ({exc.strerror})") from exc
            uri = f"file:{quote(str(tmp / 'journal.db'))}"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"journal {path}: {exc}; check the file and its rights") from exc
        stack.callback(conn.close)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN")  # one snapshot for every table
            yield conn
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"journal {path}: {exc}; is it a kiosk journal? (kiosk journal verify)"
            ) from exc


def _columns(conn: sqlite3.Connection, table: str, leave_out: Sequence[str]) -> str:
    import sqlite3

    names = [r["name"] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    if not names:
        raise sqlite3.OperationalError(f"no table {table}")
    return ", ".join(f'"{n}"' for n in names if n not in leave_out)


def _select(
    conn: sqlite3.Connection,
    table: str,
    where: str,
    args: Sequence[Any],
    *,
    leave_out: Sequence[str] = (),
    json_cols: Sequence[str] = (),
    order: str = "id",
) -> list[dict[str, Any]]:
    """Rows of ``table``; the columns in ``leave_out`` are never read."""
    cols = _columns(conn, table, leave_out)
    sql = f'SELECT {cols} FROM "{table}" WHERE {where} ORDER BY {order}'  # noqa: S608 - constants
    rows = [dict(r) for r in conn.execute(sql, args)]
    for row in rows:
        for col in json_cols:
            if isinstance(row.get(col), str):
                with contextlib.suppress(ValueError):
                    row[col] = json.loads(row[col])
    return rows


def _transaction(conn: sqlite3.Connection, tx: dict[str, Any]) -> dict[str, Any]:
    tx_id = [tx["id"]]
    return {
        "transaction": tx,
        "events": _select(
            conn, "events", "tx_id = ?", tx_id,
            leave_out=("prev_hash", "hash"), json_cols=("data",), order="seq",
        ),
        "effects": _select(conn, "effects", "tx_id = ?", tx_id, json_cols=("request", "outcome")),
        "liabilities": _select(conn, "liabilities", "tx_id = ?", tx_id),
        "outbox": _select(
            conn, "outbox", "tx_id = ?", tx_id, leave_out=("sealed",), json_cols=("result",)
        ),
        "receipts": _select(conn, "receipts", "tx_id = ?", tx_id, json_cols=("document",)),
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Extract:
    journal: dict[str, Any]
    since: datetime
    until: datetime


_NO_HASH: Final = ("code_hash",)  # a code's keyed hash: not needed for support


def extract(
    conn: sqlite3.Connection, *, ref: str | None, since: datetime | None, until: datetime
) -> Extract:
    """The journal's part for ``ref`` (its window: its first event minus :data:`REF_MARGIN`
    to its last plus it), or for the period ``[since, until)``."""
    from kiosk.journal import verify_chain

    if ref is not None:
        items, since, until = _by_ref(conn, ref)
        asked: dict[str, Any] = {"ref": items[0]["transaction"]["ref"]}
        truncated = False
    else:
        since = since or until - DEFAULT_WINDOW
        items, truncated = _in_period(conn, journal_time(since), journal_time(until))
        asked = {"since": journal_time(since), "until": journal_time(until)}
    lo, hi = journal_time(since), journal_time(until)
    report = verify_chain(conn)
    doc = {
        "asked": asked,
        "window": {"since": lo, "until": hi},
        "chain": {
            "ok": report.ok,
            "checked": report.checked,
            "first_bad": report.first_bad,
            "reason": report.reason,
        },
        "transactions": items,
        "truncated": truncated,
        "kiosk_events": _select(
            conn, "events", "tx_id IS NULL AND at >= ? AND at < ?", [lo, hi],
            leave_out=("prev_hash", "hash"), json_cols=("data",), order="seq",
        ),
        "kiosk_receipts": _select(
            conn, "receipts", "tx_id IS NULL AND created_at >= ? AND created_at < ?", [lo, hi],
            json_cols=("document",),
        ),
    }  # fmt: skip
    return Extract(doc, since, until)


def _by_ref(conn: sqlite3.Connection, ref: str) -> tuple[list[dict[str, Any]], datetime, datetime]:
    found = _select(conn, "transactions", "ref = ? OR id = ?", [ref, ref], leave_out=_NO_HASH)
    if not found:
        raise BundleError(
            f"no transaction {redact(ref)} in the journal: `kiosk journal` lists the"
            " references (as printed on receipts, e.g. KSK-0001-000042)"
        )
    item = _transaction(conn, found[0])
    times = [found[0]["created_at"], found[0]["updated_at"], *(e["at"] for e in item["events"])]
    when = [datetime.fromisoformat(t).astimezone(UTC) for t in times]
    return [item], min(when) - REF_MARGIN, max(when) + REF_MARGIN


def _in_period(conn: sqlite3.Connection, lo: str, hi: str) -> tuple[list[dict[str, Any]], bool]:
    """Every transaction created, or with an event, in ``[lo, hi)`` (at most
    :data:`MAX_TRANSACTIONS`), and whether some were left out."""
    txs = _select(
        conn,
        "transactions",
        "(created_at >= ? AND created_at < ?) OR id IN (SELECT tx_id FROM events"
        " WHERE tx_id IS NOT NULL AND at >= ? AND at < ?)",
        [lo, hi, lo, hi],
        leave_out=_NO_HASH,
    )
    items = [_transaction(conn, tx) for tx in txs[:MAX_TRANSACTIONS]]
    return items, len(txs) > len(items)


# --- logs and status ---------------------------------------------------------------------------

_LOG_TIME = r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,6}))?\s?(Z|[+-]\d{2}:?\d{2})?"


def _line_time(line: str) -> datetime | None:
    m = re.match(_LOG_TIME, line)
    if m is None:
        return None
    date, clock, frac, zone = m.groups()
    text = f"{date}T{clock}{'.' + frac.ljust(6, '0') if frac else ''}"
    if zone:
        text += "+00:00" if zone == "Z" else zone
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.astimezone(UTC)  # no offset: the kiosk's local time (Python logging's asctime)


def _window_lines(text: str, since: datetime, until: datetime) -> list[str]:
    """The lines of ``text`` stamped within the window; an unstamped line (a traceback, a
    multi-line message) goes with the line before it."""
    keep, out = True, []
    for line in text.splitlines():
        when = _line_time(line)
        if when is not None:
            keep = since <= when < until
        if keep:
            out.append(line)
    return out


def _journalctl(since: datetime, until: datetime) -> tuple[str | None, str]:
    import shutil
    import subprocess

    exe = shutil.which("journalctl")
    if exe is None:
        return None, "journalctl: not installed"
    cmd = [
        exe, "-u", "kiosk", "--since", f"@{int(since.timestamp())}",
        "--until", f"@{int(until.timestamp()) + 1}", "-o", "short-iso", "--no-pager", "-q",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            cmd, capture_output=True, timeout=JOURNALCTL_TIMEOUT_S, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"journalctl: {type(exc).__name__}"
    text = done.stdout.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("-- ")]
    if done.returncode != 0:
        return None, f"journalctl: exit status {done.returncode}"
    if not lines:
        return None, "journalctl: no entries for the kiosk unit in the window"
    return text, "journalctl -u kiosk"


def collect_logs(state_dir: Path, since: datetime, until: datetime) -> tuple[str, str]:
    """The daemon's log for the window, and where it came from."""
    text, why = _journalctl(since, until)
    if text is not None:
        return text, why
    notes = [why]
    files = sorted(
        p for p in state_dir.glob("*.log") if p.is_file() and not p.is_symlink()
    )  # a symlink could point anywhere: not followed
    parts: list[str] = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            notes.append(f"{path}: {type(exc).__name__}")
            continue
        lines = _window_lines(raw.decode("utf-8", "replace"), since, until)
        parts.append(f"==> {path} <==\n" + "".join(f"{ln}\n" for ln in lines))
    if parts:
        return "".join(parts), f"{', '.join(str(p) for p in files)} ({'; '.join(notes)})"
    notes.append(f"no *.log in {state_dir}")
    return f"no logs available ({'; '.join(notes)})\n", "none"


def _cap(text: str) -> str:
    data = text.encode()
    if len(data) <= MAX_LOG_BYTES:
        return text
    tail = data[-MAX_LOG_BYTES:].decode("utf-8", "ignore")
    return f"[the first {len(data) - MAX_LOG_BYTES} bytes are left out]\n" + tail


def daemon_status(state_dir: Path) -> dict[str, Any]:
    """The running daemon's ``status``, or a note saying why there is none."""
    from kiosk import admin

    sock = state_dir / "admin.sock"
    if not sock.exists():
        return {"answered": False, "note": f"no admin socket at {sock}: the daemon is not running"}
    try:
        reply = admin.call(sock, {"cmd": "status"}, timeout=STATUS_TIMEOUT_S)
    except (KioskError, OSError, ValueError) as exc:
        return {"answered": False, "note": f"the daemon did not answer on {sock}: {exc}"}
    return {"answered": True, "status": reply}


# --- the bundle ------------------------------------------------------------------------------


def _firmware() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kiosk")
    except PackageNotFoundError:
        return "unknown"


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


@dataclass(frozen=True, slots=True)
class Request:
    config: Path
    ref: str | None
    since: str | None
    until: str | None
    out: Path | None


def make_bundle(req: Request, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Path:
    """Write the bundle of ``req``; its path."""
    import sqlite3

    from kiosk import config

    at = now()
    since, until = _period(req, at)
    cfg = config.load(req.config)
    view = read_secrets_view(cfg.secrets_file)
    redactor = Redactor(view.literals)
    out = req.out or Path(f"kiosk-support-{cfg.kiosk_id}-{at.strftime('%Y%m%dT%H%M%SZ')}.tar.gz")
    if out.exists() or out.is_symlink():
        raise BundleError(f"{out} exists: remove it or choose another --out")
    with open_read_only(cfg.journal_path) as conn:
        try:
            ex = extract(conn, ref=req.ref, since=since, until=until)
        except sqlite3.OperationalError as exc:
            raise StorageError(
                f"journal {cfg.journal_path}: {exc}: not a kiosk journal, or a newer one"
            ) from exc
    journal_doc = redactor.value(ex.journal)
    try:
        config_text = cfg.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        config_text = f"# {cfg.file}: not readable ({type(exc).__name__})\n"
    logs, log_source = collect_logs(cfg.state_dir, ex.since, ex.until)
    members = [
        ("config.toml", (redact_config(config_text, redactor) + "\n" + secrets_names_toml(view))),
        ("journal.json", _dumps(journal_doc)),
        ("logs.txt", _cap(redactor.text(logs))),
        ("status.json", _dumps(redactor.value(daemon_status(cfg.state_dir)))),
    ]
    data = [(name, text.encode()) for name, text in members]
    about = {
        "kiosk_id": cfg.kiosk_id,
        "location": cfg.location,
        "firmware": _firmware(),
        "created_at": journal_time(at),
        "asked": {"ref": req.ref, "since": req.since, "until": req.until},
        "window": journal_doc["window"],
        "transactions": len(journal_doc["transactions"]),
        "chain_ok": journal_doc["chain"]["ok"],
        "config_file": str(cfg.file),
        "logs": log_source,
    }
    manifest = _manifest(redactor.value(about), view, data)
    write_tar(out, [("manifest.json", _dumps(manifest).encode()), *data], at)
    return out


def _period(req: Request, at: datetime) -> tuple[datetime | None, datetime]:
    """``--since`` and ``--until`` as times (``since`` None with ``--ref``)."""
    if req.until is not None and req.since is None:
        raise BundleUsageError("--until needs --since (or use --ref for one transaction)")
    until = parse_time(req.until, "--until", at) if req.until else at
    since = parse_time(req.since, "--since", at) if req.since else None
    if req.ref is None and since is None:
        since = until - DEFAULT_WINDOW
    if since is not None and since >= until:
        raise BundleUsageError(f"--since {req.since} is not before --until {req.until or 'now'}")
    return since, until


def _manifest(
    about: dict[str, Any], view: SecretsView, members: Sequence[tuple[str, bytes]]
) -> dict[str, Any]:
    """``about`` (redacted already), the secrets file's key names (names only: never a
    value), and each member's size and SHA-256."""
    return {
        **about,
        "secrets_file": {
            "path": redact(str(view.path), view.literals),
            "readable": view.readable,
            "note": view.note,
            "keys": {name: "<redacted>" for name in view.names},
        },
        "files": [
            {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in members
        ],
    }


def write_tar(out: Path, members: Sequence[tuple[str, bytes]], at: datetime) -> None:
    """``out`` as a new ``.tar.gz`` of mode 0600 (never replacing a file); removed again if
    writing fails."""
    import tarfile

    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BundleError(f"{out} exists: remove it or choose another --out") from None
    except OSError as exc:
        raise BundleError(f"cannot create {out}: {exc.strerror}; choose another --out") from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o600, int(at.timestamp())
                tar.addfile(info, io.BytesIO(data))
    except BaseException as exc:  # no half-written bundle is left (^C included)
        with contextlib.suppress(OSError):
            out.unlink()
        if isinstance(exc, OSError):
            raise BundleError(
                f"cannot write {out}: {exc}; check the disk or another --out"
            ) from exc
        raise


# --- the command -------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``kiosk support-bundle``, for :func:`kiosk.cli.build_parser`."""
    p = sub.add_parser(
        "support-bundle",
        help="logs, config and journal extracts for support, secrets and codes removed",
        description="Write a .tar.gz for support: the journal's part for one transaction"
        " (--ref) or a period (--since/--until; default the last 24 hours), the config, the"
        " daemon's log and status, with every secret and customer code removed. Read-only."
        " Exit 0 written, 1 no journal or unknown REF, 2 a bad option or configuration.",
    )
    p.add_argument(
        "--config", help="TOML config (default $KIOSK_CONFIG, else /etc/kiosk/kiosk.toml)"
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--ref", help="one transaction's reference (as on its receipt)")
    what.add_argument(
        "--since", metavar="T", help="ISO 8601 time, UTC unless offset given, or an age (24h, 7d)"
    )
    p.add_argument("--until", metavar="T", help="end of the period (default now), with --since")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="where to write (default ./kiosk-support-<kiosk id>-<UTC time>.tar.gz; mode 600)",
    )
    p.set_defaults(fn=cmd_support_bundle)


def cmd_support_bundle(args: argparse.Namespace) -> int:
    from kiosk import config

    out = make_bundle(
        Request(
            config=config.resolve_path(args.config),
            ref=args.ref,
            since=args.since,
            until=args.until,
            out=Path(args.out) if args.out else None,
        )
    )
    print(f"{out}: support bundle written (secrets and codes removed); send it to support")
    return 0
