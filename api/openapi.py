"""GET /openapi.json: the HTTP contract, written by hand (OpenAPI 3.0.3).

Kept beside the endpoints it describes; tests fuzz the running service from this document and
check every answer against it, so a drift between the two fails the suite.
"""

from __future__ import annotations

from typing import Any

from api.read_model import (
    DECISIONS,
    POSITION_KEYS,
    POSITION_STATUSES,
    SIGNAL_KEYS,
    STATISTICS_KEYS,
)

NULLABLE_STRING = {"type": "string", "nullable": True}
MONEY = {"type": "string", "nullable": True, "description": "rupees, 2 decimals, exact"}

PROBLEM = {
    "type": "object",
    "required": ["field", "message"],
    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
}
ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable code"},
        "message": {"type": "string"},
        "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
    },
}

ALERT = {
    "type": "object",
    "description": "A TradingView alert. Required: type, instrument, position (not for "
                   "MARKET_DATA), price, timestamp; for BASE_ENTRY/PYRAMID also stop, atr, "
                   "er; for MARKET_DATA also atr. `lots` is accepted and ignored: the ledger "
                   "sizes positions itself. Numbers may be JSON numbers or numeric strings.",
    "required": ["type", "instrument", "price", "timestamp"],
    "properties": {
        "secret": {"type": "string", "description": "LEDGER_WEBHOOK_SECRET; never stored"},
        "type": {"type": "string",
                 "enum": ["BASE_ENTRY", "PYRAMID", "EXIT", "MARKET_DATA"]},
        "instrument": {"type": "string", "example": "BANK_NIFTY"},
        "position": {"type": "string", "example": "Long_1",
                     "description": "Long_1 base, Long_2..Long_6 pyramids, ALL on an EXIT"},
        "price": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
        "stop": {"type": "number", "minimum": 0},
        "atr": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
        "er": {"type": "number", "minimum": 0, "maximum": 1},
        "lots": {"type": "number"},
        "reason": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time",
                      "example": "2025-11-28T10:30:00Z"},
    },
    "additionalProperties": True,
}

DECISION = {
    "type": "object",
    "description": "A decision as recorded in the signal's receipt.",
    "required": ["decision", "fingerprint", "portfolio", "signal_type", "instrument",
                 "reasons", "events"],
    "properties": {
        "decision": {"type": "string", "enum": ["accepted", "rejected"]},
        "fingerprint": {"type": "string"},
        "portfolio": {"type": "string"},
        "signal_type": {"type": "string"},
        "instrument": {"type": "string"},
        "position": NULLABLE_STRING,
        "signal_timestamp": {"type": "string"},
        "price": {"type": "string"},
        "position_id": NULLABLE_STRING,
        "position_ids": {"type": "array", "items": {"type": "string"}},
        "lots": {"type": "integer", "nullable": True},
        "limiter": NULLABLE_STRING,
        "sizing": {"type": "object", "nullable": True,
                   "additionalProperties": {"type": "string"}},
        "equity": MONEY,
        "reasons": {"type": "array", "items": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
        "events": {"type": "array", "items": {
            "type": "object", "required": ["type", "stream", "version"],
            "properties": {"type": {"type": "string"}, "stream": {"type": "string"},
                           "version": {"type": "integer"}}}},
        "decided_at": {"type": "string"},
    },
}

ANSWER = {
    "description": "The decision, as `ledger signal` prints it. A duplicate delivery gets "
                   "the first decision back with `duplicate: true`.",
    "allOf": [
        {"$ref": "#/components/schemas/Decision"},
        {"type": "object", "required": ["duplicate", "log_position"], "properties": {
            "duplicate": {"type": "boolean"},
            "log_position": {"type": "integer", "nullable": True,
                             "description": "notification id of the decision's last event"},
        }},
    ],
}

PORTFOLIO = {
    "type": "object",
    "description": "The books, as `ledger portfolio --json` prints them.",
    "required": ["portfolio", "equity", "closed_equity", "open_positions"],
    "properties": {
        "portfolio": {"type": "string"},
        "version": {"type": "integer"},
        "equity_mode": {"type": "string", "enum": ["closed", "open", "blended"]},
        "initial_capital": MONEY, "closed_equity": MONEY, "unrealized_pnl": MONEY,
        "open_equity": MONEY, "equity": MONEY, "total_risk_amount": MONEY,
        "total_risk_percent": NULLABLE_STRING, "total_vol_amount": MONEY,
        "total_vol_percent": NULLABLE_STRING, "margin_used": MONEY, "margin_available": MONEY,
        "pyramiding_state": {"type": "object", "additionalProperties": {"type": "object"}},
        "open_positions": {"type": "array", "items": {"type": "object"}},
        "as_of": {"type": "string", "description": "present when asked `as_of`: the bar time "
                                                   "the books are as of (UTC)"},
        "known_at": {"type": "string", "description": "present when asked `known_at`: the "
                                                      "recording time the books were known "
                                                      "at (UTC)"},
    },
}

POSITION = {
    "type": "object",
    "description": "A row of portfolio_positions. Money and prices are exact decimal strings.",
    "required": list(POSITION_KEYS),
    "properties": {
        **{key: {"nullable": True} for key in POSITION_KEYS},
        "position_id": {"type": "string"},
        "status": {"type": "string", "enum": list(POSITION_STATUSES)},
        "lots": {"type": "integer"},
        "version": {"type": "integer"},
    },
}

SIGNAL = {
    "type": "object",
    "description": "A row of signal_log: one per distinct signal (fingerprint).",
    "required": list(SIGNAL_KEYS),
    "properties": {
        **{key: {"nullable": True} for key in SIGNAL_KEYS},
        "fingerprint": {"type": "string"},
        "processing_status": {"type": "string", "enum": ["accepted", "rejected"]},
        "deliveries": {"type": "integer", "minimum": 1},
        "decision": {"$ref": "#/components/schemas/Decision"},
    },
}

COUNT = {"type": "integer", "minimum": 0}
STATISTICS = {
    "type": "object",
    "description": "A row of trading_statistics: one per portfolio that has decided anything. "
                   "Trades are closed positions (P&L including rollovers); drawdown is of "
                   "closed equity.",
    "required": list(STATISTICS_KEYS),
    "properties": {
        **{key: {"nullable": True} for key in STATISTICS_KEYS},
        "portfolio": {"type": "string"},
        **{key: COUNT for key in ("trades", "winning_trades", "losing_trades", "rollovers",
                                  "signals_decided", "signals_accepted", "signals_rejected",
                                  "duplicate_deliveries")},
        **{key: MONEY for key in ("gross_profit", "gross_loss", "net_pnl", "largest_win",
                                  "largest_loss", "peak_closed_equity", "max_drawdown")},
        "win_rate": {"type": "string", "nullable": True,
                     "description": "% of trades won, 4 decimals; null before any trade"},
        "profit_factor": {"type": "string", "nullable": True,
                          "description": "gross profit / gross loss; null without a loss"},
        "max_drawdown_percent": {"type": "string", "description": "% of the peak"},
        "updated_at": NULLABLE_STRING,
    },
}

CAUSE = {
    "type": "object",
    "nullable": True,
    "description": "What caused the event: the signal (from its receipt), or for a rollover "
                   "`{command_id}`; null if nothing did.",
    "properties": {
        "fingerprint": {"type": "string"}, "signal_type": {"type": "string"},
        "signal_timestamp": {"type": "string"}, "price": NULLABLE_STRING,
        "decision": {"type": "string", "enum": ["accepted", "rejected"]},
        "received_at": {"type": "string"}, "deliveries": {"type": "integer", "minimum": 1},
        "command_id": {"type": "string"},
    },
}

HISTORY = {
    "type": "object",
    "required": ["position_id", "events"],
    "properties": {
        "position_id": {"type": "string"},
        "events": {"type": "array", "items": {
            "type": "object", "required": ["version", "type", "event", "state", "signal"],
            "properties": {"version": {"type": "integer"}, "type": {"type": "string"},
                           "recorded_at": {"type": "string"}, "event": {"type": "object"},
                           "state": {"type": "object"}, "signal": CAUSE}}},
    },
}

TRAIL = {
    "type": "object",
    "description": "One signal: every delivery, the decision stored in its receipt, the "
                   "events that decision appended, read back from the store, and the rows "
                   "the projection tables hold for it.",
    "required": ["fingerprint", "portfolio", "signal_type", "instrument", "position",
                 "signal_timestamp", "payload", "deliveries", "decision", "events",
                 "projection_rows"],
    "properties": {
        "fingerprint": {"type": "string"},
        "portfolio": {"type": "string"},
        "signal_type": {"type": "string"},
        "instrument": {"type": "string"},
        "position": NULLABLE_STRING,
        "signal_timestamp": {"type": "string"},
        "payload": {"type": "object", "description": "the alert as sent (numbers with their "
                                                     "own text), secret removed"},
        "deliveries": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["delivery", "received_at", "instance_id",
                                           "duplicate"],
            "properties": {"delivery": {"type": "integer", "minimum": 1},
                           "received_at": {"type": "string"},
                           "instance_id": {"type": "string"},
                           "duplicate": {"type": "boolean"},
                           "request_id": {"type": "string", "description": (
                               "the delivering request's X-Request-ID (absent: delivered "
                               "from the command line, or recorded before ids were kept)")}}}},
        "decision": {"$ref": "#/components/schemas/Decision"},
        "events": {"type": "array", "items": {
            "type": "object", "required": ["stream", "version", "type", "recorded_at",
                                           "event"],
            "properties": {"stream": {"type": "string"}, "version": {"type": "integer"},
                           "type": {"type": "string"}, "recorded_at": {"type": "string"},
                           "event": {"type": "object"}}}},
        "projection_rows": {
            "type": "object",
            "description": "What the projection tables hold for this signal at `log_position`"
                           " (null / absent rows: not projected yet)",
            "required": ["log_position", "signal_log", "portfolio_positions"],
            "properties": {
                "log_position": {"type": "integer"},
                "signal_log": {"allOf": [{"$ref": "#/components/schemas/Signal"}],
                               "nullable": True},
                "portfolio_positions": {"type": "object", "additionalProperties": {
                    "allOf": [{"$ref": "#/components/schemas/Position"}], "nullable": True}},
            }},
    },
}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def _err(description: str) -> dict[str, Any]:
    return _json("#/components/schemas/Error", description)


NEXT = {"type": "string", "description": "present when more rows follow: pass it as `cursor` "
                                        "(with the same filters) for the next page"}

BEARER = [{"bearer": []}]
PORTFOLIO_PARAM = {"name": "portfolio", "in": "query", "required": False,
                   "schema": {"type": "string", "pattern": "^[a-z0-9_-]{1,32}$"}}
POSITION_ID_PARAM = {"name": "position_id", "in": "path", "required": True,
                     "schema": {"type": "string"},
                     "example": "default:BANK_NIFTY:Long_1:1"}
AS_OF_PARAM = {"name": "as_of", "in": "query", "required": False,
               "description": "the books as of this bar time: every decision whose signal "
                              "time is at or before it, in log order, replayed from the log; "
                              "a time zone is required",
               "schema": {"type": "string", "format": "date-time"},
               "example": "2025-11-28T10:30:00Z"}
KNOWN_AT_PARAM = {"name": "known_at", "in": "query", "required": False,
                  "description": "what the ledger knew at this time (recording time, for "
                                 "audit): every decision recorded at or before it, replayed "
                                 "from the log; a time zone is required",
                  "schema": {"type": "string", "format": "date-time"},
                  "example": "2025-11-28T10:31:00Z"}
INSTRUMENT_PARAM = {"name": "instrument", "in": "query", "required": False,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,40}$"}}
CURSOR_PARAM = {"name": "cursor", "in": "query", "required": False,
                "description": "the next page: a previous answer's `next`, with the same "
                               "filters (opaque)",
                "schema": {"type": "string", "maxLength": 512}}


def _range_params(what: str) -> list[dict[str, Any]]:
    """``from`` (inclusive) and ``to`` (exclusive): ISO 8601 instants with a time zone."""
    return [{"name": name, "in": "query", "required": False,
             "description": f"{what} {rule} this instant (ISO 8601 with a time zone; in a "
                            f"query string write `+` as `%2B`)",
             "schema": {"type": "string", "format": "date-time"},
             "example": "2025-11-28T10:30:00Z"}
            for name, rule in (("from", "at or after"), ("to", "before"))]


FINGERPRINT_PARAM = {"name": "fingerprint", "in": "path", "required": True,
                     "description": "a decision's `fingerprint`",
                     "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}


def _webhook(with_portfolio: bool) -> dict[str, Any]:
    parameters = ([{"name": "portfolio", "in": "path", "required": True,
                    "schema": {"type": "string"}}] if with_portfolio else [])
    return {"post": {
        "summary": ("Decide an alert for the named portfolio" if with_portfolio
                    else "Decide an alert for the default portfolio"),
        "operationId": "webhookPortfolio" if with_portfolio else "webhook",
        "parameters": parameters,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Alert"}},
            "text/plain": {"schema": {"type": "string"}},
        }},
        "responses": {
            "200": _json("#/components/schemas/DecisionAnswer",
                         "Decided (accepted or rejected), or a duplicate answered with the "
                         "first decision"),
            "400": _err("Not a JSON object (or nested too deeply, or a number out of "
                        "range)"),
            "401": _err("Secret missing or wrong; nothing recorded"),
            "403": _err("Source address not on the allowlist"),
            "408": _err("The body did not arrive in time"),
            "413": _err("Body larger than body_bytes_max"),
            "415": _err("Content-Type other than application/json or text/plain"),
            "422": _err("Invalid alert; `problems` names every invalid field"),
            "503": _err("Store unreachable or too slow; retry (it is decided once)"),
        },
    }}


AFTER_PARAM = {
    "name": "after", "in": "query", "required": False,
    "description": "Read your writes: wait (bounded) until the tables have applied the log up "
                   "to this position (a webhook answer's `log_position`)",
    "schema": {"type": "integer", "minimum": 0, "maximum": 10 ** 18 - 1},
}


def _read(summary: str, operation_id: str, schema_ref: str, parameters: list[dict[str, Any]],
          not_found: str | None = None) -> dict[str, Any]:
    responses = {
        "200": _json(schema_ref, summary),
        "400": _err("A query parameter is invalid; `problems` names each"),
        "401": _err("Bearer token missing or wrong (when LEDGER_API_TOKEN is set)"),
        "503": _err("Store unreachable or too slow, or (`projections_behind`) the tables did "
                    "not reach `after` in time; retry"),
    }
    parameters = [*parameters, AFTER_PARAM]
    if not_found:
        responses["404"] = _err(not_found)
    return {"get": {"summary": summary, "operationId": operation_id, "security": BEARER,
                    "parameters": parameters, "responses": responses}}


ORDER_STATES = ("intended", "sent", "unknown", "not_placed", "acknowledged",
                "partially_filled", "filled", "rejected")
ORDER = {"type": "object", "required": ["intent_id", "status", "symbol", "side", "quantity"]}

HEALTH = {
    "type": "object", "required": ["status", "instance_id", "leader", "leader_epoch",
                                   "coordination"],
    "properties": {
        "status": {"type": "string", "enum": ["alive"]},
        "instance_id": {"type": "string"},
        "leader": {"type": "boolean"},
        "leader_epoch": {"type": "integer", "nullable": True},
        "coordination": {"type": "string", "enum": ["redis", "database", "single"]},
    },
}

INSTANCE = {
    "type": "object",
    "required": ["instance_id", "hostname", "port", "version", "started_at", "last_heartbeat",
                 "is_leader", "leader_epoch", "leader_acquired_at", "mode", "status"],
    "properties": {
        "instance_id": {"type": "string"}, "hostname": {"type": "string", "nullable": True},
        "port": {"type": "integer", "nullable": True},
        "version": {"type": "string", "nullable": True},
        "started_at": {"type": "string", "nullable": True},
        "last_heartbeat": {"type": "string"}, "is_leader": {"type": "boolean"},
        "leader_epoch": {"type": "integer", "nullable": True},
        "leader_acquired_at": {"type": "string", "nullable": True},
        "mode": {"type": "string", "nullable": True},
        "status": {"type": "string", "enum": ["active", "standby", "stopped", "crashed"]},
    },
}


def document(*, list_limit_max: int, list_limit_default: int,
             version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI document of `ledger serve`."""
    limit_param = {"name": "limit", "in": "query", "required": False,
                   "schema": {"type": "integer", "minimum": 1, "maximum": list_limit_max,
                              "default": list_limit_default}}
    positions_params = [
        PORTFOLIO_PARAM,
        {"name": "status", "in": "query", "required": False,
         "schema": {"type": "string", "enum": list(POSITION_STATUSES)}},
        INSTRUMENT_PARAM,
        *_range_params("entered (`entry_timestamp`)"),
        limit_param,
        CURSOR_PARAM,
    ]
    signals_params = [
        PORTFOLIO_PARAM,
        {"name": "decision", "in": "query", "required": False,
         "schema": {"type": "string", "enum": list(DECISIONS)}},
        {"name": "type", "in": "query", "required": False,
         "schema": {"type": "string",
                    "enum": ["BASE_ENTRY", "PYRAMID", "EXIT", "MARKET_DATA"]}},
        INSTRUMENT_PARAM,
        *_range_params("the signal's own time (`signal_timestamp`)"),
        limit_param,
        CURSOR_PARAM,
    ]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Portfolio Ledger", "version": version,
                 "description": "TradingView alerts in, decisions and books out. Every "
                                "alert is decided exactly once, however often delivered."},
        "paths": {
            "/webhook": _webhook(False),
            "/webhook/{portfolio}": _webhook(True),
            "/portfolio": _read("The books of a portfolio (default: `default`), now, "
                                "`as_of` a bar time or `known_at` a recording time",
                                "portfolio", "#/components/schemas/Portfolio",
                                [PORTFOLIO_PARAM, AS_OF_PARAM, KNOWN_AT_PARAM],
                                not_found="Unknown portfolio"),
            "/positions": _read("Positions, most recently opened first", "positions",
                                "#/components/schemas/PositionList", positions_params),
            "/positions/{position_id}": _read("One position", "position",
                                              "#/components/schemas/Position",
                                              [POSITION_ID_PARAM],
                                              not_found="Unknown position"),
            "/positions/{position_id}/history": _read(
                "A position's events, replayed from its stream, each with its cause",
                "positionHistory", "#/components/schemas/History", [POSITION_ID_PARAM],
                not_found="Unknown position"),
            "/signals": _read("Recent decisions, most recent first", "signals",
                              "#/components/schemas/SignalList", signals_params),
            "/signals/{fingerprint}/trail": _read(
                "A signal's deliveries, its decision and the events it appended",
                "signalTrail", "#/components/schemas/Trail", [FINGERPRINT_PARAM],
                not_found="No signal with this fingerprint was decided"),
            "/statistics": _read("Trading statistics per portfolio (the trading_statistics "
                                 "table) and the log position the tables are at",
                                 "statistics", "#/components/schemas/StatisticsList",
                                 [PORTFOLIO_PARAM], not_found="Unknown portfolio"),
            "/health": {"get": {"summary": "The process is alive, and who leads",
                                "operationId": "health",
                                "responses": {"200": {"description": "alive", "content": {
                                    "application/json": {"schema": HEALTH}}}}}},
            "/orders": {"get": {
                "summary": "The order desk's orders, newest decision first",
                "operationId": "orders", "security": BEARER,
                "parameters": [{"name": "state", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": list(ORDER_STATES)}}],
                "responses": {
                    "200": {"description": "orders", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["orders"], "properties": {
                            "orders": {"type": "array", "items": ORDER}}}}}},
                    "400": _err("A query parameter is invalid"),
                    "401": _err("Token missing or wrong"),
                    "503": _err("Store unavailable")}}},
            "/orders/{intent_id}": {"get": {
                "summary": "One order and its events", "operationId": "order",
                "security": BEARER,
                "parameters": [{"name": "intent_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "the order", "content": {"application/json": {
                        "schema": {"type": "object"}}}},
                    "401": _err("Token missing or wrong"),
                    "404": _err("No such order"),
                    "503": _err("Store unavailable")}}},
            "/reconciliation": {"get": {
                "summary": "The last reconciliation's findings, and the kill switch",
                "operationId": "reconciliation", "security": BEARER,
                "responses": {
                    "200": {"description": "findings", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["findings", "halted"]}}}},
                    "401": _err("Token missing or wrong"),
                    "503": _err("Store unavailable")}}},
            "/halt": {"post": {
                "summary": "Kill switch: stop sending orders (intents are still recorded)",
                "operationId": "halt", "security": BEARER,
                "parameters": [{"name": "reason", "in": "query", "required": False,
                                "schema": {"type": "string", "maxLength": 200}}],
                "responses": {
                    "200": {"description": "halted", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["halted"]}}}},
                    "401": _err("Token missing or wrong"),
                    "503": _err("Store unavailable")}}},
            "/reconcile": {"post": {
                "summary": "Compare open quantities with the broker's now (on the desk's "
                           "instance)", "operationId": "reconcile", "security": BEARER,
                "responses": {
                    "200": {"description": "findings", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["findings"]}}}},
                    "401": _err("Token missing or wrong"),
                    "503": _err("This instance does not run the order desk, or the store "
                                "is unavailable")}}},
            "/resume": {"post": {
                "summary": "Send orders again, starting with those held",
                "operationId": "resume", "security": BEARER,
                "responses": {
                    "200": {"description": "resumed", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["halted"]}}}},
                    "401": _err("Token missing or wrong"),
                    "503": _err("Store unavailable")}}},
            "/instances": {"get": {
                "summary": "Every instance's last heartbeat: active (leads), standby, stopped "
                           "or crashed (no heartbeat within the staleness bound)",
                "operationId": "instances", "security": BEARER,
                "responses": {
                    "200": {"description": "the instances", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["instances"],
                                   "properties": {"instances": {"type": "array",
                                                                "items": INSTANCE}}}}}},
                    "401": _err("Token missing or wrong"),
                    "503": _err("Store unavailable")}}},
            "/ready": {"get": {"summary": "The store answers, is fully migrated, and the "
                                          "projection tables are within bounds of the log",
                               "operationId": "ready",
                               "responses": {
                                   "200": {"description": "ready", "content": {
                                       "application/json": {"schema": {"type": "object"}}}},
                                   "503": _err("Store unreachable, not migrated, or the "
                                               "projections lag beyond their bounds")}}},
            "/ready/webhook": {"get": {
                "summary": "The store answers and is fully migrated: all deciding needs (route "
                           "webhooks on this, so stale read tables never turn alerts away)",
                "operationId": "readyForWebhooks",
                "responses": {
                    "200": {"description": "ready", "content": {
                        "application/json": {"schema": {"type": "object"}}}},
                    "503": _err("Store unreachable or not migrated")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                                 "responses": {"200": {"description": "text exposition format",
                                                       "content": {"text/plain": {
                                                           "schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": {"description": "OpenAPI 3.0",
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "LEDGER_API_TOKEN"}},
            "schemas": {
                "Alert": ALERT, "Decision": DECISION, "DecisionAnswer": ANSWER,
                "Portfolio": PORTFOLIO, "Position": POSITION, "History": HISTORY, "Signal": SIGNAL,
                "Trail": TRAIL,
                "Problem": PROBLEM, "Error": ERROR,
                "PositionList": {"type": "object", "required": ["positions"], "properties": {
                    "positions": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/Position"}},
                    "next": NEXT}},
                "SignalList": {"type": "object", "required": ["signals"], "properties": {
                    "signals": {"type": "array",
                                "items": {"$ref": "#/components/schemas/Signal"}},
                    "next": NEXT}},
                "Statistics": STATISTICS,
                "StatisticsList": {
                    "type": "object", "required": ["log_position", "statistics"],
                    "properties": {
                        "log_position": {"type": "integer", "minimum": 0,
                                         "description": "the log position the figures are at"},
                        "statistics": {"type": "array",
                                       "items": {"$ref": "#/components/schemas/Statistics"}}}},
            },
        },
    }
