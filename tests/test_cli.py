"""The `ledger` command, run as a trader runs it: a real process, on SQLite and on Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ledger.application import Ledger
from ledger.config import default_config
from projections.read_model import ProjectionReads
from tests.alerts import Alerts


def run(store_url: str, *args: str, stdin: str | bytes = b"", config: str | None = None):
    env = {**os.environ, "LEDGER_DATABASE_URL": store_url}
    env.pop("LEDGER_CONFIG", None)
    if config:
        env["LEDGER_CONFIG"] = config
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run([sys.executable, "-m", "service.cli", *args], input=data,
                          capture_output=True, env=env, timeout=60, check=False)


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]


def test_unmigrated_store_is_refused_with_a_hint(store_url):
    result = run(store_url, "signal", stdin=json.dumps(Alerts().base(52000, 51900, 100)))
    assert result.returncode == 3
    assert b"ledger migrate" in result.stderr


def test_trader_session_entry_mark_exit_history_and_books(store_url):
    assert run(store_url, "migrate").returncode == 0
    assert b"nothing to do" in run(store_url, "migrate").stderr  # idempotent

    alerts = Alerts()
    entry = run(store_url, "signal", "-", stdin=json.dumps(alerts.base(52000, 51900, 100)))
    assert entry.returncode == 0, entry.stderr
    decision = lines(entry)[0]
    assert (decision["decision"], decision["lots"], decision["duplicate"]) == ("accepted", 7, False)
    assert {"fingerprint", "position_id", "limiter", "reasons", "events"} <= set(decision)

    bar, exit_ = alerts.mark(52500, 100), alerts.exit("Long_1", 52400)
    batch = "\n".join(json.dumps(a) for a in [bar, exit_])
    out = run(store_url, "signal", "--each", "-", stdin=batch + "\n")
    assert out.returncode == 0 and [d["signal_type"] for d in lines(out)] == ["MARKET_DATA", "EXIT"]

    history = run(store_url, "history", decision["position_id"], "--json")
    events = json.loads(history.stdout)["events"]
    assert [e["type"] for e in events] == ["PositionOpened", "StopTrailed", "Exited"]
    assert events[-1]["state"]["status"] == "closed"
    text = run(store_url, "history", decision["position_id"]).stdout.decode()
    assert "Exited" in text and "pnl=98000.00" in text

    books = json.loads(run(store_url, "portfolio", "--json").stdout)
    assert books["closed_equity"] == "5098000.00" and books["open_positions"] == []
    assert {"total_risk_percent", "margin_used", "equity"} <= set(books)


def test_redelivery_is_marked_duplicate(store_url):
    run(store_url, "migrate")
    alert = json.dumps(Alerts().base(52000, 51900, 100))
    first, again = (lines(run(store_url, "signal", stdin=alert))[0] for _ in range(2))
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["fingerprint"] == first["fingerprint"]
    assert again["position_id"] == first["position_id"]


def test_invalid_input_names_every_problem_and_appends_nothing(store_url):
    run(store_url, "migrate")
    bad = run(store_url, "signal", stdin='{"type": "PYRAMID", "instrument": "XAU", "price": 0}')
    assert bad.returncode == 2
    problems = {p["field"] for p in lines(bad)[0]["problems"]}
    assert problems == {"instrument", "position", "price", "timestamp", "stop", "atr", "er"}
    assert b"instrument: unknown instrument 'XAU'" in bad.stderr
    assert run(store_url, "signal", stdin="not json").returncode == 2
    books = json.loads(run(store_url, "portfolio", "--json").stdout)
    assert books["version"] == 1  # never decided anything: the portfolio was never opened


def test_each_reports_bad_lines_and_decides_the_good_ones(store_url):
    run(store_url, "migrate")
    alerts = Alerts()
    batch = f"{json.dumps(alerts.base(52000, 51900, 100))}\n{{oops\n" \
            f"{json.dumps(alerts.mark(52100, 100))}\n"
    out = run(store_url, "signal", "--each", stdin=batch)
    assert out.returncode == 2
    decided = lines(out)
    assert [d.get("decision") or d["error"] for d in decided] == [
        "accepted", "invalid_signal", "accepted"]
    assert decided[1]["line"] == 2


def test_unknown_position_and_portfolio(store_url):
    run(store_url, "migrate")
    assert run(store_url, "history", "default:BANK_NIFTY:Long_1:9").returncode == 4
    assert run(store_url, "portfolio", "--portfolio", "nope").returncode == 4


def test_configured_portfolio_via_ledger_config(store_url, tmp_path):
    config = tmp_path / "ledger.toml"
    config.write_text('[portfolios.swing]\ninitial_capital = "10000000"\n')
    run(store_url, "migrate", config=str(config))
    out = run(store_url, "signal", "--portfolio", "swing", config=str(config),
              stdin=json.dumps(Alerts().base(52000, 51900, 100)))
    decision = lines(out)[0]
    assert decision["position_id"].startswith("swing:") and decision["lots"] == 14
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[portfolios.swing]\ncapital = 1\n")
    refused = run(store_url, "portfolio", config=str(bad_config))
    assert refused.returncode == 2 and b"unknown key 'capital'" in refused.stderr


def test_stats_from_the_log_equal_the_trading_statistics_table(store_url):
    run(store_url, "migrate")
    alerts = Alerts()
    batch = [alerts.base(52000, 51900, 100), alerts.pyramid("Long_2", 52400, 52300, 100),
             alerts.exit("Long_2", 52700), alerts.exit("Long_5", 52700)]
    run(store_url, "signal", "--each", stdin="\n".join(json.dumps(a) for a in batch) + "\n")
    # Before any projection runner: the log has the figures already.
    out = run(store_url, "stats", "--json")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    (default,) = answer["statistics"]
    assert (default["portfolio"], default["trades"], default["signals_decided"],
            default["signals_rejected"]) == ("default", 1, 4, 1)
    assert run(store_url, "project", "--once").returncode == 0
    with Ledger(default_config(), store_url) as ledger:
        assert ProjectionReads(ledger).statistics(portfolio=None) == answer
    assert json.loads(run(store_url, "stats", "--portfolio", "default", "--json").stdout) == answer

    text = run(store_url, "stats").stdout.decode()
    assert f"at position {answer['log_position']}" in text
    assert "trades                 1" in text and "net_pnl" in text
    assert run(store_url, "stats", "--portfolio", "nobody").returncode == 4
    assert run(store_url, "stats", "--portfolio", "Bad Name").returncode == 2
