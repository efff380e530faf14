"""The config file and the secrets file as the bundle shows them: the config with the values
of secret-named keys replaced, the secrets file's key names only (its values, to remove them
wherever they appear, go to the :class:`~kiosk.redact.Redactor`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.redact import QUOTED, Redactor, literals_of

# --- the secrets file: its values (to remove them) and its key names (to list them) ---------


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
    code = re.sub(QUOTED, '""', text).split("#", 1)[0]
    return code.count("[") - code.count("]")
