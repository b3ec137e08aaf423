"""The ``ledger`` command: a thin entry point over ``service.bootstrap``.

Exit codes: 0 done (an accepted or a rejected decision both count), 1 `verify` found the
tables differ from the log, 2 invalid input (nothing appended), 3 store not ready (unreachable
or not migrated), 4 not found, 5 contended.
"""

from __future__ import annotations

import argparse
import sys
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
from ledger.config import ConfigError, load_config
from ledger.domain import Position
from ledger.signals import InvalidSignal, Problem, is_fingerprint, parse_instant
from ledger.storage import StoreUrlError
from projections.rows import order_row as rows_of
from service import bootstrap
from service.jobs.settings import JobSettingsError

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
    at = None if args.as_of is None else parse_instant(args.as_of, "--as-of", problems)
    if problems:
        for p in problems:
            _err(f"{p.field}: {p.message}")
        return EXIT_INVALID
    ledger = _open_ledger(args)
    try:
        summary = (ledger.portfolio_summary(args.portfolio) if at is None
                   else ledger.portfolio_as_of(args.portfolio, at))
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


def cmd_project(args: argparse.Namespace) -> int:
    import signal

    runner = bootstrap.projection_runner(load_config(args.config), args.database_url)
    ledger = runner.ledger
    if args.once:
        applied = runner.catch_up()
        _out({"applied": applied, "position": runner.projector.position if runner.projector
              else 0})
        return EXIT_OK
    signal.signal(signal.SIGTERM, lambda *_: runner.stop_soon())
    _err(f"projecting {ledger.store.redacted_url} (standing by while another runner leads)")
    try:
        runner.run()
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
    position, diffs = verify(ledger, signal_log_horizon=signal_log_horizon(SystemClock().now(),
                                                                           days))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ledger", description="Decide TradingView alerts exactly once and keep the books.")
    parser.add_argument("--config", default=None,
                        help="TOML configuration (default: $LEDGER_CONFIG, else built-in)")
    parser.add_argument("--database-url", default=None,
                        help="event store (default: $LEDGER_DATABASE_URL, else "
                             "sqlite:///ledger.sqlite3)")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="create or upgrade the store's tables")

    signal = commands.add_parser("signal", help="decide alert JSON and print the decision")
    signal.add_argument("file", nargs="?", default="-", help="alert JSON file, or - for stdin")
    signal.add_argument("--each", action="store_true", help="one alert per line in and out")
    signal.add_argument("--portfolio", default="default")

    history = commands.add_parser("history", help="a position's events, replayed")
    history.add_argument("position_id")
    history.add_argument("--json", action="store_true")

    portfolio = commands.add_parser("portfolio", help="the books, replayed from the store")
    portfolio.add_argument("--portfolio", default="default")
    portfolio.add_argument("--as-of", default=None, metavar="TIME",
                           help="the books as they stood then, e.g. 2025-11-28T10:30:00Z "
                                "(a time zone is required)")
    portfolio.add_argument("--json", action="store_true")

    project = commands.add_parser(
        "project", help="keep the projection tables current (one runner leads per store)")
    project.add_argument("--once", action="store_true",
                         help="apply what the log has now, then exit")

    rebuild = commands.add_parser(
        "rebuild-projections", help="rebuild tables from the whole log and swap them in")
    rebuild.add_argument("names", nargs="*", metavar="NAME",
                         help="tables to rebuild (default: all)")

    commands.add_parser("verify", help="replay the log and compare every projection table")
    trail = commands.add_parser("trail", help="a signal's deliveries, decision and events")
    trail.add_argument("fingerprint", help="the decision's fingerprint (64 hex digits)")
    trail.add_argument("--json", action="store_true")

    orders = commands.add_parser("orders", help="the order desk's orders and their states")
    orders.add_argument("--state", default=None, help="only orders in this state (e.g. "
                        "unknown, sent, filled, rejected)")
    orders.add_argument("--json", action="store_true")
    halt = commands.add_parser("halt", help="kill switch: stop sending orders (intents are "
                                            "still recorded)")
    halt.add_argument("--reason", default="operator", help="recorded with the halt")
    commands.add_parser("resume", help="send again, starting with what was held")
    reconcile = commands.add_parser(
        "reconcile", help="compare open quantities with the broker's (exit 1 on a mismatch)")
    reconcile.add_argument("--json", action="store_true")


    roll_due = commands.add_parser(
        "roll-due", help="roll every position whose contract is due, once (the leader does "
                         "this on a schedule)")
    roll_due.add_argument("--at", default=None, metavar="TIME",
                          help="scan and roll as at this instant, e.g. 2025-11-25T04:00:00Z "
                               "(a time zone is required; default: now)")
    roll_due.add_argument("--dry-run", action="store_true",
                          help="list what is due; roll nothing")

    serve = commands.add_parser("serve", help="the HTTP service: webhook, books, health")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (any but loopback needs "
                            "LEDGER_WEBHOOK_SECRET)")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--access-log", action="store_true", help="log each request line")
    serve.add_argument("--migrate", action="store_true",
                       help="apply missing migrations first (one instance: the embedded "
                            "SQLite file, a single container; with several instances run "
                            "`ledger migrate` once instead)")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": cmd_migrate,
    "signal": cmd_signal,
    "history": cmd_history,
    "portfolio": cmd_portfolio,
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
        return COMMANDS[args.command](args)
    except (ConfigError, StoreUrlError, JobSettingsError, bootstrap.BrokerSettingsError) as e:
        _err(str(e))
        return EXIT_INVALID
    except FileNotFoundError as e:
        _err(f"{e.filename}: no such file")
        return EXIT_INVALID
    except (StoreNotReady, PersistenceError) as e:
        _err(f"store not ready: {e}")
        return EXIT_STORE
    except DecisionContended as e:
        _err(str(e))
        return EXIT_CONTENDED


if __name__ == "__main__":
    sys.exit(main())
