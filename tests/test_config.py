"""Configuration: docs/RULES.md defaults built in; a TOML file overrides; mistakes are named."""

from datetime import date
from decimal import Decimal as D

import pytest

from ledger.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "ledger.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_domain_figures():
    config = load_config(None)
    bn, gold = config.instruments["BANK_NIFTY"], config.instruments["GOLD_MINI"]
    assert (bn.margin_per_lot, bn.max_pyramids, bn.trailing_atr_multiple) == (
        D(270000), 5, D("2.5"))
    assert (gold.point_value, gold.initial_vol_percent, gold.roll_days_before_expiry) == (
        D(10), D("0.2"), 8)
    p = config.portfolios["default"]
    assert (p.initial_capital, p.equity_mode, p.max_risk_percent) == (D(5000000), "blended", 15)


def test_toml_overrides_adds_and_schedules(tmp_path):
    config = load_config(write(tmp_path, """
exchange_timezone = "Asia/Kolkata"

[portfolios.swing]
initial_capital = "2500000"
equity_mode = "closed"

[instruments.BANK_NIFTY]
margin_per_lot = 300000

[instruments.CRUDE_MINI]
exchange = "MCX"
product = "future"
symbol_root = "CRUDEOILM"
lot_sizes = [{from = 2000-01-01, lot_size = 10}, {from = "2026-06-01", lot_size = 20}]
point_value = 10
margin_per_lot = 60000
initial_risk_percent = 0.5
ongoing_risk_percent = 1
initial_vol_percent = 0.3
ongoing_vol_percent = 0.5
initial_atr_multiple = 1.5
trailing_atr_multiple = 2.5
max_pyramids = 2
roll_days_before_expiry = 5
expiry_day_of_month = 19

[holidays]
NSE = [2025-12-25, "2026-01-26"]
"""))
    assert config.instruments["BANK_NIFTY"].margin_per_lot == D(300000)
    assert config.instruments["BANK_NIFTY"].max_pyramids == 5  # untouched keys keep defaults
    crude = config.instruments["CRUDE_MINI"]
    assert crude.lot_size_for(date(2026, 5, 19)) == 10
    assert crude.lot_size_for(date(2026, 6, 19)) == 20
    assert config.portfolios["swing"].equity_mode == "closed"
    assert "default" in config.portfolios
    assert config.holidays["NSE"] == frozenset({date(2025, 12, 25), date(2026, 1, 26)})


def test_every_mistake_is_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, """
colour = "blue"
[portfolios.default]
equity_mode = "sometimes"
initial_capital = -1
[portfolios."Bad Name"]
[instruments.BANK_NIFTY]
margin_per_lot = "lots"
max_pyramid = 3
[instruments.NEW]
exchange = "NSE"
"""))
    text = "\n".join(e.value.problems)
    for needle in ["colour", "equity_mode", "initial_capital", "Bad Name", "margin_per_lot",
                   "max_pyramid", "instruments.NEW: missing"]:
        assert needle in text


def test_unreadable_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "this is = = not toml"))


def test_the_documented_example_file_loads(tmp_path):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "CONFIGURATION.md").read_text()
    example = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    config = load_config(write(tmp_path, example))
    assert config.instruments["CRUDE_MINI"].expiry_day_of_month == 19
    assert config.portfolios["swing"].initial_capital == D(2500000)
    assert config.limits.decision_attempts_max == 16


def test_stop_policy_is_flag_unless_configured_exit(tmp_path):
    assert {i.stop_policy for i in load_config(None).instruments.values()} == {"flag"}
    config = load_config(write(tmp_path, '[instruments.GOLD_MINI]\nstop_policy = "exit"\n'))
    assert config.instruments["GOLD_MINI"].stop_policy == "exit"
    assert config.instruments["BANK_NIFTY"].stop_policy == "flag"
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, '[instruments.GOLD_MINI]\nstop_policy = "sell"\n'))
    assert e.value.problems == [
        "instruments.GOLD_MINI.stop_policy: expected 'flag' or 'exit', got 'sell'"]
