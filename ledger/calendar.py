"""Exchange calendar: monthly expiries, the contract traded on a date, its lot size and symbols."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from ledger.config import LedgerConfig
from ledger.domain import Contract, Instrument

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def is_trading_day(day: date, holidays: frozenset[date]) -> bool:
    """A weekday that is not one of the exchange's holidays."""
    return day.weekday() < 5 and day not in holidays


def previous_trading_day(day: date, holidays: frozenset[date]) -> date:
    """``day`` itself if it is a trading day, else the closest trading day before it."""
    while not is_trading_day(day, holidays):
        day -= timedelta(days=1)
    return day


def _weekday_in_force(instrument: Instrument, month_start: date) -> int:
    weekday = instrument.expiry_weekdays[0].value
    for entry in instrument.expiry_weekdays:
        if entry.effective <= month_start:
            weekday = entry.value
    return weekday


def monthly_expiry(instrument: Instrument, year: int, month: int,
                   holidays: frozenset[date]) -> date:
    """Expiry day of the instrument's contract for ``year``-``month``."""
    if instrument.expiry_day_of_month is not None:
        nominal = date(year, month, instrument.expiry_day_of_month)
    else:
        weekday = _weekday_in_force(instrument, date(year, month, 1))
        next_month = date(year + month // 12, month % 12 + 1, 1)
        last = next_month - timedelta(days=1)
        nominal = last - timedelta(days=(last.weekday() - weekday) % 7)
    return previous_trading_day(nominal, holidays)


def exchange_date(at: datetime, config: LedgerConfig) -> date:
    """The exchange's calendar date at the instant ``at``."""
    return at.astimezone(ZoneInfo(config.exchange_timezone)).date()


def current_expiry(instrument: Instrument, on: date, holidays: frozenset[date]) -> date:
    """The nearest monthly expiry on or after ``on``: the current monthly contract."""
    year, month = on.year, on.month
    for _ in range(3):
        expiry = monthly_expiry(instrument, year, month, holidays)
        if expiry >= on:
            return expiry
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    raise AssertionError(f"no expiry within three months of {on}")  # pragma: no cover


def trading_days_left(on: date, expiry: date, holidays: frozenset[date], cap: int) -> int:
    """Trading days after ``on`` up to and including ``expiry``: 0 on the expiry day itself.

    Counting stops once it passes ``cap`` (the roll window), so a far expiry costs no more
    than a near one. The rollover job counts a position's window the same way.
    """
    left, day = 0, on
    while day < expiry and left <= cap:
        day += timedelta(days=1)
        if is_trading_day(day, holidays):
            left += 1
    return left


def _symbol_date(expiry: date) -> str:
    # OpenAlgo's common symbol format: DDMMMYY, e.g. 30DEC25.
    return f"{expiry.day:02d}{MONTHS[expiry.month - 1]}{expiry.year % 100:02d}"


def atm_strike(price: Decimal, step: int) -> int:
    """Price rounded to the nearest multiple of ``step`` (a half goes up)."""
    return int((price / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)) * step


def rollover_strike(price: Decimal, step: int) -> int:
    """Nearest multiple of ``step``; a tie goes to the multiple of twice the step."""
    lower = int(price // step) * step
    upper = lower + step
    if price - lower != upper - price:
        return lower if price - lower < upper - price else upper
    return lower if lower % (2 * step) == 0 else upper


def next_contract(instrument: Instrument, after_expiry: date, price: Decimal,
                  config: LedgerConfig) -> Contract:
    """The contract a roll moves into: the first monthly expiry after ``after_expiry``."""
    holidays = config.holidays.get(instrument.exchange, frozenset())
    expiry = current_expiry(instrument, after_expiry + timedelta(days=1), holidays)
    step = instrument.rollover_strike_step or instrument.strike_step
    strike = rollover_strike(price, step) if step else None
    return _contract(instrument, expiry, strike)


def _contract(instrument: Instrument, expiry: date, strike: int | None) -> Contract:
    lot_size = instrument.lot_size_for(expiry)
    root, ymd = instrument.symbol_root, _symbol_date(expiry)
    ce = pe = fut = None
    if instrument.product == "synthetic_future":
        ce, pe = f"{root}{ymd}{strike}CE", f"{root}{ymd}{strike}PE"
    else:
        strike = None
        fut = f"{root}{ymd}FUT"
    return Contract(
        instrument=instrument.name,
        expiry=expiry,
        lot_size=lot_size,
        point_value=instrument.point_value_for(lot_size),
        margin_per_lot=instrument.margin_per_lot,
        strike=strike,
        ce_symbol=ce,
        pe_symbol=pe,
        futures_symbol=fut,
    )


def contract_for(
    instrument: Instrument, at: datetime, price: Decimal, config: LedgerConfig
) -> Contract:
    """The contract an entry at ``at`` and ``price`` trades: the current monthly one, or the
    next when the current one expires within the instrument's roll window.

    Inside the window (``roll_days_before_expiry`` trading days or fewer left, counted by
    ``trading_days_left`` with the exchange's holidays) the rollover would move the position
    to the next contract the moment it opened: so the entry is booked there at once.
    """
    holidays = config.holidays.get(instrument.exchange, frozenset())
    on = exchange_date(at, config)
    expiry = current_expiry(instrument, on, holidays)
    window = instrument.roll_days_before_expiry
    if trading_days_left(on, expiry, holidays, window) <= window:
        expiry = current_expiry(instrument, expiry + timedelta(days=1), holidays)
    strike = atm_strike(price, instrument.strike_step) if instrument.strike_step else None
    return _contract(instrument, expiry, strike)
