"""Tom Basso's position sizing: pure Decimal arithmetic, no state, no I/O.

Lots are floored only after full-precision arithmetic. Ties in the limiter go to the first
candidate in the documented order (risk, volatility, margin; A, B, C for pyramids).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

HUNDRED = Decimal(100)
RATIO_PLACES = Decimal("0.0001")  # recorded Lot-R/V/M and A/B/C: informational precision


def floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def percent(part: Decimal, whole: Decimal) -> Decimal:
    """``part`` as a percentage of ``whole`` (whole > 0)."""
    return part * HUNDRED / whole


@dataclass(frozen=True)
class Sizing:
    """How many lots, which limiter bound it, and each candidate (in limiter order)."""

    lots: int
    limiter: str
    candidates: dict[str, Decimal]

    def recorded(self) -> dict[str, Decimal]:
        return {k: v.quantize(RATIO_PLACES) for k, v in self.candidates.items()}


def _smallest(candidates: dict[str, Decimal]) -> Sizing:
    limiter = min(candidates, key=lambda name: candidates[name])  # first wins a tie
    return Sizing(lots=max(0, floor(candidates[limiter])), limiter=limiter, candidates=candidates)


def size_base_entry(
    *,
    equity: Decimal,
    available_margin: Decimal,
    price: Decimal,
    signal_stop: Decimal,
    atr: Decimal,
    er: Decimal,
    point_value: Decimal,
    margin_per_lot: Decimal,
    initial_risk_percent: Decimal,
    initial_vol_percent: Decimal,
) -> Sizing:
    """lots = floor(min(Lot-R, Lot-V, Lot-M))."""
    # Multiply before dividing: one rounding step, so exact ratios stay exact.
    lot_r = equity * initial_risk_percent * er / (HUNDRED * (price - signal_stop) * point_value)
    lot_v = equity * initial_vol_percent / (HUNDRED * atr * point_value)
    lot_m = available_margin / margin_per_lot
    return _smallest({"risk": lot_r, "volatility": lot_v, "margin": lot_m})


def size_pyramid(
    *,
    available_margin: Decimal,
    margin_per_lot: Decimal,
    base_lots: int,
    base_fraction: Decimal,
    instrument_unrealized: Decimal,
    base_risk: Decimal,
    profit_fraction: Decimal,
    price: Decimal,
    signal_stop: Decimal,
    point_value: Decimal,
) -> Sizing:
    """size = floor(min(A, B, C)): margin, 50% of the base, half the profit beyond base risk."""
    a = available_margin / margin_per_lot
    b = Decimal(floor(base_lots * base_fraction))
    c = Decimal(floor(profit_fraction * (instrument_unrealized - base_risk)
                      / ((price - signal_stop) * point_value)))
    return _smallest({"margin": a, "50%_rule": b, "risk_budget": c})


def trail(highest_close: Decimal, current_stop: Decimal, close: Decimal, atr: Decimal,
          trailing_atr_multiple: Decimal) -> tuple[Decimal, Decimal]:
    """(new highest close, new stop): the stop is the higher of itself and the candidate."""
    highest = max(highest_close, close)
    candidate = highest - trailing_atr_multiple * atr
    return highest, max(current_stop, candidate)


def peel_off_lots(*, amount: Decimal, limit: Decimal, per_lot: Decimal) -> int:
    """Lots to shed so that ``amount`` falls within ``limit``: ceil(excess / per-lot amount)."""
    if amount <= limit or per_lot <= 0:
        return 0
    return -floor(-(amount - limit) / per_lot)
