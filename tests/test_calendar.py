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
    ("2025-11-25T05:00:00Z", date(2025, 11, 25), 35),  # expiry day itself
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
    from ledger.domain import Dated

    custom = replace(GOLD_MINI, lot_sizes=(Dated(date(2000, 1, 1), 100),
                                           Dated(date(2026, 3, 1), 50)))
    assert custom.lot_size_for(date(2026, 2, 5)) == 100
    assert custom.lot_size_for(date(2026, 3, 5)) == 50
