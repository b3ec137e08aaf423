"""How `ledger serve` logs: one stream (stderr), one format for every logger, ours and
Hypercorn's, and no secret in any line.

``LEDGER_LOG_FORMAT``: ``text`` (the default: ``time LEVEL logger: message``, then
``request_id=…`` while a request is handled) or ``json`` (one object per line: ``ts``,
``level``, ``logger``, ``message``, and the fields known for the line: ``request_id``,
``outcome``, ``status``, ``fingerprint``, ``elapsed_ms``, ...; ``exception`` with a
traceback). Secrets (the webhook secret, the API token, the database and Redis passwords)
are replaced by ``***`` in whatever a line would carry, in their plain, JSON-escaped and
URL-encoded spellings.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

from api import request_ids

ENV_LOG_FORMAT = "LEDGER_LOG_FORMAT"
FORMATS = ("text", "json")
REDACTED = "***"
# Structured fields a line may carry (``extra=``), in the order a JSON line shows them.
FIELDS = ("request_id", "outcome", "status", "code", "portfolio", "fingerprint",
          "elapsed_ms", "problems", "source_ip", "via")
# Hypercorn's access-log atoms a JSON line takes (never its headers or environment atoms:
# they hold the bearer token and every LEDGER_* variable).
_ACCESS = (("remote", "h"), ("method", "m"), ("path", "U"), ("status", "s"),
           ("bytes", "b"), ("request_id", "{x-request-id}o"))


class LogFormatError(ValueError):
    pass


class Redactor:
    """Replaces every secret it was given, in every spelling a log line could hold it in."""

    def __init__(self) -> None:
        self._spellings: list[str] = []

    def add(self, *secrets: str | None) -> None:
        for secret in secrets:
            if not secret:
                continue
            spellings = {secret, quote(secret, safe=""), quote_plus(secret),
                         json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                         secret.encode("unicode_escape").decode("ascii")}
            self._spellings.extend(spellings - set(self._spellings))
        self._spellings.sort(key=len, reverse=True)  # a longer spelling before its parts

    def __call__(self, text: str) -> str:
        for spelling in self._spellings:
            if spelling in text:
                text = text.replace(spelling, REDACTED)
        return text


class _RequestContext(logging.Filter):
    """Names the request being handled on every line written while it is (worker threads
    run in the request's context: ``api.pool``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_ids.current.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid and record.name != "hypercorn.access":
            line = f"{line} request_id={rid}"
        return self.redact(line)


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "hypercorn.access" and isinstance(record.args, Mapping):
            atoms = record.args
            for key, atom in _ACCESS:
                value = atoms.get(atom)
                if value not in (None, "-"):
                    line[key] = int(value) if key == "status" and str(value).isdigit() else value
            line["elapsed_ms"] = round(int(atoms.get("D", 0)) / 1000, 1)
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(_redacted(line, self.redact), ensure_ascii=False, default=str)


def _redacted(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray)):
        return [_redacted(v, redact) for v in value]
    return value


def configure(log_format: str | None, *, level: int = logging.INFO) -> Redactor:
    """Send every logger's lines to stderr in ``log_format`` (None or empty: text); the
    returned Redactor takes the secrets as they become known (``Redactor.add``)."""
    chosen = (log_format or "text").strip().lower()
    if chosen not in FORMATS:
        raise LogFormatError(f"{ENV_LOG_FORMAT}: expected one of {', '.join(FORMATS)}, "
                             f"got {log_format!r}")
    redact = Redactor()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestContext())
    handler.setFormatter(JsonFormatter(redact) if chosen == "json" else TextFormatter(redact))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warning is a log line too, in this format
    return redact
