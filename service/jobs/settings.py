"""The leader jobs' settings, from the environment (`ledger serve`, `ledger roll-due`,
`ledger verify`): every problem is named at once, before anything starts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time

from service.alerts import ENV_WEBHOOK_URL
from service.jobs.retention import RETENTION_DAYS_DEFAULT
from service.jobs.rollover import ROLL_AT_DEFAULT, parse_roll_at

ENV_ROLL_AT = "LEDGER_ROLL_AT"
ENV_RETENTION_DAYS = "LEDGER_SIGNAL_LOG_RETENTION_DAYS"
RETENTION_DAYS_MAX = 3650  # ten years: a larger number is a typo, not a policy


class JobSettingsError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class JobSettings:
    roll_at: time = ROLL_AT_DEFAULT  # exchange time at or after which due rolls are made
    retention_days: int = RETENTION_DAYS_DEFAULT  # signal_log keeps this many days; 0: all
    alert_webhook_url: str | None = field(default=None, repr=False)  # carries a token

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> JobSettings:
        env = os.environ if environ is None else environ
        problems: list[str] = []
        roll_at = ROLL_AT_DEFAULT
        if raw := env.get(ENV_ROLL_AT, "").strip():
            try:
                roll_at = parse_roll_at(raw)
            except ValueError as e:
                problems.append(f"{ENV_ROLL_AT}: {e}")
        days = RETENTION_DAYS_DEFAULT
        if raw := env.get(ENV_RETENTION_DAYS, "").strip():
            if raw.isdigit() and int(raw) <= RETENTION_DAYS_MAX:
                days = int(raw)
            else:
                problems.append(f"{ENV_RETENTION_DAYS}: expected whole days from 0 (keep "
                                f"everything) to {RETENTION_DAYS_MAX}, got {raw!r}")
        url = env.get(ENV_WEBHOOK_URL, "").strip() or None
        if url is not None and not url.startswith(("http://", "https://")):
            problems.append(f"{ENV_WEBHOOK_URL}: expected an http:// or https:// URL")
        if problems:
            raise JobSettingsError(problems)
        return cls(roll_at=roll_at, retention_days=days, alert_webhook_url=url)
