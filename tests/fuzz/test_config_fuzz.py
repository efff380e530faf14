"""The config reader fuzzed: whatever the TOML, ``kiosk.config.load`` returns a Config (finite
floats only, URLs https or loopback) or raises ConfigError; ``load_secrets`` likewise.

The short form for CI (200 documents a test); ``kiosk bench fuzz config --seconds N`` is the
long form (:func:`kiosk.fuzz.config.fuzz_config`).
"""

from __future__ import annotations

import datetime as dt
import random
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk import config
from kiosk.errors import ConfigError
from kiosk.fuzz import config as fuzz

SEEDS = fuzz.seeds()
SHORT = settings(max_examples=200, deadline=None)
TABLES = sorted(at for at in SEEDS.keys if at)
NAMES = sorted({k for names in SEEDS.keys.values() for k in names})


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")  # module-scoped: hypothesis runs many examples


# -- TOML of every type -------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=16)
offsets = st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
scalars = st.one_of(
    st.sampled_from(fuzz.STRINGS) | texts,
    st.sampled_from(fuzz.INTS) | st.integers(),
    st.sampled_from(fuzz.FLOATS) | st.floats(),  # inf, -inf and nan included
    st.booleans(),
    st.datetimes(timezones=offsets),  # offset date-time
    st.datetimes(),  # local date-time
    st.dates(),
    st.times(),
)
keys = st.sampled_from(NAMES) | st.sampled_from(fuzz.ODD_KEYS) | texts
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


def _table(doc: dict[str, Any], at: tuple[str, ...]) -> dict[str, Any]:
    for name in at:
        if not isinstance(doc.get(name), dict):
            doc[name] = {}
        doc = doc[name]
    return doc


@st.composite
def schema_docs(draw: st.DrawFn) -> dict[str, Any]:
    """The reader's own tables with its own key names (or any), holding any values."""
    doc: dict[str, Any] = {}
    for at in draw(st.lists(st.sampled_from(TABLES), max_size=6, unique=True)):
        table = _table(doc, at)
        names = SEEDS.keys[at]  # empty for a table of free names ([tls.pins])
        known = st.sampled_from(names) | keys if names else keys
        for k in draw(st.lists(known, max_size=6, unique=True)):
            table[k] = draw(values)
    return doc


any_docs = st.recursive(
    st.dictionaries(keys, values, max_size=4),
    lambda inner: st.dictionaries(keys, inner | values, max_size=4),
    max_leaves=6,
)


def _leaves(doc: dict[str, Any], at: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for k, v in doc.items():
        yield (*at, k)
        if isinstance(v, dict):
            yield from _leaves(v, (*at, k))


@st.composite
def mutated(draw: st.DrawFn, example: dict[str, Any]) -> dict[str, Any]:
    """``example`` with a few keys set to any value, removed, renamed or added."""
    doc = tomllib.loads(fuzz.dumps(example))  # a fresh copy
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(sorted(_leaves(doc)) or [("kiosk",)]))
        table = _table(doc, path[:-1])
        op = draw(st.sampled_from(("set", "delete", "rename", "add")))
        if op == "set":
            table[path[-1]] = draw(values)
        elif op == "delete":
            table.pop(path[-1], None)
        elif op == "rename" and path[-1] in table:
            table[path[-1] + draw(st.sampled_from(("x", "_", "S")))] = table.pop(path[-1])
        else:
            table[draw(keys)] = draw(values)
    return doc


# -- the property -------------------------------------------------------------------------------


@SHORT
@given(schema_docs())
def test_the_readers_tables_with_any_values(where: Path, doc: dict[str, Any]) -> None:
    assert fuzz.check("config", fuzz.dumps(doc).encode(), where) in ("loaded", "refused")


@SHORT
@given(any_docs)
def test_any_tables_keys_and_values(where: Path, doc: dict[str, Any]) -> None:
    assert fuzz.check("config", fuzz.dumps(doc).encode(), where) in ("loaded", "refused")


@SHORT
@given(mutated(SEEDS.config))
def test_the_example_mutated(where: Path, doc: dict[str, Any]) -> None:
    assert fuzz.check("config", fuzz.dumps(doc).encode(), where) in ("loaded", "refused")


@SHORT
@given(st.randoms(use_true_random=False), st.integers(1, 4))
def test_the_example_text_edited(where: Path, rng: Any, edits: int) -> None:
    data = fuzz.mutate_text(rng, SEEDS.config_text, edits)
    assert fuzz.check("config", data, where) in ("loaded", "refused")


@SHORT
@given(mutated(SEEDS.secrets))
def test_the_secrets_example_mutated(where: Path, doc: dict[str, Any]) -> None:
    assert fuzz.check("secrets", fuzz.dumps(doc).encode(), where) in ("loaded", "refused")


def test_the_example_loads_and_its_dump_too(where: Path) -> None:
    """The seeds are sound: the example loads as it is and as written back by dumps."""
    assert fuzz.check("config", SEEDS.config_text.encode(), where) == "loaded"
    assert fuzz.check("config", fuzz.dumps(SEEDS.config).encode(), where) == "loaded"


_NUMBER = re.compile(r"(?m)^(\w+)(\s*=\s*)(-?[0-9][0-9_.]*)")


@pytest.mark.parametrize("special", ["inf", "-inf", "nan", "1" + "0" * 400])
def test_every_number_of_the_example_made_infinite_is_refused(where: Path, special: str) -> None:
    """Each number in the example in turn (every float and integer key the reader has, of every
    section) made inf, -inf, nan or 10**400: a ConfigError naming that key."""
    lines = SEEDS.config_text.splitlines(keepends=True)
    numbers = [(i, m) for i, line in enumerate(lines) if (m := _NUMBER.match(line))]
    assert len(numbers) >= 30
    path = where / "kiosk.toml"
    for i, m in numbers:
        path.write_text("".join([*lines[:i], m[1] + m[2] + special + "\n", *lines[i + 1 :]]))
        with pytest.raises(ConfigError) as err:
            config.load(path)
        assert err.value.key.split(".")[-1] == m[1], (m[0], err.value)


def test_the_long_form_runs_and_says_what_it_did() -> None:
    said: list[str] = []
    assert fuzz.fuzz_config(1.0, 7, out=said.append) == 0
    assert said[-1].startswith("fuzz config: ") and "0 failures" in said[-1]
    assert fuzz.document(random.Random(3), SEEDS) == fuzz.document(random.Random(3), SEEDS)
