"""The ``ledger`` command: a thin entry point over ``service.bootstrap``.

Exit codes: 0 done (an accepted or a rejected decision both count), 1 `verify` found the
tables differ from the log, 2 invalid input (nothing appended), 3 store not ready (unreachable
or not migrated), 4 not found, 5 contended.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any

from eventsourcing.persistence import PersistenceError

import migrations
from ledger import wire
from ledger.application import (
    DecisionContended,
    Ledger,
    StoreNotReady,
    UnknownPortfolio,
    UnknownPosition,
    UnknownSignal,
)
from ledger.config import ConfigError, is_portfolio_name, load_config
from ledger.domain import Position
from ledger.signals import InvalidSignal, Problem, is_fingerprint, parse_instant
from ledger.storage import StoreUrlError
from projections.rows import order_row as rows_of
from service import bootstrap
from service.jobs.settings import JobSettingsError
from service.progress import Progress

EXIT_OK, EXIT_INVALID, EXIT_STORE, EXIT_NOT_FOUND, EXIT_CONTENDED = 0, 2, 3, 4, 5
EXIT_DIFFERS = 1  # `ledger verify`: the tables differ from the log


def _out(obj: Any, *, pretty: bool = False) -> None:
    sys.stdout.buffer.write(wire.dumps(obj, pretty=pretty) + b"\n")
    sys.stdout.flush()


def _err(message: str) -> None:
    print(f"ledger: {message}", file=sys.stderr)


def _invalid(problems: list[Problem], line: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": "invalid_signal",
                            "problems": [p.as_dict() for p in problems]}
    if line is not None:
        body["line"] = line
    where = f"line {line}: " if line is not None else ""
    for p in problems:
        _err(f"{where}{p.field}: {p.message}")
    return body


def _open_ledger(args: argparse.Namespace, *, ready: bool = True,
                 migrated: bool = False) -> Ledger:
    return bootstrap.open_ledger(load_config(args.config), args.database_url, ready=ready,
                                 migrated=migrated)


def cmd_migrate(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args, ready=False)
    steps, leftovers = bootstrap.migrate(ledger)
    done = ", ".join(steps) if steps else "nothing to do"
    _err(f"migrated {ledger.store.redacted_url}: {done}")
    if leftovers:
        _err(f"dropped {len(leftovers)} copy tables a killed rebuild left: "
             f"{', '.join(leftovers)}")
    return EXIT_OK


def _read_input(source: str) -> IO[bytes]:
    if source == "-":
        return sys.stdin.buffer
    return open(source, "rb")


def _lines(stream: IO[bytes], body_bytes_max: int) -> Iterator[tuple[int, bytes | None]]:
    for number, line in enumerate(stream, start=1):
        if len(line) > body_bytes_max:
            yield number, None
        elif line.strip():
            yield number, line


def cmd_signal(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args)
    limit = ledger.config.limits.body_bytes_max
    with _read_input(args.file) as stream:
        if not args.each:
            body = stream.read(limit + 1)
            if len(body) > limit:
                _out(_invalid([Problem("body", f"is larger than {limit} bytes")]))
                return EXIT_INVALID
            try:
                decision = ledger.decide(body, args.portfolio)
            except InvalidSignal as e:
                _out(_invalid(e.problems))
                return EXIT_INVALID
            _out(decision.as_dict())
            return EXIT_OK
        status = EXIT_OK
        for number, line in _lines(stream, limit):
            try:
                if line is None:
                    raise InvalidSignal([Problem("body", f"is larger than {limit} bytes")])
                _out(ledger.decide(line, args.portfolio).as_dict())
            except InvalidSignal as e:
                _out(_invalid(e.problems, number))
                status = EXIT_INVALID
        return status


def _history_line(entry: dict[str, Any]) -> str:
    s, e = entry["state"], entry["event"]
    details: dict[type, Callable[[], str]] = {
        Position.PositionOpened: lambda: (f"lots={s['lots']} entry={s['entry_price']} "
                                          f"stop={s['initial_stop']} limiter={s['limiter']}"),
        Position.StopTrailed: lambda: (f"close={e['close']} stop {e['previous_stop']} -> "
                                       f"{e['current_stop']}"),
        Position.StopBreached: lambda: f"close={e['close']} <= stop {e['current_stop']}",
        Position.PositionReduced: lambda: (f"-{e['lots_closed']} lots at {e['price']} "
                                           f"pnl={wire.money(e['realized_pnl'])}"),
        Position.Exited: lambda: (f"exit={e['exit_price']} "
                                  f"pnl={wire.money(e['realized_pnl'])} ({e['reason']})"),
        Position.RolledOver: lambda: (f"{e['old_expiry']} -> {e['new_expiry']} "
                                      f"pnl={wire.money(e['rollover_pnl'])}"),
    }
    # Keyed by the event classes themselves: renaming one breaks here, loudly.
    detail = {cls.__name__: line for cls, line in details.items()}.get(entry["type"],
                                                                       lambda: "")()
    return (f"v{entry['version']:<3} {entry['type']:<16} status={s['status']:<7} "
            f"{_cause(entry.get('signal')):<24} {detail}")


def _cause(signal: dict[str, Any] | None) -> str:
    """What caused an event, short: the signal's fingerprint prefix and type, or a command."""
    if signal is None:
        return "-"
    if "fingerprint" in signal:
        return f"{signal['fingerprint'][:12]} {signal['signal_type']}"
    return str(signal.get("command_id", "-"))


def cmd_history(args: argparse.Namespace) -> int:
    ledger = _open_ledger(args)
    try:
        entries = ledger.position_history(args.position_id)
    except UnknownPosition:
        _err(f"no position {args.position_id!r}")
        return EXIT_NOT_FOUND
    if args.json:
        _out({"position_id": args.position_id, "events": entries}, pretty=True)
    else:
        print(args.position_id)
        for entry in entries:
            print(_history_line(entry))
    return EXIT_OK


def cmd_portfolio(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    as_of = None if args.as_of is None else parse_instant(args.as_of, "--as-of", problems)
    known_at = (None if args.known_at is None
                else parse_instant(args.known_at, "--known-at", problems))
    if problems:
        for p in problems:
            _err(f"{p.field}: {p.message}")
        return EXIT_INVALID
    ledger = _open_ledger(args)
    try:
        summary = (ledger.portfolio_summary(args.portfolio)
                   if as_of is None and known_at is None
                   else ledger.portfolio_view(args.portfolio, as_of=as_of, known_at=known_at))
    except UnknownPortfolio:
        _err(f"unknown portfolio {args.portfolio!r}")
        return EXIT_NOT_FOUND
    if args.json:
        _out(summary, pretty=True)
        return EXIT_OK
    for key, value in summary.items():
        if key not in ("open_positions", "pyramiding_state"):
            print(f"{key:<20} {value}")
    print(f"open positions       {len(summary['open_positions'])}")
    for p in summary["open_positions"]:
        print(f"  {p['position_id']:<40} lots={p['lots']:<3} entry={p['entry_price']} "
              f"stop={p['current_stop']} mark={p['mark']} pnl={p['unrealized_pnl']}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    # From the log, not the tables: like `portfolio` and `history`, the command answers
    # without a projection runner or migrated tables, and its figures are the ledger's own
    # (the same rows the tables hold once they reach the same log position).
    from projections.read_model import statistics_from_log

    if args.portfolio is not None and not is_portfolio_name(args.portfolio):
        _err("--portfolio: a portfolio name is 1-32 of a-z, 0-9, '_' or '-'")
        return EXIT_INVALID
    ledger = _open_ledger(args)
    progress = Progress("stats", ledger.config.limits.progress_every_events)
    try:
        answer = statistics_from_log(ledger, portfolio=args.portfolio, progress=progress)
    except UnknownPortfolio:
        _err(f"unknown portfolio {args.portfolio!r}")
        return EXIT_NOT_FOUND
    finally:
        progress.done()
    if args.json:
        _out(answer, pretty=True)
        return EXIT_OK
    print(f"statistics from the log at position {answer['log_position']}")
    if not answer["statistics"]:
        print("nothing decided yet")
    for row in answer["statistics"]:
        print()
        for key, value in row.items():
            print(f"{key:<22} {'-' if value is None else value}")
    return EXIT_OK


def cmd_project(args: argparse.Namespace) -> int:
    import signal

    runner = bootstrap.projection_runner(load_config(args.config), args.database_url)
    ledger = runner.ledger
    if args.once:
        progress = Progress("project", ledger.config.limits.progress_every_events)
        head = ledger.recorder.max_notification_id() or 0
        applied = 0
        try:
            while n := runner.step():
                applied += n
                assert runner.projector is not None
                progress(runner.projector.position, head)
        finally:
            progress.done()
        _out({"applied": applied, "position": runner.projector.position if runner.projector
              else 0})
        return EXIT_OK
    signal.signal(signal.SIGTERM, lambda *_: runner.stop_soon())
    url = ledger.store.redacted_url

    def role(leading: bool) -> None:
        _err(f"leading: projecting {url}" if leading else
             f"standing by: another runner leads on {url}; taking over if it stops")

    try:
        runner.run(on_role=role)
    except KeyboardInterrupt:
        pass
    finally:
        runner.leadership.release()
    return EXIT_OK


def cmd_rebuild(args: argparse.Namespace) -> int:
    from projections.rebuild import UnknownProjection, rebuild

    ledger = _open_ledger(args, migrated=True)

    def progress(position: int, target: int) -> None:
        _err(f"replayed {position} of {target}")

    try:
        report = rebuild(ledger, args.names or None, progress=progress)
    except UnknownProjection as e:
        _err(str(e))
        return EXIT_INVALID
    _err(f"rebuilt {', '.join(report.tables)}: {report.events} events in "
         f"{report.seconds:.2f} s ({report.events_per_s:,.0f} events/s), at log position "
         f"{report.position}")
    _out(report.as_dict())
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from projections.verify import render, verify
    from service.jobs import SystemClock, signal_log_horizon

    days = bootstrap.job_settings().retention_days  # as the leader's retention job reads it
    ledger = _open_ledger(args, migrated=True)
    progress = Progress("verify", ledger.config.limits.progress_every_events)
    try:
        position, diffs = verify(ledger, signal_log_horizon=signal_log_horizon(
            SystemClock().now(), days), progress=progress)
    finally:
        progress.done()
    print(render(position, diffs, ledger.recorder.max_notification_id() or 0))
    return EXIT_DIFFERS if diffs else EXIT_OK


def cmd_trail(args: argparse.Namespace) -> int:
    if not is_fingerprint(args.fingerprint):
        _err(f"fingerprint: must be 64 lowercase hex digits (as a decision's `fingerprint`); "
             f"got {args.fingerprint!r}")
        return EXIT_INVALID
    from projections.read_model import with_projection_rows

    ledger = _open_ledger(args)
    try:
        trail = ledger.signal_trail(args.fingerprint)
    except UnknownSignal:
        _err(f"no signal {args.fingerprint!r}")
        return EXIT_NOT_FOUND
    if not migrations.missing(ledger):
        trail = with_projection_rows(ledger, trail)
    if args.json:
        _out(trail, pretty=True)
    else:
        for line in _trail_lines(trail):
            print(line)
    return EXIT_OK


def _trail_lines(trail: dict[str, Any]) -> Iterator[str]:
    d = trail["decision"]
    yield (f"{trail['fingerprint']}  {trail['signal_type']} {trail['instrument']} "
           f"{trail['position'] or ''} price={d['price']} at {trail['signal_timestamp']} "
           f"(portfolio {trail['portfolio']})")
    outcome = (f"lots={d['lots']} limiter={d['limiter']}" if d["lots"] is not None
               else ", ".join(r["code"] for r in d["reasons"]))
    affected = " ".join(d["position_ids"])
    yield f"decision  {d['decision']} {outcome} {affected}".rstrip()
    for delivery in trail["deliveries"]:
        yield (f"delivery  {delivery['delivery']:<3} {delivery['received_at']} "
               f"{delivery['instance_id']}{'  duplicate' if delivery['duplicate'] else ''}")
    for e in trail["events"]:
        yield f"event     {e['stream']} v{e['version']} {e['type']} at {e['recorded_at']}"
    if "projection_rows" in trail:
        rows = trail["projection_rows"]
        at = f"(tables at log position {rows['log_position']})"
        signal = rows["signal_log"]
        yield (f"signal_log          id={signal['id']} deliveries={signal['deliveries']} {at}"
               if signal else f"signal_log          not projected yet {at}")
        for position_id, row in rows["portfolio_positions"].items():
            yield (f"portfolio_positions {position_id} status={row['status']} lots={row['lots']} "
                   f"stop={row['current_stop']}" if row else
                   f"portfolio_positions {position_id} not projected yet")


def _desk(args: argparse.Namespace) -> Any:
    ledger = _open_ledger(args, migrated=True)
    return bootstrap.desk(ledger)


def cmd_orders(args: argparse.Namespace) -> int:
    """The order desk's orders (newest decision last), from the orders table."""
    desk = _desk(args)
    rows = [rows_of(o) for o in desk.orders()
            if args.state is None or o.status == args.state]
    if args.json:
        _out({"orders": rows}, pretty=True)
        return EXIT_OK
    for r in rows:
        print(f"{r['intent_id'][:8]} {r['status']:<16} {r['purpose']:<10} {r['side']:<4} "
              f"{r['quantity']:>6} {r['symbol']:<28} {r['broker_order_id'] or '-':<16} "
              f"filled={r['filled_quantity']} avg={r['average_price'] or '-'}")
    return EXIT_OK


def cmd_halt(args: argparse.Namespace) -> int:
    desk = _desk(args)
    changed = desk.halt(args.reason)
    _err("order desk halted: nothing is sent until `ledger resume`" if changed
         else "the order desk was halted already")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    desk = _desk(args)
    _err("order desk resumed: intents recorded meanwhile go out now" if desk.resume()
         else "the order desk was not halted")
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Compare the ledger's open quantities with the broker's (exit 1 on any mismatch)."""
    findings = _desk(args).reconcile()
    if args.json:
        _out({"findings": findings}, pretty=True)
    else:
        for f in findings:
            print(f"{f['kind']:<18} {f['symbol']:<28} {f['exchange']:<4} "
                  f"ledger={f['ledger_quantity']} broker={f['broker_quantity']}")
        if not findings:
            print("the broker holds what the ledger does")
    return EXIT_DIFFERS if findings else EXIT_OK


def cmd_roll_due(args: argparse.Namespace) -> int:
    """Run the leader's rollover scan once, now or at ``--at``. Unfenced: it is the operator's
    explicit command. Running it while the leader's job runs is still safe: each roll is
    idempotent per (position, expiry) and the position's stream version lets one of two
    concurrent rolls commit."""
    from service.jobs import RolloverJob, SystemClock

    problems: list[Problem] = []
    at = None if args.at is None else parse_instant(args.at, "--at", problems)
    if problems:
        for p in problems:
            _err(f"{p.field}: {p.message}")
        return EXIT_INVALID
    settings = bootstrap.job_settings()
    ledger = _open_ledger(args)
    job = RolloverJob(ledger, ledger.config, _FixedClock(at) if at else SystemClock(),
                      roll_at=settings.roll_at)
    report = job.roll_due(dry_run=args.dry_run)
    for item in report.done:
        _err(f"rolled {item['position_id']} from {item['from_expiry']} to "
             f"{item['to_expiry']} at {item['price']}")
    for item in report.facts.get("due", []):
        _err(f"due: {item['position_id']} from {item['from_expiry']} at {item['price']} "
             f"({item['trading_days_left']} trading days left)")
    for item in (*report.skipped, *report.errors):
        _err(f"not rolled: {item['position_id']}: {item.get('reason') or item.get('error')}")
    _out(report.as_dict(), pretty=True)
    return EXIT_OK if not report.errors else EXIT_CONTENDED


class _FixedClock:
    """`roll-due --at`: the scan and the rolls happen at that instant."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    from service.serve import run  # the HTTP stack loads only for this command

    return run(args)


DESCRIPTION = """\
Portfolio Ledger: an event-sourced trading ledger. TradingView alerts come in (`ledger signal`,
or the webhook of `ledger serve`); each is decided exactly once however often it is delivered:
sized by risk, volatility and margin limits, pyramided, its stops trailed, its breaches
recorded, closed. Every decision is a set of events appended to one log, and the books,
positions, histories and statistics are read back from that log."""

EXIT_CODES = """\
exit codes:
  0  done: a decision was made (accepted or rejected both count), or the command did its work
  1  `verify`: the projection tables differ from the log; `reconcile`: an open quantity
     differs from the broker's
  2  invalid input: a bad alert, option, time or configuration (every problem named on
     stderr); nothing was appended
  3  store not ready: unreachable, or not migrated (run `ledger migrate`)
  4  not found: no such position, portfolio or signal
  5  contended: every attempt at a decision lost a version conflict; nothing was decided
     (`roll-due`: a roll failed, named on stderr)"""

ENVIRONMENT = """\
environment:
  LEDGER_DATABASE_URL    the event store: sqlite:///FILE or
                         postgresql://user:pass@host:port/db[?schema=name]
                         (default sqlite:///ledger.sqlite3); --database-url overrides it
  LEDGER_CONFIG          TOML configuration: instruments, portfolios, holidays, limits
                         (default: built in, docs/RULES.md); --config overrides it
  LEDGER_REDIS_URL       `serve`: Redis for leader election across instances, e.g.
                         redis://HOST:6379/0 (default: none; the store elects)
  LEDGER_WEBHOOK_SECRET  `serve`: the `secret` every alert must carry (required unless
                         listening on loopback only)
  LEDGER_API_TOKEN       `serve`: bearer token for the read endpoints (default: none, reads
                         are open)
  (`serve` and the leader's jobs have more, each bounded and named with its unit:
  docs/API.md, docs/HA.md, docs/ORDERS.md)"""

GLOBAL_OPTIONS_NOTE = ("--config and --database-url may come before or after the command: "
                       "`ledger --database-url URL portfolio` and `ledger portfolio "
                       "--database-url URL` are the same.")


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--config", default=default, metavar="FILE",
                        help="TOML configuration file (default: $LEDGER_CONFIG, else the "
                             "built-in instruments and the `default` portfolio)")
    parser.add_argument("--database-url", default=default, metavar="URL",
                        help="the event store, sqlite:///FILE or postgresql://... (default: "
                             "$LEDGER_DATABASE_URL, else sqlite:///ledger.sqlite3)")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on a failure, print the traceback after the one-line reason")


def _command_options(commands: argparse._SubParsersAction) -> str:
    """Every command with its options explained, from the parsers themselves (never stale)."""
    lines = ["commands and their options (also `ledger COMMAND --help`):"]
    for name, sub in commands.choices.items():
        actions = [a for a in sub._actions
                   if a.help is not argparse.SUPPRESS
                   and a.dest not in ("help", "config", "database_url", "debug")]
        usage = " ".join(_usage_of(a) for a in actions)
        lines.append(f"  {name} {usage}".rstrip())
        lines += textwrap.wrap(sub.description or "", width=HELP_WIDTH,
                               initial_indent="      ", subsequent_indent="      ")
        for a in actions:
            label = _usage_of(a).strip("[]").removesuffix(" ...")
            lines += textwrap.wrap(f"{label}: {a.help % vars(a) if a.help else ''}",
                                   width=HELP_WIDTH, initial_indent="      - ",
                                   subsequent_indent="        ")
    return "\n".join(lines)


def _usage_of(action: argparse.Action) -> str:
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    if not action.option_strings:
        return {"?": f"[{metavar}]", "*": f"[{metavar} ...]"}.get(str(action.nargs), metavar)
    flag = action.option_strings[0]
    return f"[{flag}]" if action.nargs == 0 else f"[{flag} {metavar}]"


HELP_WIDTH = 94  # characters per line of the generated command list


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ledger", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(parser, None)
    # The same options after the command. SUPPRESS: absent there, they leave the value given
    # before the command (or its default) alone.
    after = argparse.ArgumentParser(add_help=False)
    _global_options(after, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pointer = "Exit codes and environment variables: `ledger --help`."

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=description,
                                   epilog=f"{GLOBAL_OPTIONS_NOTE} {pointer}",
                                   parents=[after])

    command("migrate", "create or upgrade the store's tables",
            "Create the event store's tables and apply every missing schema migration "
            "(idempotent: run it once per deployment, before any instance starts).")

    json_help = "print JSON (the same keys as the HTTP answer) instead of text"
    signal = command("signal", "decide alert JSON and print the decision",
                     "Decide TradingView alerts (JSON bodies, as the webhook takes them) and "
                     "print each decision as one JSON line: accepted or rejected, with its "
                     "reasons, sizing and events.")
    signal.add_argument("file", nargs="?", default="-", metavar="FILE",
                        help="the alert JSON file, or - for stdin (the default)")
    signal.add_argument("--each", action="store_true",
                        help="one alert per line in, one decision per line out; a bad line "
                             "is reported and the rest are still decided (exit 2 if any was "
                             "bad)")
    signal.add_argument("--portfolio", default="default", metavar="NAME",
                        help="the portfolio that decides (default: default)")

    history = command("history", "a position's events, replayed",
                      "A position's events from its stream, oldest first, each with the "
                      "state after it and the signal (or roll command) that caused it.")
    history.add_argument("position_id", metavar="POSITION_ID",
                         help="as a decision names it, e.g. default:BANK_NIFTY:Long_1:1")
    history.add_argument("--json", action="store_true", help=json_help)

    portfolio = command("portfolio", "the books, replayed from the store",
                        "Equity, closed equity, risk, volatility, margin and open positions "
                        "of one portfolio: now, as of a bar time (--as-of), or as the ledger "
                        "knew them at a recording time (--known-at).")
    portfolio.add_argument("--portfolio", default="default", metavar="NAME",
                           help="which portfolio (default: default)")
    portfolio.add_argument("--as-of", default=None, metavar="TIME",
                           help="the books as of bar time TIME: every decision whose signal "
                                "time is at or before it, e.g. 2025-11-28T10:30:00Z (a time "
                                "zone is required)")
    portfolio.add_argument("--known-at", default=None, metavar="TIME",
                           help="what the ledger knew at TIME (recording time, for audit): "
                                "every decision recorded at or before it; with --as-of, both")
    portfolio.add_argument("--json", action="store_true", help=json_help)

    project = command("project", "keep the projection tables current (one runner leads)",
                      "Apply the log to the projection tables and keep them current. One "
                      "runner leads per store; another stands by and takes over if it stops. "
                      "Says on stderr when it leads and when it stands by.")
    project.add_argument("--once", action="store_true",
                         help="apply what the log has now, print {applied, position}, exit "
                              "(progress on stderr)")

    rebuild = command("rebuild-projections", "rebuild tables from the log and swap them in",
                      "Rebuild projection tables from the whole log into copies, then swap "
                      "them in (readers never see a half-built table).")
    rebuild.add_argument("names", nargs="*", metavar="NAME",
                         help="tables to rebuild (default: all)")

    stats = command("stats", "trading statistics per portfolio, from the log",
                    "Trades, win rate, P&L, profit factor, rollovers, signals and drawdown "
                    "per portfolio, computed from the whole log (the rows `GET /statistics` "
                    "serves from its table; progress on stderr).")
    stats.add_argument("--portfolio", default=None, metavar="NAME",
                       help="one portfolio (default: every portfolio that decided anything)")
    stats.add_argument("--json", action="store_true", help=json_help)

    command("verify", "replay the log and compare every projection table",
            "Replay the log and compare every projection table with it, row by row; exit 1 "
            "naming each difference (progress on stderr).")

    trail = command("trail", "a signal's deliveries, decision and events",
                    "One signal: every delivery, its decision, the events that decision "
                    "appended, and the rows the projection tables hold for it.")
    trail.add_argument("fingerprint", metavar="FINGERPRINT",
                       help="the decision's fingerprint (64 lowercase hex digits)")
    trail.add_argument("--json", action="store_true", help=json_help)

    orders = command("orders", "the order desk's orders and their states",
                     "The orders the order desk has recorded (docs/ORDERS.md), newest "
                     "decision first, each with its state.")
    orders.add_argument("--state", default=None, metavar="STATE",
                        help="only orders in this state (e.g. unknown, sent, filled, rejected)")
    orders.add_argument("--json", action="store_true", help=json_help)
    halt = command("halt", "kill switch: stop sending orders (intents are still recorded)",
                   "The kill switch: the order desk sends nothing until `ledger resume`; "
                   "decisions and their order intents are still recorded.")
    halt.add_argument("--reason", default="operator", metavar="TEXT",
                      help="recorded with the halt (default: operator)")
    command("resume", "send again, starting with what was held",
            "Lift the kill switch: intents recorded while halted are sent first.")
    reconcile = command("reconcile", "compare open quantities with the broker's (exit 1 on a "
                                     "mismatch)",
                        "Compare the ledger's open quantities with the broker's position "
                        "book and name each mismatch; exit 1 if there is one.")
    reconcile.add_argument("--json", action="store_true", help=json_help)

    roll_due = command("roll-due", "roll every position whose contract is due, once",
                       "Run the rollover scan once (the leader does this on a schedule): "
                       "roll every open position inside its roll window; print the report.")
    roll_due.add_argument("--at", default=None, metavar="TIME",
                          help="scan and roll as at this instant, e.g. 2025-11-25T04:00:00Z "
                               "(a time zone is required; default: now)")
    roll_due.add_argument("--dry-run", action="store_true",
                          help="list what is due; roll nothing")

    serve = command("serve", "the HTTP service: webhook, books, health",
                    "The HTTP service on Hypercorn: the webhook, the reads, health and "
                    "metrics (docs/API.md). SIGTERM or SIGINT stops it gracefully.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; any but loopback needs "
                            "LEDGER_WEBHOOK_SECRET)")
    serve.add_argument("--port", type=int, default=8080,
                       help="port to listen on (default 8080; 0 picks a free port)")
    serve.add_argument("--access-log", action="store_true", help="log each request line")
    serve.add_argument("--migrate", action="store_true",
                       help="apply missing migrations first (one instance: the embedded "
                            "SQLite file, a single container; with several instances run "
                            "`ledger migrate` once instead)")

    parser.epilog = "\n\n".join([_command_options(commands),
                                  textwrap.fill(GLOBAL_OPTIONS_NOTE, width=HELP_WIDTH),
                                  EXIT_CODES, ENVIRONMENT])
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": cmd_migrate,
    "signal": cmd_signal,
    "history": cmd_history,
    "portfolio": cmd_portfolio,
    "stats": cmd_stats,
    "project": cmd_project,
    "rebuild-projections": cmd_rebuild,
    "verify": cmd_verify,
    "trail": cmd_trail,
    "roll-due": cmd_roll_due,
    "serve": cmd_serve,
    "orders": cmd_orders,
    "halt": cmd_halt,
    "resume": cmd_resume,
    "reconcile": cmd_reconcile,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = _run(args)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        # Whoever read our output stopped reading (`ledger history ID | head -1`): there is no
        # one left to tell anything. Point stdout at /dev/null so the interpreter's last
        # flush cannot fail again, and end quietly, as `cat` and `grep` do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, StoreUrlError, JobSettingsError, bootstrap.BrokerSettingsError) as e:
        return _failed(args, str(e), EXIT_INVALID)
    except FileNotFoundError as e:
        return _failed(args, f"{e.filename}: no such file", EXIT_INVALID)
    except (StoreNotReady, PersistenceError) as e:
        return _failed(args, f"store not ready: {e}", EXIT_STORE)
    except DecisionContended as e:
        return _failed(args, str(e), EXIT_CONTENDED)


def _failed(args: argparse.Namespace, reason: str, status: int) -> int:
    """One line naming the cause; the traceback only when asked (``--debug``)."""
    _err(reason)
    if getattr(args, "debug", False):
        traceback.print_exc()
    return status


if __name__ == "__main__":
    sys.exit(main())
