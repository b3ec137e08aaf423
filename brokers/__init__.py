"""Broker adapters at the edge: the paper broker (the default) and OpenAlgo over HTTP.

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
from brokers.openalgo import Funds, OpenAlgoBroker, SymbolInfo, TokenBucket
from brokers.paper import PaperBroker

__all__ = [
    "BadAnswer", "Broker", "BrokerError", "BrokerPosition", "BrokerRefused",
    "BrokerUnavailable", "CancelResult", "Cancelled", "Funds", "Leg", "NotSent",
    "OpenAlgoBroker", "OrderNotFound", "OrderRequest", "OrderState", "PaperBroker",
    "PlaceResult", "Placed", "RateLimited", "Rejected", "SymbolInfo", "TokenBucket", "Trade",
    "Unknown",
    "legs", "order_exchange", "roll_legs",
]
