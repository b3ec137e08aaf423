"""What a starting instance does before it calls itself ready (crash recovery is replay).

No state lives outside the log, so recovering is reading it: check the schema, load each
portfolio (snapshot + the events after it: the aggregate cache is warm for the first
decision), and compare what the portfolio tables say with what the log gives, within a time
bound. Locks need no sweeping: a crashed instance's leader term and Redis lease run out by
themselves (``lease_ttl_ms``), its signal locks too (``signal_lock_ttl_ms``), and its
heartbeat row reads "crashed" once stale. Differences are reported (``/ready``, the log), not
repaired here: the projection runner repairs by applying the log, ``ledger verify`` and
``ledger rebuild-projections`` are the operator's tools.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import PersistenceError

import migrations
from ledger import wire
from ledger.application import Ledger, StoreNotReady
from projections.read_model import ProjectionReads
from projections.runner import tracked_position

log = logging.getLogger("ledger")

RECOVERY_CHECK_S_MAX = 5.0  # the validation stops here; a start is never held up longer


@dataclass
class Recovery:
    """What the start found (shown by /ready)."""

    store: str = "unreachable"  # ready, unreachable, or needs_migration
    portfolios_loaded: int = 0
    portfolios_checked: int = 0
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "portfolios_loaded": self.portfolios_loaded,
                "portfolios_checked": self.portfolios_checked,
                "differences": self.differences, "seconds": round(self.seconds, 3)}


def recover(ledger: Ledger, *, time_s_max: float = RECOVERY_CHECK_S_MAX) -> Recovery:
    """Check, load and validate; never raises for the store's sake (serving answers 503
    until it is back)."""
    started = time.monotonic()
    report = Recovery()
    try:
        ledger.check_ready()
        if missing := migrations.missing(ledger):
            report.store = "needs_migration"
            log.error("the store lacks %s: run `ledger migrate`", ", ".join(missing))
            return report
        report.store = "ready"
        reads = ProjectionReads(ledger)
        position = tracked_position(ledger)
        for name in sorted(ledger.config.portfolios):
            if time.monotonic() - started > time_s_max:
                log.warning("recovery: validation stopped after %.1f s", time_s_max)
                break
            replayed = ledger.portfolio_summary(name)  # warms the cache: snapshot + tail
            report.portfolios_loaded += 1
            if replayed["version"] == 0:
                continue  # never used: nothing to compare
            stored = reads.portfolio(name)
            if stored["version"] != replayed["version"]:
                continue  # the tables are behind the log (the runner catches up): no verdict
            report.portfolios_checked += 1
            if wire.dumps(stored) != wire.dumps(replayed):
                report.differences.append(
                    f"portfolio {name}: the tables at log position {position} differ from "
                    f"the log; run `ledger verify`")
    except (StoreNotReady, PersistenceError) as e:
        log.warning("recovery: the store did not answer (%s); serving 503 until it does",
                    type(e).__name__)
    report.seconds = time.monotonic() - started
    for difference in report.differences:
        log.warning("recovery: %s", difference)
    log.info("recovery: store %s, %d portfolios loaded, %d checked in %.3f s",
             report.store, report.portfolios_loaded, report.portfolios_checked, report.seconds)
    return report
