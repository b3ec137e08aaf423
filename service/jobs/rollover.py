"""The rollover job: move each open position to the next monthly contract before it expires.

A position is due when its contract expires within its instrument's
``roll_days_before_expiry`` *trading* days of today's exchange date (trading days: weekdays
that are not the exchange's configured holidays, counted after today up to and including the
expiry day, so on the expiry day itself 0 are left). It is rolled on a trading day, at or
after ``roll_at`` (09:20 exchange time by default, ``LEDGER_ROLL_AT``).

The decision reads the books from the log, never from the projection tables: every configured
portfolio's holdings (``Ledger.portfolio``), then each position (``Ledger.position``).

Prices: both legs at the instrument's latest mark (the portfolio's ``marks``). The ledger
keeps one price per instrument, so until a broker reports the fills of the two legs the roll
closes and opens at the same price (with a paper broker the spread is zero). A position whose
instrument has no mark is skipped and reported.

A crash anywhere resumes without rolling twice: ``Ledger.roll`` is idempotent per
(position, from_expiry) (a rolled position no longer trades ``from_expiry``, and its stream
version refuses a concurrent second roll), and every run scans afresh. A contract that has
already expired is not rolled (the exchange settled it at expiry; see docs/RULES.md): it is
reported, and logged once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from coordination.coordinator import Coordinator
from coordination.terms import Fenced
from ledger.application import Ledger
from ledger.calendar import is_trading_day, trading_days_left
from ledger.config import LedgerConfig
from service.jobs.runner import Clock, Deadline, JobReport, leading

log = logging.getLogger("ledger.jobs")

ROLL_AT_DEFAULT = time(9, 20)  # exchange time: after the opening auction has settled
ROLLOVER_INTERVAL_S = 30  # how often the leader scans for due rolls
ROLLOVER_TIMEOUT_MS = 500  # one run's budget: rolls left over run at the next tick


def parse_roll_at(text: str) -> time:
    """``HH:MM`` (24 h, exchange time) -> a time; ValueError naming the problem."""
    hours, sep, minutes = text.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
            and len(hours) in (1, 2) and int(hours) < 24 and int(minutes) < 60):
        raise ValueError(f"expected HH:MM (24-hour, exchange time), got {text!r}")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class DueRoll:
    """A position to roll now, and the price both legs take."""

    position_id: str
    portfolio: str
    instrument: str
    from_expiry: str
    trading_days_left: int
    price: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {"position_id": self.position_id, "portfolio": self.portfolio,
                "instrument": self.instrument, "from_expiry": self.from_expiry,
                "trading_days_left": self.trading_days_left, "price": self.price}


class RolloverJob:
    """Rolls due positions; run by the leader every ``interval_s`` (and by `ledger roll-due`)."""

    name = "rollover"

    def __init__(self, ledger: Ledger, config: LedgerConfig, clock: Clock, *,
                 coordinator: Coordinator | None = None, roll_at: time = ROLL_AT_DEFAULT,
                 interval_s: float = ROLLOVER_INTERVAL_S,
                 timeout_ms: int = ROLLOVER_TIMEOUT_MS) -> None:
        self.ledger = ledger
        self.config = config
        self.clock = clock
        self.coordinator = coordinator  # None: unfenced (the operator's explicit command)
        self.roll_at = roll_at
        self.interval_s = interval_s
        self.timeout_ms = timeout_ms
        self.zone = ZoneInfo(config.exchange_timezone)
        self._warned: set[tuple[str, str, str]] = set()  # (position, expiry, reason) logged

    # -- the scan ----------------------------------------------------------------------------

    def scan(self, now: datetime) -> tuple[list[DueRoll], list[dict[str, Any]], int]:
        """(the positions to roll at ``now``, those in their window but held back and why,
        the number of open positions scanned). Reads the log only."""
        local = now.astimezone(self.zone)
        today = local.date()
        due: list[DueRoll] = []
        held: list[dict[str, Any]] = []
        scanned = 0
        for name in sorted(self.config.portfolios):
            portfolio = self.ledger.portfolio(name)
            for position_id in sorted(portfolio.holdings):
                position = self.ledger.position(position_id)
                if not position.is_open:
                    continue
                scanned += 1
                instrument = self.config.instrument(position.instrument)
                if instrument is None:
                    held.append(self._held(position_id, position.expiry,
                                           f"instrument {position.instrument} is not "
                                           f"configured"))
                    continue
                holidays = self.config.holidays.get(instrument.exchange, frozenset())
                expiry = date.fromisoformat(position.expiry)
                window = instrument.roll_days_before_expiry
                if expiry < today:
                    held.append(self._held(position_id, position.expiry,
                                           f"its contract expired on {expiry} before it was "
                                           f"rolled: not rolled automatically"))
                    continue
                left = trading_days_left(today, expiry, holidays, window)
                if left > window:
                    continue  # not in its window yet
                mark = portfolio.marks.get(position.instrument)
                if not is_trading_day(today, holidays):
                    held.append(self._held(position_id, position.expiry,
                                           f"{today} is not a trading day on "
                                           f"{instrument.exchange}", warn=False,
                                           trading_days_left=left))
                    continue
                if local.time() < self.roll_at:
                    held.append(self._held(position_id, position.expiry,
                                           f"rolls at or after {self.roll_at:%H:%M} "
                                           f"{self.config.exchange_timezone}", warn=False,
                                           trading_days_left=left))
                    continue
                if mark is None:
                    held.append(self._held(position_id, position.expiry,
                                           f"no mark for {position.instrument}: no price to "
                                           f"roll at", trading_days_left=left))
                    continue
                due.append(DueRoll(position_id, name, position.instrument, position.expiry,
                                   left, mark.price))
        return due, held, scanned

    def _held(self, position_id: str, expiry: str, reason: str, *, warn: bool = True,
              **extra: Any) -> dict[str, Any]:
        """A position held back; logged once per position, contract and reason when it needs
        an operator (``warn``), not at every scan."""
        key = (position_id, expiry, reason)
        if warn and key not in self._warned:
            self._warned.add(key)
            log.warning("rollover: %s (contract %s) skipped: %s", position_id, expiry, reason)
        return {"position_id": position_id, "expiry": expiry, "reason": reason, **extra}

    # -- rolling -----------------------------------------------------------------------------

    def run(self, epoch: int | None) -> JobReport:
        """Roll what is due now, fencing each roll with ``epoch``; stop at the deadline."""
        return self.roll_due(epoch=epoch, deadline=Deadline(self.timeout_ms))

    def roll_due(self, *, epoch: int | None = None, dry_run: bool = False,
                 deadline: Deadline | None = None) -> JobReport:
        """One scan at the clock's time, then each due roll (none with ``dry_run``)."""
        now = self.clock.now()
        due, held, scanned = self.scan(now)
        report = JobReport(skipped=held, facts={"at": now, "scanned": scanned})
        if dry_run:
            report.facts["due"] = [d.as_dict() for d in due]
            return report
        for item in due:
            if (deadline is not None and deadline.passed) or not leading(self.coordinator,
                                                                          epoch):
                report.more = True
                break
            try:
                rolled = self.ledger.roll(item.position_id, item.from_expiry, item.price,
                                          item.price, now, fence=self._fence(epoch))
            except Fenced:
                raise  # a newer term exists: stop at once
            except Exception as e:
                log.exception("rollover of %s from %s failed", item.position_id,
                              item.from_expiry)
                report.errors.append({**item.as_dict(), "error": f"{type(e).__name__}: {e}"})
                continue
            if rolled.rollover_timestamp != now:  # returned as it was: rolled meanwhile
                report.skipped.append({"position_id": item.position_id,
                                       "expiry": item.from_expiry,
                                       "reason": f"already rolled to {rolled.expiry}"})
                continue
            log.info("rolled %s from %s to %s at %s", item.position_id, item.from_expiry,
                     rolled.expiry, item.price)
            report.done.append({**item.as_dict(), "to_expiry": rolled.expiry,
                                "rollover_count": rolled.rollover_count,
                                "rollover_pnl_total": rolled.rollover_pnl})
        return report

    def _fence(self, epoch: int | None) -> Any:
        coordinator = self.coordinator
        if coordinator is None:
            return None
        return lambda cursor: coordinator.fenced(cursor, epoch=epoch)
