"""The projection tables as the code sees them: columns, their kinds, keys.

The DDL lives in ``migrations/`` (the schema's single source); this module says what kind
each column's JSON-ready value is (money and prices as strings, times ISO 8601) and how a
stored value reads back, so a row read from a table equals the row the projector computed.
How each kind is stored is the dialect's (``ledger.storage``).

Kinds: ``text``, ``int``, ``bool``, ``num`` (exact decimal: NUMERIC on Postgres, TEXT on
SQLite), ``ts`` (TIMESTAMPTZ; fixed-width UTC text on SQLite so it sorts), ``json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ledger import wire

TRACKING = "projection_tracking"
TRACKING_NAME = "tables"  # one tracking row: every table is at the same log position


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (column, kind), in row order

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)


def _cols(spec: str) -> tuple[tuple[str, str], ...]:
    """'name:kind name:kind ...' (kind defaults to text)."""
    out = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        out.append((name, kind or "text"))
    return tuple(out)


POSITIONS = Table("portfolio_positions", ("position_id",), _cols("""
    position_id portfolio instrument label status is_base_position:bool base_position_id
    entry_fingerprint entry_timestamp:ts entry_price:num lots:int lot_size:int quantity:int
    point_value:num margin_per_lot:num initial_stop:num current_stop:num highest_close:num
    signal_stop:num mark:num unrealized_pnl:num realized_pnl:num risk_amount:num margin:num
    risk_contribution:num vol_contribution:num entry_risk_contribution:num
    entry_vol_contribution:num equity_at_entry:num rollover_status original_expiry
    original_strike:int original_entry_price:num rollover_timestamp:ts rollover_pnl:num
    rollover_count:int strike:int expiry pe_symbol ce_symbol pe_order_id ce_order_id
    pe_entry_price:num ce_entry_price:num contract_month futures_symbol futures_order_id
    atr:num er:num limiter sizing:json exit_timestamp:ts exit_price:num exit_reason
    stop_breached_at:ts version:int created_at:ts updated_at:ts
"""))

PORTFOLIO_STATE = Table("portfolio_state", ("portfolio",), _cols("""
    portfolio equity_mode initial_capital:num closed_equity:num unrealized_pnl:num
    open_equity:num equity:num total_risk_amount:num total_risk_percent:num
    total_vol_amount:num total_vol_percent:num margin_used:num margin_available:num
    open_positions:int version:int updated_at:ts
"""))

PYRAMIDING = Table("pyramiding_state", ("portfolio", "instrument"), _cols("""
    portfolio instrument base_position_id last_pyramid_price:num pyramids:int updated_at:ts
"""))

SIGNALS = Table("signal_log", ("fingerprint",), _cols("""
    id:int fingerprint portfolio instrument signal_type position signal_timestamp:ts price:num
    processing_status reasons:json position_ids:json lots:int limiter deliveries:int
    is_duplicate:bool received_at:ts processed_at:ts processed_by_instance last_delivery_at:ts
    last_delivery_instance payload:json decision:json version:int
"""))

INSTANCES = Table("instance_metadata", ("instance_id",), _cols("""
    instance_id started_at:ts last_heartbeat:ts last_signal_processed:ts signals_processed:int
    is_leader:bool leader_acquired_at:ts status hostname port:int version created_at:ts
    updated_at:ts
"""))

STATISTICS = Table("trading_statistics", ("portfolio",), _cols("""
    portfolio trades:int winning_trades:int losing_trades:int win_rate:num gross_profit:num
    gross_loss:num net_pnl:num largest_win:num largest_loss:num profit_factor:num
    rollovers:int signals_decided:int signals_accepted:int signals_rejected:int
    duplicate_deliveries:int peak_closed_equity:num max_drawdown:num max_drawdown_percent:num
    updated_at:ts
"""))

ORDERS = Table("orders", ("intent_id",), _cols("""
    intent_id portfolio position_id cause purpose leg symbol exchange side quantity:int product
    price_type reference_price:num decided_at:ts status attempts:int sent_epoch:int sent_at:ts
    broker_order_id filled_quantity:int average_price:num slippage:num reason version:int
    created_at:ts updated_at:ts
"""))

TABLES: dict[str, Table] = {t.name: t for t in (
    POSITIONS, PORTFOLIO_STATE, PYRAMIDING, SIGNALS, INSTANCES, STATISTICS, ORDERS)}


# -- values in and out ---------------------------------------------------------------------

def json_text(value: Any) -> str:
    """JSON text of a row value, as every answer writes it (``wire.dumps``)."""
    return wire.dumps(value).decode()


def from_db(kind: str, value: Any) -> Any:
    """A stored value back in its JSON-ready form (what the projector computed)."""
    if value is None:
        return None
    if kind == "num":
        return wire.number(value) if isinstance(value, Decimal) else value
    if kind == "ts":
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return wire.iso(moment.astimezone(UTC))
    if kind == "json":
        # Numbers keep their text (an alert's payload; the dialect hands Postgres' JSON over
        # as text for this). Not orjson: it reads integers beyond 64 bits as floats.
        return wire.loads(value) if isinstance(value, str | bytes) else value
    if kind == "bool":
        return bool(value)
    return value


def values(row: Any, columns: Sequence[str]) -> list[Any]:
    """A fetched row's values in ``columns`` order (psycopg gives dicts, sqlite3 tuples)."""
    if isinstance(row, dict):
        return [row[c] for c in columns]
    return list(row)


def decode(table: Table, row: Any) -> dict[str, Any]:
    """A fetched row (all of ``table``'s columns, in order) as a JSON-ready dict."""
    return {c: from_db(k, v)
            for (c, k), v in zip(table.columns, values(row, table.column_names), strict=True)}
