"""The `ledger` command, run as a trader runs it: a real process, on SQLite and on Postgres."""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ledger.application import Ledger
from ledger.config import default_config
from projections.read_model import ProjectionReads
from service.cli import build_parser
from service.progress import PROGRESS_LINES_MAX
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


# --- the operator's path: help, options, pipes, roles, progress ------------------------------

ENV_VARS = ("LEDGER_DATABASE_URL", "LEDGER_CONFIG", "LEDGER_REDIS_URL", "LEDGER_WEBHOOK_SECRET",
            "LEDGER_API_TOKEN")
WAIT_S = 30  # longest a test waits for a process to say something


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (commands,) = [a for a in build_parser()._actions
                   if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_help_says_what_the_ledger_does_every_option_exit_codes_and_environment(tmp_path):
    out = run(f"sqlite:///{tmp_path / 'unused.sqlite3'}", "--help")
    assert out.returncode == 0 and out.stderr == b""
    text = out.stdout.decode()
    assert "event-sourced trading ledger" in text and "exactly once" in text
    for name, parser in subcommands().items():
        assert f"\n  {name}" in text, name
        for action in parser._actions:
            assert action.help, (name, action.dest)  # every option explained
            for flag in action.option_strings:
                if flag not in ("-h", "--help", "--config", "--database-url", "--debug"):
                    assert f"- {flag}" in text, (name, flag)
    assert "--portfolio NAME: which portfolio" in text and "--json: print JSON" in text
    epilog = text[text.index("exit codes:"):]
    for code in range(6):
        assert f"\n  {code}  " in epilog, code
    for variable in ENV_VARS:
        assert f"\n  {variable}" in epilog, variable
    assert "before or after the command" in text
    sub = run(f"sqlite:///{tmp_path / 'unused.sqlite3'}", "stats", "--help").stdout.decode()
    assert "--portfolio NAME" in sub and "--json" in sub and "--database-url URL" in sub


def test_global_options_go_before_or_after_the_command(store_url, tmp_path):
    run(store_url, "migrate")
    run(store_url, "signal", stdin=json.dumps(Alerts().base(52000, 51900, 100)))
    elsewhere = f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}"  # what the environment says
    for args in (["--database-url", store_url, "portfolio", "--json"],
                 ["portfolio", "--database-url", store_url, "--json"],
                 ["portfolio", "--json", "--database-url", store_url]):
        out = run(elsewhere, *args)
        assert out.returncode == 0, (args, out.stderr)
        assert json.loads(out.stdout)["open_positions"][0]["position_id"].startswith("default:")
    assert run(elsewhere, "portfolio").returncode == 3  # without the option: not migrated
    config = tmp_path / "ledger.toml"
    config.write_text('[portfolios.swing]\ninitial_capital = "10000000"\n')
    after = run(store_url, "portfolio", "--portfolio", "swing", "--config", str(config))
    before = run(store_url, "--config", str(config), "portfolio", "--portfolio", "swing")
    assert after.returncode == before.returncode == 0 and after.stdout == before.stdout
    assert run(store_url, "portfolio", "--portfolio", "swing").returncode == 4


def many_events(store_url: str, marks: int) -> str:
    """A base trailed by ``marks`` rising bars: its history has marks + 1 events."""
    with Ledger(default_config(), store_url) as ledger:
        alerts = Alerts(step_s=1)
        base = ledger.decide(alerts.base(52000, 51900, 100))
        for i in range(marks):
            ledger.decide(alerts.mark(52010 + 10 * i, 100))
        return base.position_id


def ledger_command(store_url: str) -> str:
    return f"LEDGER_DATABASE_URL='{store_url}' '{sys.executable}' -m service.cli"


def test_output_to_a_reader_that_stops_reading_ends_quietly(store_url):
    run(store_url, "migrate")
    position_id = many_events(store_url, 120)
    env = {**os.environ, "LEDGER_DATABASE_URL": store_url}
    env.pop("LEDGER_CONFIG", None)
    for args in ([], ["--json"]):
        # The reader is gone before the ledger writes a byte: every write fails (EPIPE).
        with subprocess.Popen([sys.executable, "-m", "service.cli", "history", position_id,
                               *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env) as gone:
            gone.stdout.close()
            assert gone.wait(timeout=60) == 0, args
            assert gone.stderr.read() == b"", args
        # As an operator pipes it: `head` stops reading after the first line.
        out = subprocess.run(["bash", "-c", f"set -o pipefail; {ledger_command(store_url)} "
                                            f"history '{position_id}' {' '.join(args)} "
                                            f"| head -1"],
                             capture_output=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert out.stderr == b"" and len(out.stdout.splitlines()) == 1


def read_until(stream, needle: bytes, timeout_s: float = WAIT_S) -> bytes:
    """What ``stream`` says until ``needle`` (bounded: fails after ``timeout_s``)."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"waited {timeout_s} s for {needle!r}; got {seen!r}"
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"closed before {needle!r}; got {seen!r}"
            seen += chunk
    return seen


@contextmanager
def started(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A process that is stopped (SIGTERM, then SIGKILL after ``WAIT_S``) whatever happens."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stderr.close()


LEADING, STANDING_BY = b"ledger: leading:", b"ledger: standing by:"


def test_project_says_leading_when_it_leads_and_standing_by_only_while_it_stands_by(
        store_url, tmp_path):
    config = tmp_path / "fast.toml"
    config.write_text("[limits]\nprojection_standby_poll_ms = 50\n")
    run(store_url, "migrate")
    env = {**os.environ, "LEDGER_DATABASE_URL": store_url, "LEDGER_CONFIG": str(config)}
    project = [sys.executable, "-m", "service.cli", "project"]
    with started(project, env) as first:
        said = read_until(first.stderr, LEADING)
        assert STANDING_BY not in said
        with started(project, env) as second:
            said = read_until(second.stderr, STANDING_BY)
            assert LEADING not in said
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=WAIT_S) == 0
            said = read_until(second.stderr, LEADING)
            assert STANDING_BY not in said  # said once, when it began standing by
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=WAIT_S) == 0


def progress_config(tmp_path, every: int, batch: int) -> str:
    config = tmp_path / f"progress-{every}-{batch}.toml"
    config.write_text(f"[limits]\nprogress_every_events = {every}\n"
                      f"projection_rebuild_batch_events = {batch}\n"
                      f"projection_batch_events = {batch}\n")
    return str(config)


def test_long_work_off_a_terminal_prints_a_line_every_n_events_bounded(store_url, tmp_path):
    run(store_url, "migrate")
    many_events(store_url, 60)
    head = 4 + 3 * 60  # the base's decision: 4 events; each trailing bar's: 3
    config = progress_config(tmp_path, 40, 7)
    once = run(store_url, "project", "--once", config=config)
    assert once.returncode == 0 and json.loads(once.stdout)["position"] == head
    lines = once.stderr.decode().splitlines()
    # A line each time a batch passes 40, 80, 120 and 160 (batches end between decisions).
    assert len(lines) == 4 and all(line.startswith("project: log position ") and
                                   line.split(" of ")[1].startswith(f"{head} (")
                                   for line in lines), lines
    verified = run(store_url, "verify", config=config)
    assert verified.returncode == 0 and b"every table equals the log" in verified.stdout
    lines = verified.stderr.decode().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"verify: log position {p} of {head}" for p in (42, 84, 126, 161)]
    # A line per event asked for, over more events than the bound: the step widens so that
    # no run prints more than PROGRESS_LINES_MAX lines.
    assert head > PROGRESS_LINES_MAX
    every = run(store_url, "verify", config=progress_config(tmp_path, 1, 1))
    step = -(-head // PROGRESS_LINES_MAX)
    assert every.stderr.decode().splitlines() == [
        f"verify: log position {p} of {head} ({p * 100 // head}%)"
        for p in range(step, head + 1, step)]


def test_long_work_on_a_terminal_is_one_line_redrawn(store_url, tmp_path):
    run(store_url, "migrate")
    many_events(store_url, 40)
    head = 4 + 3 * 40
    env = {**os.environ, "LEDGER_DATABASE_URL": store_url,
           "LEDGER_CONFIG": progress_config(tmp_path, 1000, 7)}
    main, terminal = pty.openpty()
    try:
        with subprocess.Popen([sys.executable, "-m", "service.cli", "project", "--once"],
                              stdout=subprocess.PIPE, stderr=terminal, env=env) as once:
            os.close(terminal)
            terminal = -1
            said = read_until(os.fdopen(main, "rb", buffering=0, closefd=False), b"\n")
            assert json.loads(once.stdout.read())["position"] == head
            assert once.wait(timeout=WAIT_S) == 0
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(main)
    text = said.decode()
    assert text.startswith("\r") and text.count("\n") == 1 and text.endswith("\n")
    assert text.rstrip().endswith(f"project: log position {head} of {head} (100%)\x1b[K")


@pytest.mark.postgres
def test_migrate_creates_the_schema_the_url_names(postgres_database):
    import uuid

    url = f"{postgres_database}?schema=s_{uuid.uuid4().hex[:8]}"
    done = run(url, "migrate")
    assert done.returncode == 0, done.stderr
    assert b"004_orders" in done.stderr
