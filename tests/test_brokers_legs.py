"""The orders that open, close and roll a position, the order's own checks, and the
package's place in the layers (it may import ``ledger`` only)."""

from __future__ import annotations

import ast
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from brokers import Leg, OrderRequest, legs, order_exchange, roll_legs
from ledger.calendar import contract_for, next_contract
from ledger.config import BANK_NIFTY, GOLD_MINI, default_config

CONFIG = default_config()
ROOT = Path(__file__).resolve().parent.parent
AT = datetime.fromisoformat("2025-12-08T05:00:00+00:00")
BN = contract_for(BANK_NIFTY, AT, D("52049"), CONFIG)  # Dec 2025: strike 52000, lot 35
GOLD = contract_for(GOLD_MINI, AT, D("129500"), CONFIG)


def sides(result: list[Leg]) -> list[tuple[str, str, int]]:
    return [(leg.side, leg.symbol, leg.quantity) for leg in result]


def test_the_contracts_under_test_carry_openalgo_symbols():
    assert (BN.ce_symbol, BN.pe_symbol, BN.lot_size) == (
        "BANKNIFTY30DEC2552000CE", "BANKNIFTY30DEC2552000PE", 35)
    assert GOLD.futures_symbol == "GOLDM05JAN26FUT"  # Dec's contract expired on the 5th


def test_orders_go_to_the_derivatives_exchange():
    assert order_exchange(BANK_NIFTY) == "NFO"  # NSE index options trade on NFO
    assert order_exchange(GOLD_MINI) == "MCX"


def test_bank_nifty_entry_buys_the_call_and_sells_the_put():
    entry = legs("synthetic_future", BN, 2, BN.lot_size, True, exchange="NFO")
    assert sides(entry) == [("BUY", "BANKNIFTY30DEC2552000CE", 70),
                            ("SELL", "BANKNIFTY30DEC2552000PE", 70)]
    assert all(leg.exchange == "NFO" and leg.opening for leg in entry)
    assert [leg.right for leg in entry] == ["CE", "PE"]


def test_bank_nifty_exit_sells_the_call_and_buys_the_put_back_first():
    exit_ = legs("synthetic_future", BN, 2, BN.lot_size, False, exchange="NFO")
    # The short put is bought back before the call is sold: never a naked short option.
    assert sides(exit_) == [("BUY", "BANKNIFTY30DEC2552000PE", 70),
                            ("SELL", "BANKNIFTY30DEC2552000CE", 70)]
    assert not any(leg.opening for leg in exit_)


def test_bank_nifty_roll_is_four_legs_and_follows_the_lot_size_of_each_contract():
    new = next_contract(BANK_NIFTY, BN.expiry, D("53260"), CONFIG)  # Jan 2026: lot 30
    assert (new.ce_symbol, new.lot_size) == ("BANKNIFTY27JAN2653500CE", 30)
    roll = roll_legs("synthetic_future", BN, new, 3, exchange="NFO")
    assert sides(roll) == [
        ("BUY", "BANKNIFTY30DEC2552000PE", 105), ("SELL", "BANKNIFTY30DEC2552000CE", 105),
        ("BUY", "BANKNIFTY27JAN2653500CE", 90), ("SELL", "BANKNIFTY27JAN2653500PE", 90)]
    assert [leg.opening for leg in roll] == [False, False, True, True]


def test_a_roll_can_count_in_the_brokers_lots():
    new = next_contract(GOLD_MINI, GOLD.expiry, D("130000"), CONFIG)
    roll = roll_legs("future", GOLD, new, 3, exchange="MCX", old_lot_size=1, new_lot_size=1)
    assert sides(roll) == [("SELL", "GOLDM05JAN26FUT", 3), ("BUY", "GOLDM05FEB26FUT", 3)]


def test_gold_mini_is_one_leg_and_two_to_roll():
    assert sides(legs("future", GOLD, 3, GOLD.lot_size, True, exchange="MCX")) == [
        ("BUY", "GOLDM05JAN26FUT", 300)]
    assert sides(legs("future", GOLD, 3, GOLD.lot_size, False, exchange="MCX")) == [
        ("SELL", "GOLDM05JAN26FUT", 300)]
    new = next_contract(GOLD_MINI, GOLD.expiry, D("130000"), CONFIG)
    assert sides(roll_legs("future", GOLD, new, 3, exchange="MCX")) == [
        ("SELL", "GOLDM05JAN26FUT", 300), ("BUY", "GOLDM05FEB26FUT", 300)]


def test_a_leg_becomes_an_nrml_market_order():
    leg = legs("future", GOLD, 1, 100, True, exchange="MCX")[0]
    assert leg.order(strategy="trend") == OrderRequest(
        symbol="GOLDM05JAN26FUT", exchange="MCX", side="BUY", quantity=100,
        price_type="MARKET", product="NRML", price=None, trigger_price=None, strategy="trend")
    limit = leg.order(price_type="LIMIT", price=D("129500.5"))
    assert (limit.price_type, limit.price) == ("LIMIT", D("129500.5"))


@pytest.mark.parametrize(("lots", "lot_size"), [(0, 35), (-1, 35), (1, 0), (True, 35), (1.5, 35)])
def test_lots_and_lot_size_must_be_positive_ints(lots, lot_size):
    with pytest.raises(ValueError, match="positive ints"):
        legs("synthetic_future", BN, lots, lot_size, True, exchange="NFO")


def test_a_contract_without_the_products_symbols_is_refused():
    with pytest.raises(ValueError, match="no CE/PE"):
        legs("synthetic_future", GOLD, 1, 100, True, exchange="MCX")
    with pytest.raises(ValueError, match="no future"):
        legs("future", BN, 1, 35, True, exchange="NFO")
    with pytest.raises(ValueError, match="unknown product"):
        legs("option", BN, 1, 35, True, exchange="NFO")  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "message"), [
    ({"quantity": 0}, "quantity"),
    ({"quantity": 2.0}, "quantity"),
    ({"side": "buy"}, "side"),
    ({"price_type": "STOP"}, "price_type"),
    ({"product": "MTF"}, "product"),
    ({"price_type": "LIMIT"}, "needs a price"),
    ({"price_type": "SL", "price": D(1)}, "needs a trigger_price"),
    ({"price_type": "SL-M"}, "needs a trigger_price"),
    ({"price": D(-1)}, "price"),
    ({"price": 10.5}, "price"),  # money is Decimal, never float
    ({"price": D("NaN")}, "price"),
    ({"symbol": ""}, "symbol"),
])
def test_an_order_a_broker_would_refuse_is_refused_before_it_exists(changes, message):
    fields = {"symbol": "GOLDM05JAN26FUT", "exchange": "MCX", "side": "BUY", "quantity": 100}
    with pytest.raises(ValueError, match=message):
        OrderRequest(**{**fields, **changes})


def test_the_brokers_package_imports_only_ledger_and_itself():
    """docs/ARCHITECTURE.md: an adapter at the edge; nothing from api/, projections/,
    service/ (nor migrations/)."""
    ours = {"ledger", "projections", "api", "service", "migrations", "brokers"}
    offences = [(path.name, name) for path in sorted((ROOT / "brokers").rglob("*.py"))
                for name in _imports(path)
                if name.split(".")[0] in ours - {"ledger", "brokers"}]
    assert offences == []


def test_nothing_but_the_composition_root_imports_the_brokers():
    offences = [str(path.relative_to(ROOT)) for package in ("ledger", "projections", "api")
                for path in sorted((ROOT / package).rglob("*.py"))
                if "brokers" in {n.split(".")[0] for n in _imports(path)}]
    assert offences == []


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names
