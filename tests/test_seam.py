"""The provider seam, measured: the kiosk's generic modules name no provider.

A provider is one package under ``kiosk/providers/``, one under ``kiosk/sandbox/``, its journey
modules under ``kiosk/flows/`` and one line in the registry. The modules below (the daemon,
the config reader, money, the journal, the router, the outbox, the generic flows) are checked
in their code: identifiers and string constants, docstrings and comments aside (they may
give a provider as an example).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kiosk.providers.registry import NAMES, journey_modules, providers

ROOT = Path(__file__).resolve().parents[1] / "kiosk"
GENERIC = (
    "daemon.py",
    "config.py",
    "money.py",
    "journal.py",
    "journeys.py",
    "router.py",
    "outbox.py",
    "reconcile.py",
    "provider_check.py",
    "reachability.py",
    "flows/context.py",
    "flows/steps.py",
    "flows/cashout.py",
    "flows/recovery.py",
    "flows/device_events.py",
    "flows/amount.py",
)
NAMED = re.compile("|".join((*NAMES, "rapyd", "cashii")), re.IGNORECASE)


def _code_words(tree: ast.AST) -> list[str]:
    docstrings = {  # module, class, function and attribute docstrings: bare strings
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    words: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            words += [a.name for a in node.names] + [getattr(node, "module", None) or ""]
    return words


@pytest.mark.parametrize("module", GENERIC)
def test_a_generic_module_names_no_provider(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    named = sorted({w for w in _code_words(tree) if NAMED.search(w)})
    assert not named, f"kiosk/{module} names a provider: {named}"


def test_every_provider_declares_what_the_seam_needs() -> None:
    for name, p in providers().items():
        assert p.name == name
        for what in ("section", "connect", "check", "codes", "sandbox"):
            assert p.resolve(what) is not None, (name, what)
        # a provider whose API can read a transaction back declares it (Rapyd's POS cannot)
        assert (p.resolve("reconcile") is None) == (name == "rapyd"), name
    for module in journey_modules():
        for attr in ("JOURNEY", "STARTS", "LOOK", "run", "recover", "operations"):
            assert hasattr(module, attr), (module.__name__, attr)
        assert module.JOURNEY.provider in providers()
