"""The trading parameters decisions are made with: instruments and portfolios.

Plain frozen values. Where they come from (built-in defaults, a TOML file) is
``ledger.config``'s business; the domain is handed them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

Product = Literal["synthetic_future", "future"]
EquityMode = Literal["closed", "open", "blended"]
# What a bar whose close is at or below a position's stop does: record the breach (``flag``),
# or record it and close the position at the bar's close (``exit``).
StopPolicy = Literal["flag", "exit"]
STOP_POLICIES: tuple[StopPolicy, ...] = ("flag", "exit")


@dataclass(frozen=True)
class Dated:
    """A value in force from ``effective`` (inclusive) until the next entry."""

    effective: date
    value: int


@dataclass(frozen=True)
class Instrument:
    name: str
    exchange: str
    product: Product
    symbol_root: str
    lot_sizes: tuple[Dated, ...]  # keyed by the contract's expiry date
    point_value: Decimal | None  # None: equals the lot size in force (Bank Nifty)
    margin_per_lot: Decimal
    initial_risk_percent: Decimal
    ongoing_risk_percent: Decimal
    initial_vol_percent: Decimal
    ongoing_vol_percent: Decimal
    initial_atr_multiple: Decimal
    trailing_atr_multiple: Decimal
    max_pyramids: int
    roll_days_before_expiry: int
    # Monthly expiry: either the last <weekday> of the month (weekday effective-dated by the
    # expiry month), or a fixed day of the contract month. Moved back over holidays/weekends.
    expiry_weekdays: tuple[Dated, ...] = ()
    expiry_day_of_month: int | None = None
    strike_step: int | None = None
    rollover_strike_step: int | None = None
    stop_policy: StopPolicy = "flag"

    def lot_size_for(self, expiry: date) -> int:
        """The lot size in force for a contract expiring on ``expiry``."""
        return in_force(self.lot_sizes, expiry)

    def point_value_for(self, lot_size: int) -> Decimal:
        """Rupees per one point of price per lot."""
        return Decimal(lot_size) if self.point_value is None else self.point_value


@dataclass(frozen=True)
class PortfolioParams:
    name: str
    initial_capital: Decimal = Decimal("5000000")
    equity_mode: EquityMode = "blended"
    max_risk_percent: Decimal = Decimal("15")
    max_vol_percent: Decimal = Decimal("5")
    max_margin_percent: Decimal = Decimal("60")
    pyramid_max_risk_percent: Decimal = Decimal("12")
    pyramid_max_vol_percent: Decimal = Decimal("4")
    pyramid_spacing_atr: Decimal = Decimal("0.5")
    pyramid_base_fraction: Decimal = Decimal("0.5")  # rule B: base lots x 0.5
    pyramid_profit_fraction: Decimal = Decimal("0.5")  # rule C: 0.5 x (unrealized - base risk)
    peel_off: bool = False


def in_force(schedule: tuple[Dated, ...], on: date) -> int:
    chosen = schedule[0].value
    for entry in schedule:
        if entry.effective <= on:
            chosen = entry.value
    return chosen
