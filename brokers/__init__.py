"""Broker adapters at the edge: the interface every broker implements, and the legs.

They import ``ledger`` only (its domain values: ``Contract``, ``Instrument``); only the
composition root and the entry points import them. docs/BROKERS.md describes the interface.
"""

from __future__ import annotations

from brokers.base import (
    BadAnswer,
    Broker,
    BrokerError,
    BrokerPosition,
    BrokerRefused,
    BrokerUnavailable,
    Cancelled,
    CancelResult,
    Leg,
    NotSent,
    OrderNotFound,
    OrderRequest,
    OrderState,
    Placed,
    PlaceResult,
    RateLimited,
    Rejected,
    Trade,
    Unknown,
    legs,
    order_exchange,
    roll_legs,
)

__all__ = [
    "BadAnswer", "Broker", "BrokerError", "BrokerPosition", "BrokerRefused",
    "BrokerUnavailable", "CancelResult", "Cancelled", "Leg", "NotSent",
    "OrderNotFound", "OrderRequest", "OrderState",
    "PlaceResult", "Placed", "RateLimited", "Rejected", "Trade", "Unknown",
    "legs", "order_exchange", "roll_legs",
]
