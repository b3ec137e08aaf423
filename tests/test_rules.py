"""Every docs/RULES.md decision rule, decided by the ledger and read back from its store.

Each test runs twice: on the embedded SQLite file and on Postgres.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from ledger.application import Ledger
from ledger.domain import PortfolioParams
from ledger.signals import InvalidSignal
from tests.alerts import Alerts
from tests.conftest import make_config


def codes(decision):
    return {r["code"] for r in decision.body["reasons"]}


def books(ledger: Ledger, name: str = "default"):
    return ledger.portfolio_summary(name)


def with_params(**changes):
    config = make_config()
    return config.with_portfolio(replace(config.portfolios["default"], **changes))


def with_instrument(name, **changes):
    config = make_config()
    return replace(config, instruments={**config.instruments,
                                        name: replace(config.instruments[name], **changes)})


# BANK_NIFTY in Nov 2025 trades the Dec 2025 contract: lot size 35, point value 35.
# Base: price 52000, signal stop 51900, ATR 100, ER 1 -> Lot-R = Lot-V = 7.14 (tie: risk),
# Lot-M = 11.1: 7 lots; initial stop 52000 - 1.5 x 100 = 51850, so 1R = 150 points.
def open_base(ledger: Ledger, alerts: Alerts):
    d = ledger.decide(alerts.base(52000, 51900, 100))
    assert d.accepted and (d.body["lots"], d.body["limiter"]) == (7, "risk")
    return d


# --- base entries ----------------------------------------------------------------------------


def test_base_entry_worked_example(ledger):
    d = ledger.decide(Alerts().base(52000, 51650, 350, er="0.82"))
    assert d.body["decision"] == "accepted" and not d.duplicate
    assert (d.body["lots"], d.body["limiter"]) == (1, "risk")
    assert d.body["sizing"] == {"risk": "1.6735", "volatility": "2.0408", "margin": "11.1111"}
    position = ledger.position(d.position_id)
    assert (position.entry_price, position.initial_stop, position.current_stop) == (
        D(52000), D(51475), D(51475))  # 52000 - 1.5 x 350
    assert (position.highest_close, position.lot_size, position.point_value) == (
        D(52000), 35, D(35))
    assert (position.quantity, position.is_base_position, position.status) == (35, True, "open")
    assert (position.strike, position.expiry, position.ce_symbol) == (
        52000, "2025-12-30", "BANKNIFTY30DEC2552000CE")
    # risk 1 x 525 x 35 = 18375 = 0.3675 % of 50 L; volatility 350 x 35 = 0.245 %
    assert (position.risk_contribution, position.vol_contribution) == (D("0.3675"), D("0.2450"))
    assert [e["type"] for e in d.body["events"]] == [
        "PortfolioOpened", "EntryAccepted", "PositionOpened", "SignalDecided"]


def test_position_ids_are_unique_across_reentries_and_readable(ledger):
    alerts = Alerts()
    first = open_base(ledger, alerts)
    ledger.decide(alerts.exit("Long_1", 52100))
    second = open_base(ledger, alerts)
    assert first.position_id == "default:BANK_NIFTY:Long_1:1"
    assert second.position_id == "default:BANK_NIFTY:Long_1:2"
    assert ledger.position(first.position_id).status == "closed"
    assert ledger.position(second.position_id).status == "open"


def test_second_base_on_an_instrument_is_rejected(ledger):
    alerts = Alerts()
    open_base(ledger, alerts)
    d = ledger.decide(alerts.base(52100, 52000, 100))
    assert d.body["decision"] == "rejected" and codes(d) == {"base_already_open"}
    assert len(books(ledger)["open_positions"]) == 1


def test_base_entry_rejected_when_sizing_gives_zero_lots(open_ledger):
    ledger = open_ledger(with_params(initial_capital=D(100000)))
    d = ledger.decide(Alerts().base(52000, 51650, 350, er="0.82"))
    assert d.body["decision"] == "rejected" and codes(d) == {"zero_lots"}
    assert d.body["lots"] == 0 and books(ledger)["open_positions"] == []


def test_base_entry_rejected_by_portfolio_caps(open_ledger):
    ledger = open_ledger(with_params(max_risk_percent=D("0.5"), max_vol_percent=D("0.1")))
    d = ledger.decide(Alerts().base(52000, 51900, 100))
    # 7 lots: risk 7 x 150 x 35 = 0.735 % > 0.5 %; volatility 7 x 100 x 35 = 0.49 % > 0.1 %
    assert codes(d) == {"risk_cap", "volatility_cap"}


def test_margin_cap_counts_margin_already_used(store_url):
    alerts = Alerts()
    with Ledger(make_config(), store_url) as first:
        import migrations

        migrations.migrate(first)
        open_base(first, alerts)  # 7 lots x 2.7 L = 18.9 L of margin
    # Another instance configured with a 30 % margin cap (15 L): already over.
    with Ledger(with_params(max_margin_percent=D(30)), store_url) as second:
        d = second.decide(alerts.base(72000, 71500, 400, instrument="GOLD_MINI"))
        assert codes(d) == {"zero_lots", "margin_cap"}
        assert d.body["limiter"] == "margin"


def test_equity_mode_decides_what_equity_sizing_uses(open_ledger):
    alerts = Alerts()
    decisions = {}
    for mode in ("closed", "open", "blended"):
        ledger = open_ledger(with_params(equity_mode=mode).with_portfolio(
            PortfolioParams(name=mode, equity_mode=mode)))
        ledger.decide(alerts.base(52000, 51900, 100), mode)
        ledger.decide(alerts.mark(54000, 100), mode)  # 2000 x 7 x 35 = 4.9 L unrealized
        decisions[mode] = ledger.decide(alerts.base(72000, 71500, 400, instrument="GOLD_MINI"),
                                        mode)
    assert decisions["closed"].body["equity"] == "5000000.00"
    assert decisions["open"].body["equity"] == "5490000.00"
    assert decisions["blended"].body["equity"] == "5245000.00"


# --- pyramids --------------------------------------------------------------------------------


def test_pyramid_accepted_sized_by_half_the_base(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)
    d = ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100))
    # A = (0.6 x 50.49 L - 18.9 L) / 2.7 L = 4.22; B = floor(7 x 0.5) = 3; C = 8
    assert d.accepted and (d.body["lots"], d.body["limiter"]) == (3, "50%_rule")
    assert d.body["sizing"] == {"margin": "4.2200", "50%_rule": "3.0000", "risk_budget": "8.0000"}
    pyramid = ledger.position(d.position_id)
    assert (pyramid.is_base_position, pyramid.base_position_id) == (False, base.position_id)
    assert pyramid.initial_stop == D(52250)
    state = books(ledger)["pyramiding_state"]["BANK_NIFTY"]
    assert state == {"base_position_id": base.position_id, "last_pyramid_price": "52400",
                     "pyramids": 1}


def test_pyramid_rejected_before_1R(ledger):
    alerts = Alerts()
    open_base(ledger, alerts)
    d = ledger.decide(alerts.pyramid("Long_2", 52100, 52000, 100))  # +100 is not above 1R=150
    # Below 1R the profit (24500) cannot cover the base risk (36750) either: C sizes 0 lots.
    assert codes(d) == {"one_r_gate", "zero_lots"}


def test_pyramid_rejected_closer_than_half_an_atr_to_the_last(ledger):
    alerts = Alerts()
    open_base(ledger, alerts)
    assert ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100)).accepted
    d = ledger.decide(alerts.pyramid("Long_3", 52420, 52320, 100))  # 0.2 ATR from 52400
    assert codes(d) == {"atr_spacing_gate"}


def test_pyramid_names_every_failing_gate(open_ledger):
    # 1 Cr: base 14 lots @ 52000; a 7-lot pyramid @ 53000; back at 52151 the instrument is
    # under water (14 x 151 - 7 x 849 < 0) though still above 1R, and below the last pyramid.
    ledger = open_ledger(with_params(initial_capital=D(10_000_000)))
    alerts = Alerts()
    assert ledger.decide(alerts.base(52000, 51900, 100)).body["lots"] == 14
    assert ledger.decide(alerts.pyramid("Long_2", 53000, 52900, 100)).body["lots"] == 7
    d = ledger.decide(alerts.pyramid("Long_3", 52151, 52051, 100))
    assert codes(d) == {"profit_gate", "atr_spacing_gate", "zero_lots"}
    assert d.body["limiter"] == "risk_budget"


def test_pyramid_without_an_open_base_is_rejected(ledger):
    d = ledger.decide(Alerts().pyramid("Long_2", 52400, 52300, 100))
    assert codes(d) == {"no_base_position"}


def test_pyramid_rejected_after_max_pyramids(open_ledger):
    ledger = open_ledger(with_instrument("BANK_NIFTY", max_pyramids=1))
    alerts = Alerts()
    open_base(ledger, alerts)
    assert ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100)).accepted
    d = ledger.decide(alerts.pyramid("Long_3", 52800, 52700, 100))
    assert codes(d) == {"max_pyramids"}


def test_pyramid_rejected_by_the_tighter_pyramid_caps(open_ledger):
    ledger = open_ledger(with_params(pyramid_max_vol_percent=D("0.6")))
    alerts = Alerts()
    open_base(ledger, alerts)  # volatility 0.49 %, under the 5 % entry cap
    d = ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100))
    # with 3 more lots volatility would be 35000 / 50.49 L = 0.69 % > 0.6 %
    assert codes(d) == {"pyramid_volatility_cap"} and d.body["lots"] == 3


def test_pyramid_label_already_open_is_rejected(ledger):
    alerts = Alerts()
    open_base(ledger, alerts)
    assert ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100)).accepted
    d = ledger.decide(alerts.pyramid("Long_2", 52800, 52700, 100))
    assert "position_already_open" in codes(d)


# --- trailing stops and marks ------------------------------------------------------------------


def test_trailing_stop_follows_highest_close_and_never_falls(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)  # stop 51850
    stops = []
    for close, atr in [(52500, 100), (52300, 100), (52600, 200), (52800, 100), (52000, 400)]:
        d = ledger.decide(alerts.mark(close, atr))
        assert d.accepted
        stops.append(ledger.position(base.position_id).current_stop)
    # 52500-250=52250; lower close keeps it; 52600-500=52100 < 52250 keeps it; 52800-250=52550
    assert stops == [D(52250), D(52250), D(52250), D(52550), D(52550)]
    assert ledger.position(base.position_id).highest_close == D(52800)
    types = [e["type"] for e in ledger.position_history(base.position_id)]
    # The last close, 52000, is below the 52550 stop: a breach (flagged, the default).
    assert types == ["PositionOpened", "StopTrailed", "StopTrailed", "StopTrailed",
                     "StopBreached"]


def test_entry_and_exit_prices_mark_but_do_not_trail(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)
    ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100))
    assert ledger.position(base.position_id).current_stop == D(51850)
    assert books(ledger)["unrealized_pnl"] == "98000.00"  # base 400 x 7 x 35; pyramid 0


def test_an_older_bar_does_not_move_the_mark(ledger):
    alerts = Alerts()
    open_base(ledger, alerts)
    late = alerts.mark(51000, 100)
    ledger.decide(alerts.mark(52500, 100))
    ledger.decide(late)  # arrives after the newer bar
    assert books(ledger)["open_positions"][0]["mark"] == "52500"


def test_each_position_trails_on_its_own(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)
    pyramid = ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100))
    ledger.decide(alerts.mark(52450, 100))  # candidate 52200
    assert ledger.position(base.position_id).current_stop == D(52200)
    assert ledger.position(pyramid.position_id).current_stop == D(52250)  # its own 52400-150


# --- exits -----------------------------------------------------------------------------------


def test_exit_realizes_pnl_into_closed_equity(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)
    d = ledger.decide(alerts.exit("Long_1", 52500))
    assert d.accepted and d.position_id == base.position_id
    position = ledger.position(base.position_id)
    assert (position.status, position.exit_price, position.realized_pnl) == (
        "closed", D(52500), D(122500))  # 500 x 7 x 35
    summary = books(ledger)
    assert summary["closed_equity"] == "5122500.00" and summary["open_positions"] == []
    assert summary["margin_used"] == "0.00"


def test_exit_all_closes_every_open_position_of_the_instrument(ledger):
    alerts = Alerts()
    open_base(ledger, alerts)
    ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100))
    gold = ledger.decide(alerts.base(72000, 71500, 400, instrument="GOLD_MINI"))
    d = ledger.decide(alerts.exit("ALL", 52600))
    assert d.accepted and len(d.body["position_ids"]) == 2 and d.position_id is None
    # 600 x 7 x 35 + 200 x 3 x 35 = 147000 + 21000
    assert books(ledger)["closed_equity"] == "5168000.00"
    assert [p["position_id"] for p in books(ledger)["open_positions"]] == [gold.position_id]


def test_exiting_a_position_that_is_not_open_is_rejected(ledger):
    alerts = Alerts()
    assert codes(ledger.decide(alerts.exit("Long_1", 52000))) == {"position_not_open"}
    assert codes(ledger.decide(alerts.exit("ALL", 52000))) == {"no_open_positions"}


def test_an_exit_sent_before_the_entry_does_not_close_it(ledger):
    alerts = Alerts()
    stale_exit = alerts.exit("Long_1", 52000)
    open_base(ledger, alerts)
    assert codes(ledger.decide(stale_exit)) == {"position_not_open"}


def test_base_exit_drops_the_base_reference_and_leaves_pyramids_open(ledger):
    alerts = Alerts()
    open_base(ledger, alerts)
    pyramid = ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100))
    ledger.decide(alerts.exit("Long_1", 52500))
    state = books(ledger)["pyramiding_state"]["BANK_NIFTY"]
    assert state["base_position_id"] is None
    assert [p["position_id"] for p in books(ledger)["open_positions"]] == [pyramid.position_id]
    assert codes(ledger.decide(alerts.pyramid("Long_3", 53000, 52900, 100))) == {
        "no_base_position"}
    # A new base starts a new pyramid campaign.
    new_base = ledger.decide(alerts.base(53000, 52900, 100))
    assert new_base.accepted
    assert books(ledger)["pyramiding_state"]["BANK_NIFTY"]["pyramids"] == 0


# --- peel-off and rollover -------------------------------------------------------------------


def test_peel_off_sheds_lots_beyond_the_ongoing_risk_limit(open_ledger):
    config = with_instrument("BANK_NIFTY", ongoing_risk_percent=D("0.5"))
    config = config.with_portfolio(replace(config.portfolios["default"], peel_off=True))
    ledger = open_ledger(config)
    alerts = Alerts()
    # Lot-R = 25000 / (50 x 35) = 14.3, Lot-V = 25000 / (200 x 35) = 3.6: 3 lots; stop 51700
    base = ledger.decide(alerts.base(52000, 51950, 200))
    assert base.body["lots"] == 3
    d = ledger.decide(alerts.mark(51900, 200))
    # equity 50 L - 0.5 x 10500 = 49.9475 L; limit 0.5 % = 24973.75; risk 3 x 300 x 35 = 31500
    # excess 6526.25 / 10500 per lot -> shed 1 lot at 51900, realizing -100 x 35
    position = ledger.position(base.position_id)
    assert (position.lots, position.status, position.realized_pnl) == (2, "partial", D(-3500))
    assert books(ledger)["closed_equity"] == "4996500.00"
    assert [e["type"] for e in d.body["events"]] == [
        "MarketMarked", "PositionReduced", "SignalDecided"]


def test_peel_off_is_off_by_default(ledger):
    alerts = Alerts()
    base = ledger.decide(alerts.base(52000, 51950, 200))
    ledger.decide(alerts.mark(40000, 2000))
    assert ledger.position(base.position_id).lots == base.body["lots"]


# --- stop breaches ----------------------------------------------------------------------------
# A bar whose close is at or below a position's current stop (before this bar trails it) is a
# breach. `flag` (the default) records it; `exit` records it and closes the position there.


def events_of(decision):
    return [(e["type"], e["stream"].split(":", 1)[0]) for e in decision.body["events"]]


def test_a_bar_far_below_the_stop_is_recorded_as_a_breach(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)  # stop 51850
    bar = alerts.mark(51000, 100)
    d = ledger.decide(bar)
    assert d.accepted and d.body["position_ids"] == [base.position_id]
    assert events_of(d) == [("MarketMarked", "portfolio"), ("StopBreached", "position"),
                            ("SignalDecided", "signal")]
    position = ledger.position(base.position_id)
    assert (position.status, position.lots, position.current_stop) == ("open", 7, D(51850))
    assert position.stop_breached_at == datetime.fromisoformat(bar["timestamp"])
    breach = ledger.position_history(base.position_id)[-1]
    assert breach["type"] == "StopBreached"
    assert {k: breach["event"][k] for k in ("fingerprint", "close", "current_stop", "at")} == {
        "fingerprint": d.body["fingerprint"], "close": D(51000), "current_stop": D(51850),
        "at": datetime.fromisoformat(bar["timestamp"])}
    assert breach["signal"]["signal_type"] == "MARKET_DATA"
    # Still breached on the next bar: recorded again; the position keeps its first breach time.
    again = ledger.decide(alerts.mark(50900, 100))
    assert ("StopBreached", "position") in events_of(again)
    assert ledger.position(base.position_id).stop_breached_at == position.stop_breached_at


def test_a_close_at_the_stop_is_a_breach_and_one_above_it_is_not(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)
    above = ledger.decide(alerts.mark("51850.05", 100))
    assert ("StopBreached", "position") not in events_of(above)
    assert ledger.position(base.position_id).stop_breached_at is None
    at = ledger.decide(alerts.mark(51850, 100))
    assert ("StopBreached", "position") in events_of(at)


def test_a_breach_is_judged_on_the_stop_before_the_bar_trails_it(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)  # stop 51850, highest close 52000
    # Close 51800 breaches 51850; its small ATR still lifts the stop: 52000 - 2.5 x 40 = 51900.
    d = ledger.decide(alerts.mark(51800, 40))
    assert events_of(d)[1:3] == [("StopBreached", "position"), ("StopTrailed", "position")]
    history = ledger.position_history(base.position_id)
    assert history[-2]["event"]["current_stop"] == D(51850)
    assert ledger.position(base.position_id).current_stop == D(51900)


def test_a_bar_from_before_the_entry_breaches_nothing(ledger):
    alerts = Alerts()
    early = alerts.mark(51000, 100)  # stamped before the entry, delivered after it
    base = open_base(ledger, alerts)
    d = ledger.decide(early)
    assert ("StopBreached", "position") not in events_of(d)
    assert ledger.position(base.position_id).stop_breached_at is None


def test_exit_stop_policy_closes_a_breached_position_at_the_bar(open_ledger):
    ledger = open_ledger(with_instrument("BANK_NIFTY", stop_policy="exit"))
    alerts = Alerts()
    base = open_base(ledger, alerts)  # 7 lots at 52000, stop 51850
    d = ledger.decide(alerts.mark(51000, 100))
    assert events_of(d) == [("MarketMarked", "portfolio"), ("StopBreached", "position"),
                            ("Exited", "position"), ("SignalDecided", "signal")]
    position = ledger.position(base.position_id)
    assert (position.status, position.exit_reason, position.exit_price) == (
        "closed", "stop_hit", D(51000))
    assert position.realized_pnl == D(-245000)  # (51000 - 52000) x 7 x 35
    summary = books(ledger)
    assert summary["closed_equity"] == "4755000.00" and summary["open_positions"] == []
    assert summary["pyramiding_state"]["BANK_NIFTY"]["base_position_id"] is None


def test_exit_stop_policy_closes_only_the_positions_breached(open_ledger):
    ledger = open_ledger(with_instrument("BANK_NIFTY", stop_policy="exit"))
    alerts = Alerts()
    base = open_base(ledger, alerts)  # stop 51850
    pyramid = ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100))  # stop 52250
    assert pyramid.accepted
    d = ledger.decide(alerts.mark(52100, 100))  # the base's highest close rises to 52100
    assert [(e["type"], e["stream"]) for e in d.body["events"]][1:4] == [
        ("StopBreached", f"position:{pyramid.position_id}"),
        ("Exited", f"position:{pyramid.position_id}"),
        ("StopTrailed", f"position:{base.position_id}")]
    assert d.body["position_ids"] == [pyramid.position_id, base.position_id]
    assert ledger.position(pyramid.position_id).exit_reason == "stop_hit"
    assert ledger.position(base.position_id).status == "open"
    assert [p["position_id"] for p in books(ledger)["open_positions"]] == [base.position_id]


def test_rollover_moves_the_position_and_realizes_its_pnl(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)
    at = datetime(2025, 12, 23, 5, 0, tzinfo=UTC)
    rolled = ledger.roll(base.position_id, "2025-12-30", D(52500), D(52700), at)
    assert (rolled.expiry, rolled.strike, rolled.lot_size, rolled.point_value) == (
        "2026-01-27", 52500, 30, D(30))
    assert (rolled.entry_price, rolled.original_entry_price, rolled.original_expiry) == (
        D(52700), D(52000), "2025-12-30")
    assert (rolled.rollover_pnl, rolled.rollover_count, rolled.rollover_status) == (
        D(122500), 1, "rolled")  # 500 x 7 x 35 on the old contract
    assert rolled.pe_symbol == "BANKNIFTY27JAN2652500PE"
    assert books(ledger)["closed_equity"] == "5122500.00"
    again = ledger.roll(base.position_id, "2025-12-30", D(52500), D(52700), at)
    assert again.rollover_count == 1  # idempotent
    # Exit after the roll: P&L from the new entry at the new point value.
    ledger.decide(alerts.exit("Long_1", 52800))
    assert books(ledger)["closed_equity"] == "5143500.00"  # + 100 x 7 x 30


def test_gold_mini_entry_on_its_contracts_expiry_day_opens_in_the_next_contract(ledger):
    # 5 Jan 2026 is the Jan contract's expiry: 0 trading days left, inside the 8-day window.
    d = ledger.decide(Alerts(start="2026-01-05T04:00:00Z").base(72000, 71500, 400,
                                                                 instrument="GOLD_MINI"))
    position = ledger.position(d.position_id)
    assert (position.expiry, position.contract_month, position.futures_symbol) == (
        "2026-02-05", "2026-02", "GOLDM05FEB26FUT")


def test_bank_nifty_entry_inside_its_roll_window_opens_in_the_next_contract(ledger):
    # 23 Dec 2025: 5 trading days before the 30 Dec expiry (window 7): the Jan contract,
    # whose lot size is 30, sizes the entry.
    d = ledger.decide(Alerts(start="2025-12-23T04:00:00Z").base(52000, 51900, 100))
    position = ledger.position(d.position_id)
    assert (position.expiry, position.lot_size, position.point_value) == ("2026-01-27", 30,
                                                                          D(30))
    assert position.ce_symbol == "BANKNIFTY27JAN2652000CE"


# --- exactly once, bad input, history ---------------------------------------------------------


def test_second_delivery_returns_the_first_decision_and_only_counts_itself(ledger):
    from ledger.domain import SignalRecord

    alert = Alerts().base(52000, 51900, 100)
    first = ledger.decide(alert)
    portfolio_version = ledger.portfolio().version
    again = ledger.decide({**alert, "price": 52100})  # same fingerprint, different body
    assert again.duplicate and not first.duplicate
    assert again.body == first.body
    assert again.log_position > first.log_position
    # Nothing decided again: the portfolio and positions are untouched; the receipt counts.
    assert ledger.portfolio().version == portfolio_version
    receipt = ledger.repository.get(SignalRecord.create_id(first.body["fingerprint"]))
    assert receipt.deliveries == 2 and receipt.instance_id == ledger.instance_id
    new_events = [n.topic.rsplit(".", 1)[-1] for n in
                  ledger.recorder.select_notifications(first.log_position + 1, 10)]
    assert new_events == ["SignalRedelivered"]


def test_invalid_signal_appends_nothing(ledger):
    with pytest.raises(InvalidSignal):
        ledger.decide({"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "price": 1})
    assert ledger.recorder.max_notification_id() in (None, 0)


def test_history_replays_each_event_with_the_state_after_it(ledger):
    alerts = Alerts()
    base = open_base(ledger, alerts)
    ledger.decide(alerts.mark(52500, 100))
    ledger.decide(alerts.exit("Long_1", 52400))
    history = ledger.position_history(base.position_id)
    assert [(h["type"], h["state"]["status"], h["state"]["current_stop"]) for h in history] == [
        ("PositionOpened", "open", D(51850)),
        ("StopTrailed", "open", D(52250)),
        ("Exited", "closed", D(52250)),
    ]
    assert history[0]["event"]["fingerprint"] == base.body["fingerprint"]
    assert history[2]["event"]["realized_pnl"] == D(98000)


def test_lot_size_in_force_is_recorded_and_survives_config_changes(store_url):
    import migrations

    alerts = Alerts(start="2026-02-02T04:00:00Z")
    with Ledger(make_config(), store_url) as ledger:
        migrations.migrate(ledger)
        d = ledger.decide(alerts.base(52000, 51900, 100))
        assert ledger.position(d.position_id).point_value == D(30)  # Feb 2026 contract
    # An operator later edits the lot-size schedule: history keeps the facts it decided on.
    from ledger.domain import Dated

    changed = with_instrument("BANK_NIFTY", lot_sizes=(Dated(datetime(2000, 1, 1).date(), 75),))
    with Ledger(changed, store_url) as ledger:
        ledger.decide(alerts.exit("Long_1", 52100))
        assert ledger.position(d.position_id).realized_pnl == D(100) * d.body["lots"] * 30


def test_books_replayed_by_a_fresh_instance_are_identical(open_ledger):
    alerts = Alerts()
    first = open_ledger()
    open_base(first, alerts)
    first.decide(alerts.pyramid("Long_2", 52400, 52300, 100))
    first.decide(alerts.mark(52600, 100))
    first.decide(alerts.base(72000, 71500, 400, instrument="GOLD_MINI"))
    first.decide(alerts.exit("Long_2", 52700))
    assert open_ledger().portfolio_summary() == first.portfolio_summary()


def test_snapshots_give_the_same_portfolio_as_a_full_replay(open_ledger):
    from eventsourcing.application import project_aggregate

    from ledger.config import Limits
    from ledger.domain import Portfolio

    config = replace(make_config(), limits=Limits(snapshot_interval_events=3))
    ledger = open_ledger(config)
    alerts = Alerts()
    open_base(ledger, alerts)
    for close in range(52100, 53100, 100):
        ledger.decide(alerts.mark(close, 100))
    pid = Portfolio.create_id("default")
    assert ledger.snapshots is not None
    assert len(list(ledger.snapshots.get(pid))) >= 3
    via_snapshot = open_ledger().repository.get(pid)
    replayed = project_aggregate(None, ledger.events.get(pid))
    assert vars(via_snapshot) == vars(replayed)
