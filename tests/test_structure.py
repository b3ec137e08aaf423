"""The layout's rules, checked on the source: what each package may import, and that every
event the log can hold has a projection handler (or is named as changing no table).

Read with docs/ARCHITECTURE.md ("What each package may import").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from eventsourcing.utils import get_topic

from ledger.domain import ORDER_EVENTS, TRADING_EVENTS, event_classes
from ledger.instances import Instance
from projections.projector import _HANDLERS, EVENTS, IGNORED, Projector

ROOT = Path(__file__).resolve().parent.parent
OURS = ("ledger", "projections", "api", "service", "migrations", "coordination", "brokers")

# package -> the packages of ours it may import (itself always)
MAY_IMPORT = {
    "ledger": set(),
    "migrations": set(),
    "coordination": set(),
    "brokers": {"ledger"},
    "projections": {"ledger"},
    "api": {"ledger", "projections", "migrations", "coordination"},
    "service": {"ledger", "projections", "api", "migrations", "coordination", "brokers"},
}
# The trading domain imports only itself and the pure sizing rules: no configuration files,
# no storage, no application.
DOMAIN_MAY_IMPORT = {"ledger.domain", "ledger.sizing"}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module name ``path`` imports, at any depth (functions and TYPE_CHECKING too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from ledger import sizing" imports ledger.sizing (a module or a name in it)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_imports_only_the_layers_beneath_it(package):
    allowed = MAY_IMPORT[package] | {package}
    offences = [(path.relative_to(ROOT).as_posix(), name)
                for path in modules(package) for name in imported(path)
                if name.split(".")[0] in OURS and name.split(".")[0] not in allowed]
    assert offences == []


def test_the_domain_imports_nothing_but_itself_and_the_sizing_rules():
    offences = [(path.relative_to(ROOT).as_posix(), name)
                for path in modules("ledger/domain") for name in imported(path)
                if name.split(".")[0] in OURS
                and not any(name == d or name.startswith(f"{d}.") for d in DOMAIN_MAY_IMPORT)]
    assert offences == []


def test_every_event_class_has_a_projection_handler_or_is_named_as_ignored():
    catalogue = set(TRADING_EVENTS) | set(ORDER_EVENTS) | set(event_classes(Instance))
    assert set(EVENTS) == catalogue
    unhandled = _HANDLERS.dispatch(object)
    assert {cls for cls in catalogue if _HANDLERS.dispatch(cls) is unhandled} == set()
    ignored = {cls for cls in catalogue if _HANDLERS.dispatch(cls) is Projector._ignored}
    assert ignored == set(IGNORED)


def test_stored_topics_do_not_follow_the_modules():
    """Classes may move between modules: every stored topic is written out explicitly."""
    for cls in (*TRADING_EVENTS, *ORDER_EVENTS, *event_classes(Instance)):
        assert get_topic(cls) == f"ledger.domain:{cls.__qualname__}", cls
