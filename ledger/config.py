"""Configuration: the instrument catalogue, portfolio parameters and operating limits.

Loaded once into frozen dataclasses (the trading parameters are ``ledger.domain.params``).
Defaults are the figures of ``docs/RULES.md``; a TOML
file named by ``LEDGER_CONFIG`` overrides or extends them. Unknown keys are errors, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ledger.domain.params import STOP_POLICIES, Dated, Instrument, PortfolioParams

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class ConfigError(ValueError):
    """The configuration is invalid; ``problems`` names each one."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Limits:
    """Bounds on the decision path. Every number names its unit."""

    decision_attempts_max: int = 16  # version-conflict retries of one decision
    conflict_backoff_ms_max: int = 50  # jittered wait between attempts, upper bound
    snapshot_interval_events: int = 200  # portfolio snapshot every N portfolio events
    aggregate_cache_size: int = 2000  # aggregates kept in memory per process
    body_bytes_max: int = 65536  # largest alert accepted
    store_lock_timeout_s: int = 2  # wait for the event table lock before giving up
    store_connect_timeout_s: int = 2  # wait for a pooled connection
    store_pool_size: int = 8  # Postgres connections a ledger keeps open, idle or not
    store_pool_overflow: int = 8  # extra connections it may open under load (closed after
    # 10 minutes idle)
    # The projection runner's own ledger in `ledger serve` and `ledger project`: one batch
    # at a time, so one connection, and one more for a read alongside (docs/CONFIGURATION.md).
    projection_pool_size: int = 1  # Postgres connections the runner keeps open
    projection_pool_overflow: int = 1  # extra connections it may open
    projection_batch_events: int = 1000  # events a live projection applies per transaction
    projection_rebuild_batch_events: int = 20000  # events per transaction while rebuilding
    projection_poll_ms: int = 50  # how often an idle projection runner looks for new events
    projection_standby_poll_ms: int = 1000  # how often a standby runner tries to take over
    projection_lag_events_max: int = 10000  # /ready answers 503 beyond this many events behind
    projection_lag_s_max: int = 30  # ... or when the oldest unprojected event is this old
    projection_wait_ms_max: int = 5000  # longest a read may wait for its log position
    progress_every_events: int = 10000  # long CLI work off a terminal: a line per this many


@dataclass(frozen=True)
class LedgerConfig:
    instruments: Mapping[str, Instrument]
    portfolios: Mapping[str, PortfolioParams]
    holidays: Mapping[str, frozenset[date]] = field(default_factory=dict)
    exchange_timezone: str = "Asia/Kolkata"
    limits: Limits = Limits()

    def instrument(self, name: str) -> Instrument | None:
        return self.instruments.get(name.upper())

    def portfolio(self, name: str) -> PortfolioParams | None:
        return self.portfolios.get(name)

    def with_portfolio(self, params: PortfolioParams) -> LedgerConfig:
        """A copy that also knows ``params`` (used by tests and tools)."""
        return replace(self, portfolios={**self.portfolios, params.name: params})


def _d(value: str) -> date:
    return date.fromisoformat(value)


BANK_NIFTY = Instrument(
    name="BANK_NIFTY",
    exchange="NSE",
    product="synthetic_future",
    symbol_root="BANKNIFTY",
    lot_sizes=(
        Dated(_d("2000-01-01"), 15),
        Dated(_d("2024-11-20"), 30),
        Dated(_d("2025-07-31"), 35),
        Dated(_d("2026-01-01"), 30),
    ),
    point_value=None,
    margin_per_lot=Decimal("270000"),
    initial_risk_percent=Decimal("0.5"),
    ongoing_risk_percent=Decimal("1.0"),
    initial_vol_percent=Decimal("0.5"),
    ongoing_vol_percent=Decimal("0.7"),
    initial_atr_multiple=Decimal("1.5"),
    trailing_atr_multiple=Decimal("2.5"),
    max_pyramids=5,
    roll_days_before_expiry=7,
    # Last Thursday until Aug 2025 (the exchange moved between Wednesday and Thursday in
    # 2023-2025: configure the exact history if you trade those months), last Tuesday since.
    expiry_weekdays=(Dated(_d("2000-01-01"), 3), Dated(_d("2025-09-01"), 1)),
    strike_step=100,
    rollover_strike_step=500,
)

GOLD_MINI = Instrument(
    name="GOLD_MINI",
    exchange="MCX",
    product="future",
    symbol_root="GOLDM",
    lot_sizes=(Dated(_d("2000-01-01"), 100),),
    point_value=Decimal("10"),
    margin_per_lot=Decimal("105000"),
    initial_risk_percent=Decimal("0.5"),
    ongoing_risk_percent=Decimal("1.0"),
    initial_vol_percent=Decimal("0.2"),
    ongoing_vol_percent=Decimal("0.3"),
    initial_atr_multiple=Decimal("1.0"),
    trailing_atr_multiple=Decimal("2.0"),
    max_pyramids=3,
    roll_days_before_expiry=8,
    expiry_day_of_month=5,
)


def default_config() -> LedgerConfig:
    """The built-in configuration: RULES.md's two instruments and the `default` portfolio."""
    return LedgerConfig(
        instruments={"BANK_NIFTY": BANK_NIFTY, "GOLD_MINI": GOLD_MINI},
        portfolios={"default": PortfolioParams(name="default")},
    )


def load_config(path: str | os.PathLike[str] | None = None) -> LedgerConfig:
    """Defaults overlaid with the TOML file at ``path`` (or ``$LEDGER_CONFIG``)."""
    path = path if path is not None else os.environ.get("LEDGER_CONFIG") or None
    if path is None:
        return default_config()
    try:
        with Path(path).open("rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError([f"cannot read {path}: {e.strerror}"]) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: {e}"]) from e
    return config_from_mapping(document)


# --- TOML parsing --------------------------------------------------------------------------

_INSTRUMENT_KEYS = {
    "exchange", "product", "symbol_root", "lot_sizes", "point_value", "margin_per_lot",
    "initial_risk_percent", "ongoing_risk_percent", "initial_vol_percent",
    "ongoing_vol_percent", "initial_atr_multiple", "trailing_atr_multiple", "max_pyramids",
    "roll_days_before_expiry", "expiry_weekdays", "expiry_day_of_month", "strike_step",
    "rollover_strike_step", "stop_policy",
}
_PORTFOLIO_KEYS = set(PortfolioParams.__dataclass_fields__) - {"name"}
_LIMIT_KEYS = set(Limits.__dataclass_fields__)
_TOP_KEYS = {"instruments", "portfolios", "holidays", "exchange_timezone", "limits"}


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def decimal(self, where: str, value: Any, *, positive: bool = True) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.problems.append(f"{where}: expected a number, got {value!r}")
            return None
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            self.problems.append(f"{where}: not a number: {value!r}")
            return None
        if not d.is_finite() or (positive and d <= 0) or d < 0:
            self.problems.append(f"{where}: must be {'> 0' if positive else '>= 0'}, got {value}")
            return None
        return d

    def integer(self, where: str, value: Any, *, minimum: int = 0) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problems.append(f"{where}: expected an integer >= {minimum}, got {value!r}")
            return None
        return value

    def unknown(self, where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
        for key in sorted(set(table) - allowed):
            self.problems.append(f"{where}: unknown key {key!r}")

    def schedule(self, where: str, value: Any, key: str, parse: Any) -> tuple[Dated, ...] | None:
        if not isinstance(value, list) or not value:
            self.problems.append(f"{where}: expected a non-empty list of {{from, {key}}} tables")
            return None
        entries = []
        for i, item in enumerate(value):
            if not isinstance(item, dict) or set(item) != {"from", key}:
                self.problems.append(f"{where}[{i}]: expected {{from = DATE, {key} = ...}}")
                continue
            effective = item["from"]
            if isinstance(effective, str):
                with contextlib.suppress(ValueError):
                    effective = date.fromisoformat(effective)
            if not isinstance(effective, date):
                self.problems.append(f"{where}[{i}].from: expected a date, got {item['from']!r}")
                continue
            parsed = parse(f"{where}[{i}].{key}", item[key])
            if parsed is not None:
                entries.append(Dated(effective, parsed))
        entries.sort(key=lambda e: e.effective)
        return tuple(entries) if entries else None

    def weekday(self, where: str, value: Any) -> int | None:
        if isinstance(value, str) and value.lower() in WEEKDAYS:
            return WEEKDAYS.index(value.lower())
        self.problems.append(f"{where}: expected a weekday name, got {value!r}")
        return None


def _instrument(r: _Reader, name: str, table: Any, base: Instrument | None) -> Instrument | None:
    where = f"instruments.{name}"
    if not isinstance(table, dict):
        r.problems.append(f"{where}: expected a table")
        return None
    r.unknown(where, table, _INSTRUMENT_KEYS)
    values: dict[str, Any] = {} if base is None else dict(base.__dict__)
    values["name"] = name
    if "expiry_weekdays" in table or "expiry_day_of_month" in table:
        # A new expiry rule replaces the built-in one entirely.
        values["expiry_weekdays"], values["expiry_day_of_month"] = (), None
    for key, raw in table.items():
        at = f"{where}.{key}"
        if key in ("exchange", "symbol_root"):
            if isinstance(raw, str) and raw:
                values[key] = raw
            else:
                r.problems.append(f"{at}: expected a non-empty string")
        elif key == "stop_policy":
            if raw in STOP_POLICIES:
                values[key] = raw
            else:
                r.problems.append(f"{at}: expected {' or '.join(map(repr, STOP_POLICIES))}, "
                                  f"got {raw!r}")
        elif key == "product":
            if raw in ("synthetic_future", "future"):
                values[key] = raw
            else:
                r.problems.append(f"{at}: expected 'synthetic_future' or 'future', got {raw!r}")
        elif key == "lot_sizes":
            values[key] = r.schedule(at, raw, "lot_size", lambda w, v: r.integer(w, v, minimum=1))
        elif key == "expiry_weekdays":
            values[key] = r.schedule(at, raw, "weekday", r.weekday)
        elif key == "expiry_day_of_month":
            values[key] = r.integer(at, raw, minimum=1)
            if values[key] is not None and values[key] > 28:
                r.problems.append(f"{at}: must be <= 28 so every month has it")
        elif key == "point_value":
            values[key] = None if raw == "lot_size" else r.decimal(at, raw)
        elif key in ("max_pyramids", "roll_days_before_expiry"):
            values[key] = r.integer(at, raw)
        elif key in ("strike_step", "rollover_strike_step"):
            values[key] = r.integer(at, raw, minimum=1)
        elif key in _INSTRUMENT_KEYS:
            values[key] = r.decimal(at, raw)
    required = _INSTRUMENT_KEYS - {
        "point_value", "expiry_weekdays", "expiry_day_of_month", "strike_step",
        "rollover_strike_step", "stop_policy",
    }
    missing = sorted(k for k in required if k not in values)
    if missing:
        r.problems.append(f"{where}: missing {', '.join(missing)}")
        return None
    values.setdefault("point_value", None)
    values.setdefault("expiry_weekdays", ())
    values.setdefault("expiry_day_of_month", None)
    if not values["expiry_weekdays"] and values["expiry_day_of_month"] is None:
        r.problems.append(f"{where}: needs expiry_weekdays or expiry_day_of_month")
        return None
    if values["expiry_weekdays"] and values["expiry_day_of_month"] is not None:
        r.problems.append(f"{where}: give expiry_weekdays or expiry_day_of_month, not both")
        return None
    if values["product"] == "synthetic_future" and values.get("strike_step") is None:
        r.problems.append(f"{where}: a synthetic future needs strike_step")
        return None
    if any(v is None for k, v in values.items() if k in required):
        return None
    values.setdefault("strike_step", None)
    values.setdefault("rollover_strike_step", None)
    values.setdefault("stop_policy", "flag")
    return Instrument(**values)


def _portfolio(r: _Reader, name: str, table: Any) -> PortfolioParams | None:
    where = f"portfolios.{name}"
    if not _is_portfolio_name(name):
        r.problems.append(f"{where}: a portfolio name is 1-32 of a-z, 0-9, '_' or '-'")
        return None
    if not isinstance(table, dict):
        r.problems.append(f"{where}: expected a table")
        return None
    r.unknown(where, table, _PORTFOLIO_KEYS)
    values: dict[str, Any] = {"name": name}
    for key, raw in table.items():
        at = f"{where}.{key}"
        if key == "equity_mode":
            if raw in ("closed", "open", "blended"):
                values[key] = raw
            else:
                r.problems.append(f"{at}: expected closed, open or blended, got {raw!r}")
        elif key == "peel_off":
            if isinstance(raw, bool):
                values[key] = raw
            else:
                r.problems.append(f"{at}: expected true or false")
        elif key in _PORTFOLIO_KEYS:
            values[key] = r.decimal(at, raw)
    if any(v is None for v in values.values()):
        return None
    return PortfolioParams(**values)


def _is_portfolio_name(name: str) -> bool:
    return 1 <= len(name) <= 32 and all(c.isascii() and (c.islower() or c.isdigit() or c in "_-")
                                        for c in name)


def is_portfolio_name(name: str) -> bool:
    """Portfolio names appear in URLs, stream names and position ids: keep them plain."""
    return _is_portfolio_name(name)


def config_from_mapping(document: Mapping[str, Any]) -> LedgerConfig:
    """Build a configuration from a parsed TOML document, over the defaults."""
    r = _Reader()
    base = default_config()
    r.unknown("config", document, _TOP_KEYS)

    instruments = dict(base.instruments)
    raw_instruments = document.get("instruments", {})
    if not isinstance(raw_instruments, dict):
        r.problems.append("instruments: expected a table")
        raw_instruments = {}
    for raw_name, table in raw_instruments.items():
        name = raw_name.upper()
        parsed = _instrument(r, name, table, base.instruments.get(name))
        if parsed is not None:
            instruments[name] = parsed

    portfolios = dict(base.portfolios)
    raw_portfolios = document.get("portfolios", {})
    if not isinstance(raw_portfolios, dict):
        r.problems.append("portfolios: expected a table")
        raw_portfolios = {}
    for name, table in raw_portfolios.items():
        parsed_p = _portfolio(r, name, table)
        if parsed_p is not None:
            portfolios[name] = parsed_p

    holidays: dict[str, frozenset[date]] = {}
    raw_holidays = document.get("holidays", {})
    if not isinstance(raw_holidays, dict):
        r.problems.append("holidays: expected a table of exchange = [dates]")
        raw_holidays = {}
    for exchange, days in raw_holidays.items():
        if not isinstance(days, list):
            r.problems.append(f"holidays.{exchange}: expected a list of dates")
            continue
        parsed_days = set()
        for day in days:
            if isinstance(day, str):
                with contextlib.suppress(ValueError):
                    day = date.fromisoformat(day)
            if isinstance(day, date):
                parsed_days.add(day)
            else:
                r.problems.append(f"holidays.{exchange}: not a date: {day!r}")
        holidays[exchange] = frozenset(parsed_days)

    limits = base.limits
    raw_limits = document.get("limits", {})
    if isinstance(raw_limits, dict):
        r.unknown("limits", raw_limits, _LIMIT_KEYS)
        changes = {}
        for key, raw in raw_limits.items():
            if key in _LIMIT_KEYS:
                value = r.integer(f"limits.{key}", raw, minimum=1)
                if value is not None:
                    changes[key] = value
        limits = replace(limits, **changes)
    else:
        r.problems.append("limits: expected a table")

    timezone = document.get("exchange_timezone", base.exchange_timezone)
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(str(timezone))
    except Exception:
        r.problems.append(f"exchange_timezone: unknown time zone {timezone!r}")

    if r.problems:
        raise ConfigError(r.problems)
    return LedgerConfig(
        instruments=instruments,
        portfolios=portfolios,
        holidays=holidays,
        exchange_timezone=str(timezone),
        limits=limits,
    )
