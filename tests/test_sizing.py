"""Tom Basso's sizing arithmetic, straight from docs/RULES.md."""

from decimal import Decimal as D

from ledger import sizing


def test_worked_example_base_entry_lot_r_lot_v_lot_m():
    # docs/RULES.md: equity 50 L, point value 35, price 52000, stop 51650, ATR 350, ER 0.82,
    # Rs 5.4 L free margin.
    s = sizing.size_base_entry(
        equity=D(5_000_000), available_margin=D(540_000), price=D(52000), signal_stop=D(51650),
        atr=D(350), er=D("0.82"), point_value=D(35), margin_per_lot=D(270_000),
        initial_risk_percent=D("0.5"), initial_vol_percent=D("0.5"))
    assert s.recorded() == {"risk": D("1.6735"), "volatility": D("2.0408"), "margin": D("2.0000")}
    assert (s.lots, s.limiter) == (1, "risk")


def test_lots_are_floored_never_rounded():
    # Lot-R = 25000 * 0.9799 / (100 * 35) = 6.9993: six lots, not seven.
    s = sizing.size_base_entry(
        equity=D(5_000_000), available_margin=D(10**8), price=D(52000), signal_stop=D(51900),
        atr=D(1), er=D("0.9799"), point_value=D(35), margin_per_lot=D(1),
        initial_risk_percent=D("0.5"), initial_vol_percent=D("100"))
    assert s.limiter == "risk" and s.lots == 6
    # ...and an exact 7 stays 7 (ER 0.98 gives 25000 * 0.98 / 3500 = 7 exactly).
    exact = sizing.size_base_entry(
        equity=D(5_000_000), available_margin=D(10**8), price=D(52000), signal_stop=D(51900),
        atr=D(1), er=D("0.98"), point_value=D(35), margin_per_lot=D(1),
        initial_risk_percent=D("0.5"), initial_vol_percent=D("100"))
    assert exact.lots == 7


def test_limiter_tie_goes_to_risk_then_volatility():
    common = dict(equity=D(1_000_000), price=D(110), signal_stop=D(100), er=D(1),
                  point_value=D(1), margin_per_lot=D(1000), initial_risk_percent=D(1),
                  initial_vol_percent=D(1))
    # Lot-R = 10000/10 = 1000, Lot-V = 10000/10 = 1000, Lot-M = 1000: all tie.
    tie = sizing.size_base_entry(available_margin=D(1_000_000), atr=D(10), **common)
    assert (tie.limiter, tie.lots) == ("risk", 1000)
    # Volatility and margin tie below risk: volatility wins.
    vm = sizing.size_base_entry(available_margin=D(500_000), atr=D(20), **common)
    assert (vm.limiter, vm.lots) == ("volatility", 500)


def test_negative_available_margin_sizes_zero_lots():
    s = sizing.size_base_entry(
        equity=D(5_000_000), available_margin=D(-1), price=D(52000), signal_stop=D(51650),
        atr=D(350), er=D("0.82"), point_value=D(35), margin_per_lot=D(270_000),
        initial_risk_percent=D("0.5"), initial_vol_percent=D("0.5"))
    assert (s.lots, s.limiter) == (0, "margin")


def test_pyramid_size_is_min_of_margin_half_base_and_risk_budget():
    s = sizing.size_pyramid(
        available_margin=D(1_139_400), margin_per_lot=D(270_000), base_lots=7,
        base_fraction=D("0.5"), instrument_unrealized=D(98_000), base_risk=D(36_750),
        profit_fraction=D("0.5"), price=D(52400), signal_stop=D(52300), point_value=D(35))
    # A = 4.22, B = floor(3.5) = 3, C = floor(0.5 * 61250 / 3500) = 8
    assert s.recorded() == {"margin": D("4.2200"), "50%_rule": D(3), "risk_budget": D(8)}
    assert (s.lots, s.limiter) == (3, "50%_rule")


def test_pyramid_risk_budget_negative_when_profit_below_base_risk():
    s = sizing.size_pyramid(
        available_margin=D(10**9), margin_per_lot=D(1), base_lots=10, base_fraction=D("0.5"),
        instrument_unrealized=D(100), base_risk=D(1000), profit_fraction=D("0.5"),
        price=D(110), signal_stop=D(100), point_value=D(1))
    assert (s.lots, s.limiter) == (0, "risk_budget")


def test_trailing_stop_rises_with_new_highs_and_never_falls():
    highest, stop = sizing.trail(D(100), D(90), close=D(110), atr=D(4), trailing_atr_multiple=D(2))
    assert (highest, stop) == (D(110), D(102))
    # A lower close and a wider ATR: the candidate is lower, the stop stays.
    highest, stop = sizing.trail(highest, stop, close=D(105), atr=D(10),
                                 trailing_atr_multiple=D(2))
    assert (highest, stop) == (D(110), D(102))


def test_peel_off_sheds_ceil_of_excess_over_per_lot_amount():
    assert sizing.peel_off_lots(amount=D(31500), limit=D(25000), per_lot=D(10500)) == 1
    assert sizing.peel_off_lots(amount=D(31500), limit=D(10000), per_lot=D(10500)) == 3
    assert sizing.peel_off_lots(amount=D(25000), limit=D(25000), per_lot=D(10500)) == 0
