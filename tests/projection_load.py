"""A realistic signal load for the projection robustness tests, and what it must leave behind.

``Trader`` decides a stream of alerts in-process with ``Ledger.decide``: entries, pyramids,
marks that trail stops, exits, redeliveries of earlier alerts and rolls, over several
portfolios and both instruments. It counts what it delivered, so a test can compare the
tables with what was actually decided (``Tally``), independently of the projector.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ledger.application import Ledger
from ledger.config import LedgerConfig, load_config
from tests.alerts import Alerts

PORTFOLIOS = ("default", "alpha", "beta")
PRICES = {"BANK_NIFTY": 52000, "GOLD_MINI": 72000}
ATRS = {"BANK_NIFTY": 100, "GOLD_MINI": 300}


def write_config(directory: Path, batch_events: int, **limits: int) -> Path:
    """A LEDGER_CONFIG TOML: small projection batches and the test's portfolios."""
    lines = ["[limits]", f"projection_batch_events = {batch_events}",
             *(f"{k} = {v}" for k, v in limits.items()), ""]
    for name in PORTFOLIOS[1:]:
        lines += [f"[portfolios.{name}]", 'initial_capital = "10000000"', ""]
    path = directory / f"ledger-{batch_events}.toml"
    path.write_text("\n".join(lines))
    return path


def config_for(path: Path) -> LedgerConfig:
    return load_config(path)


@dataclass
class Tally:
    """What was delivered: the independent expectation for signal_log and statistics."""

    fingerprints: set[str] = field(default_factory=set)
    deliveries: dict[str, int] = field(default_factory=dict)  # fingerprint -> deliveries
    duplicates: int = 0
    rolls: int = 0

    @property
    def total_deliveries(self) -> int:
        return sum(self.deliveries.values())

    def merge(self, other: Tally) -> None:
        self.fingerprints |= other.fingerprints
        for fp, n in other.deliveries.items():
            self.deliveries[fp] = self.deliveries.get(fp, 0) + n
        self.duplicates += other.duplicates
        self.rolls += other.rolls


class Trader:
    """Decides a random but realistic alert stream on ``ledger`` (seeded: reproducible)."""

    def __init__(self, ledger: Ledger, seed: int, start: str = "2025-11-28T03:45:00Z") -> None:
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.alerts = Alerts(start=start, step_s=20)
        self.prices = dict(PRICES)
        self.sent: list[tuple[dict[str, Any], str]] = []
        self.tally = Tally()

    def _alert(self) -> tuple[dict[str, Any], str]:
        rng, a = self.rng, self.alerts
        portfolio = rng.choice(PORTFOLIOS)
        name = rng.choice(sorted(self.prices))
        p, atr = self.prices[name], ATRS[name]
        step = rng.random()
        if step < 0.12:
            return a.base(p, p - atr, atr, er="0.9", instrument=name), portfolio
        if step < 0.30:
            return a.pyramid(f"Long_{rng.randint(2, 4)}", p, p - atr, atr,
                             instrument=name), portfolio
        if step < 0.40:
            return a.exit(rng.choice(["Long_1", "Long_2", "Long_3", "ALL"]), p,
                          instrument=name), portfolio
        self.prices[name] = max(1000, p + rng.choice([-1, 1, 1, 2]) * atr // 2)
        return a.mark(self.prices[name], atr, instrument=name), portfolio

    def one(self) -> None:
        rng = self.rng
        if self.sent and rng.random() < 0.08:
            alert, portfolio = rng.choice(self.sent)  # a redelivery (TradingView retries)
        elif rng.random() < 0.01 and self._roll():
            return
        else:
            alert, portfolio = self._alert()
            self.sent.append((alert, portfolio))
        decision = self.ledger.decide(alert, portfolio)
        fp = decision.body["fingerprint"]
        self.tally.fingerprints.add(fp)
        self.tally.deliveries[fp] = self.tally.deliveries.get(fp, 0) + 1
        self.tally.duplicates += decision.duplicate

    def _roll(self) -> bool:
        portfolio = self.rng.choice(PORTFOLIOS)
        held = sorted(self.ledger.portfolio(portfolio).holdings)
        if not held:
            return False
        position = self.ledger.position(self.rng.choice(held))
        close = Decimal(self.prices[position.instrument])
        self.ledger.roll(position.position_id, position.expiry, close, close + 20,
                         self.alerts.now)
        self.tally.rolls += 1
        return True

    def run(self, count: int) -> Tally:
        for _ in range(count):
            self.one()
        return self.tally


def table_counts(ledger: Ledger) -> dict[str, Any]:
    """signal_log rows and deliveries, and the statistics' signal counters, as stored."""
    with ledger.transaction() as cursor:
        cursor.execute("SELECT COUNT(*) AS n, COALESCE(SUM(deliveries), 0) AS d FROM signal_log")
        rows, deliveries = _values(cursor.fetchone())
        cursor.execute("SELECT COALESCE(SUM(signals_decided), 0) AS a, "
                       "COALESCE(SUM(duplicate_deliveries), 0) AS b, "
                       "COALESCE(SUM(rollovers), 0) AS c "
                       "FROM trading_statistics")
        decided, duplicates, rollovers = _values(cursor.fetchone())
        cursor.execute("SELECT fingerprint, deliveries FROM signal_log")
        per_signal = {r[0]: int(r[1]) for r in map(_values, cursor.fetchall())}
    return {"rows": int(rows), "deliveries": int(deliveries), "decided": int(decided),
            "duplicates": int(duplicates), "rollovers": int(rollovers),
            "per_signal": per_signal}


def _values(row: Any) -> list[Any]:
    return list(row.values()) if isinstance(row, dict) else list(row)


def assert_tables_match(ledger: Ledger, tally: Tally) -> None:
    counts = table_counts(ledger)
    assert counts["rows"] == len(tally.fingerprints)
    assert counts["per_signal"] == tally.deliveries
    assert counts["deliveries"] == tally.total_deliveries
    assert counts["decided"] == len(tally.fingerprints)
    assert counts["duplicates"] == tally.duplicates
    assert counts["rollovers"] == tally.rolls
