"""Expiries, the contract in force on a signal's date, and its lot size (docs/RULES.md)."""

from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal as D

import pytest

from ledger.calendar import (
    atm_strike,
    contract_for,
    monthly_expiry,
    next_contract,
    rollover_strike,
)
from ledger.config import BANK_NIFTY, GOLD_MINI, default_config
from ledger.domain import Dated

CONFIG = default_config()
NONE = frozenset()


@pytest.mark.parametrize(("year", "month", "expected"), [
    (2025, 11, date(2025, 11, 25)),  # last Tuesday (since Sep 2025)
    (2025, 12, date(2025, 12, 30)),
    (2026, 1, date(2026, 1, 27)),
    (2025, 8, date(2025, 8, 28)),  # last Thursday before Sep 2025
    (2025, 7, date(2025, 7, 31)),
])
def test_bank_nifty_monthly_expiry(year, month, expected):
    assert monthly_expiry(BANK_NIFTY, year, month, NONE) == expected


def test_expiry_on_a_holiday_moves_to_the_previous_trading_day():
    assert monthly_expiry(BANK_NIFTY, 2025, 12, frozenset({date(2025, 12, 30)})) == date(
        2025, 12, 29)
    # Gold Mini: the 5th, back over a weekend (5 Jul 2025 is a Saturday).
    assert monthly_expiry(GOLD_MINI, 2025, 7, NONE) == date(2025, 7, 4)


@pytest.mark.parametrize(("at", "expiry", "lot_size"), [
    ("2024-10-10T05:00:00Z", date(2024, 10, 31), 15),
    ("2024-11-15T05:00:00Z", date(2024, 11, 28), 30),  # 30 from 20 Nov 2024
    ("2025-06-10T05:00:00Z", date(2025, 6, 26), 30),
    ("2025-07-10T05:00:00Z", date(2025, 7, 31), 35),  # 35 for expiries 31 Jul - Dec 2025
    ("2025-11-28T05:00:00Z", date(2025, 12, 30), 35),  # Nov expired on the 25th
    ("2025-11-25T05:00:00Z", date(2025, 12, 30), 35),  # expiry day: inside the roll window
    ("2026-01-10T05:00:00Z", date(2026, 1, 27), 30),  # 30 from Jan 2026
])
def test_bank_nifty_contract_and_lot_size_in_force(at, expiry, lot_size):
    c = contract_for(BANK_NIFTY, datetime.fromisoformat(at), D(52049), CONFIG)
    assert (c.expiry, c.lot_size, c.point_value) == (expiry, lot_size, D(lot_size))


def test_contract_date_is_the_exchange_date_not_utc():
    # 20:00 UTC on the 25th is 01:30 IST on the 26th: the November contract has expired.
    c = contract_for(BANK_NIFTY, datetime.fromisoformat("2025-11-25T20:00:00Z"), D(1), CONFIG)
    assert c.expiry == date(2025, 12, 30)


def test_synthetic_future_symbols_at_the_atm_strike():
    c = contract_for(BANK_NIFTY, datetime.fromisoformat("2025-11-28T05:00:00Z"), D(52049),
                     CONFIG)
    assert (c.strike, c.ce_symbol, c.pe_symbol) == (
        52000, "BANKNIFTY30DEC2552000CE", "BANKNIFTY30DEC2552000PE")
    assert c.futures_symbol is None and c.margin_per_lot == D(270000)


def test_gold_mini_future_symbol_and_point_value():
    c = contract_for(GOLD_MINI, datetime.fromisoformat("2025-12-06T05:00:00Z"), D(72000), CONFIG)
    assert (c.expiry, c.futures_symbol, c.lot_size, c.point_value, c.strike) == (
        date(2026, 1, 5), "GOLDM05JAN26FUT", 100, D(10), None)


def test_atm_strike_rounds_half_up():
    assert atm_strike(D(52049), 100) == 52000
    assert atm_strike(D(52050), 100) == 52100


def test_rollover_strike_prefers_multiples_of_1000_on_a_tie():
    assert rollover_strike(D(52700), 500) == 52500
    assert rollover_strike(D(52750), 500) == 53000
    assert rollover_strike(D(52250), 500) == 52000
    assert rollover_strike(D(52100), 500) == 52000


def test_next_contract_is_the_first_expiry_after_the_current_one():
    c = next_contract(BANK_NIFTY, date(2025, 12, 30), D(52700), CONFIG)
    assert (c.expiry, c.strike, c.lot_size) == (date(2026, 1, 27), 52500, 30)


def test_configured_lot_size_schedule_is_effective_dated():
    custom = replace(GOLD_MINI, lot_sizes=(Dated(date(2000, 1, 1), 100),
                                           Dated(date(2026, 3, 1), 50)))
    assert custom.lot_size_for(date(2026, 2, 5)) == 100
    assert custom.lot_size_for(date(2026, 3, 5)) == 50


# --- entries inside the roll window trade the next contract ------------------------------
# The window is counted in trading days after the signal's exchange date up to and including
# the expiry (0 on the expiry day), skipping weekends and the exchange's configured holidays.

HOLIDAYS = replace(CONFIG, holidays={"NSE": frozenset({date(2025, 12, 25)}),
                                     "MCX": frozenset({date(2025, 12, 25), date(2026, 1, 1)})})


def entry_expiry(instrument, day: str, config=HOLIDAYS) -> date:
    # 10:00 IST on ``day``
    return contract_for(instrument, datetime.fromisoformat(f"{day}T04:30:00Z"), D(52049),
                        config).expiry


@pytest.mark.parametrize(("day", "expiry"), [
    # Dec 2025 expires Tue 30 Dec; 25 Dec is an NSE holiday; the window is 7 trading days.
    ("2025-12-17", date(2025, 12, 30)),  # 8 left: 18 19 22 23 24 26 29 30
    ("2025-12-18", date(2026, 1, 27)),  # 7 left: the window's first day
    ("2025-12-29", date(2026, 1, 27)),  # 1 left
    ("2025-12-30", date(2026, 1, 27)),  # the expiry day itself
    ("2025-12-31", date(2026, 1, 27)),  # Dec has expired: Jan is current, 18 left
])
def test_bank_nifty_entry_inside_its_roll_window_trades_the_next_contract(day, expiry):
    assert entry_expiry(BANK_NIFTY, day) == expiry


def test_the_roll_window_counts_trading_days_so_holidays_widen_it():
    # Without the 25 Dec holiday, 18 Dec has 8 trading days left: outside the window.
    assert entry_expiry(BANK_NIFTY, "2025-12-18", CONFIG) == date(2025, 12, 30)
    assert entry_expiry(BANK_NIFTY, "2025-12-19", CONFIG) == date(2026, 1, 27)
    # Its lot size is the next contract's: 30 from Jan 2026 (35 on the Dec contract).
    c = contract_for(BANK_NIFTY, datetime.fromisoformat("2025-12-18T04:30:00Z"), D(52049),
                     HOLIDAYS)
    assert (c.lot_size, c.ce_symbol, c.strike) == (30, "BANKNIFTY27JAN2652000CE", 52000)


@pytest.mark.parametrize(("day", "expiry"), [
    # Jan 2026 expires Mon 5 Jan; 25 Dec and 1 Jan are MCX holidays; the window is 8 days.
    ("2025-12-19", date(2026, 1, 5)),  # 9 left: 22 23 24 26 29 30 31, 2 Jan, 5 Jan
    ("2025-12-22", date(2026, 2, 5)),  # 8 left: the window's first day
    ("2026-01-02", date(2026, 2, 5)),  # 1 left
    ("2026-01-05", date(2026, 2, 5)),  # the expiry day itself
])
def test_gold_mini_entry_inside_its_roll_window_trades_the_next_contract(day, expiry):
    assert entry_expiry(GOLD_MINI, day) == expiry


def test_gold_mini_window_without_holidays():
    # 22 Dec has 10 trading days left without the holidays, 23 Dec 9, 24 Dec 8.
    assert entry_expiry(GOLD_MINI, "2025-12-23", CONFIG) == date(2026, 1, 5)
    assert entry_expiry(GOLD_MINI, "2025-12-24", CONFIG) == date(2026, 2, 5)
    c = contract_for(GOLD_MINI, datetime.fromisoformat("2026-01-05T04:30:00Z"), D(72000), CONFIG)
    assert (c.futures_symbol, c.contract_month) == ("GOLDM05FEB26FUT", "2026-02")


def test_a_configured_window_of_zero_moves_only_the_expiry_day():
    none = replace(GOLD_MINI, roll_days_before_expiry=0)
    assert entry_expiry(none, "2026-01-02", CONFIG) == date(2026, 1, 5)
    assert entry_expiry(none, "2026-01-05", CONFIG) == date(2026, 2, 5)
