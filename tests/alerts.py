"""Alert builders for tests: TradingView bodies with strictly increasing timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


class Alerts:
    def __init__(self, start: str = "2025-11-28T04:00:00Z", step_s: int = 60) -> None:
        self.now = datetime.fromisoformat(start).astimezone(UTC)
        self.step = timedelta(seconds=step_s)

    def _stamp(self) -> str:
        self.now += self.step
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def base(self, price: Any, stop: Any, atr: Any, er: Any = 1, instrument: str = "BANK_NIFTY",
             **extra: Any) -> dict[str, Any]:
        return {"type": "BASE_ENTRY", "instrument": instrument, "position": "Long_1",
                "price": price, "stop": stop, "atr": atr, "er": er, "lots": 5,
                "timestamp": self._stamp(), **extra}

    def pyramid(self, label: str, price: Any, stop: Any, atr: Any, er: Any = 1,
                instrument: str = "BANK_NIFTY", **extra: Any) -> dict[str, Any]:
        return {"type": "PYRAMID", "instrument": instrument, "position": label, "price": price,
                "stop": stop, "atr": atr, "er": er, "lots": 2, "timestamp": self._stamp(),
                **extra}

    def mark(self, price: Any, atr: Any, instrument: str = "BANK_NIFTY",
             **extra: Any) -> dict[str, Any]:
        return {"type": "MARKET_DATA", "instrument": instrument, "price": price, "atr": atr,
                "timestamp": self._stamp(), **extra}

    def exit(self, label: str, price: Any, instrument: str = "BANK_NIFTY",
             reason: str = "trailing_stop", **extra: Any) -> dict[str, Any]:
        return {"type": "EXIT", "instrument": instrument, "position": label, "price": price,
                "stop": 0, "lots": 0, "reason": reason, "timestamp": self._stamp(), **extra}
