"""POST /webhook[/{portfolio}]: a TradingView alert in, its decision out.

In order, each step refusing before anything is decided:
403 source address not allowed · 415 not JSON/text · 413 body over ``body_bytes_max`` (the
declared Content-Length and the bytes actually streamed) · 408 body not received in time ·
400 not a JSON object · 401 wrong or missing ``secret`` · 422 invalid fields (every one named).
Then the ledger decides in a worker thread: 200 with the decision for accepted, rejected and
duplicate deliveries alike; 503 when the store cannot answer within ``request_timeout_ms`` (or
is down, or the decision kept losing conflicts), so TradingView retries and the retry is
answered from the store. Only a valid, authenticated alert ever reaches the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from eventsourcing.persistence import PersistenceError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from api.auth import client_address, source_allowed, webhook_secret_ok
from api.pool import DeadlineExceeded, Overloaded
from api.request_ids import request_id
from api.responses import JSONResponse, error
from api.runtime import Runtime
from ledger.application import Decision, DecisionContended, StoreNotReady
from ledger.signals import InvalidSignal, Problem, UnfilledTemplate, parse_json, parse_signal

log = logging.getLogger("ledger.api")

ACCEPTED_MEDIA_TYPES = ("application/json", "text/plain")
DEDUPE_WAIT_SHARE = 0.5  # of the request's remaining time, for waiting on a redelivery's twin
RETRY_AFTER_S = "1"


class BodyTooLarge(ValueError):
    pass


async def read_body(request: Request, body_bytes_max: int) -> bytes:
    """The request body, refusing more than ``body_bytes_max`` bytes however it is sent."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > body_bytes_max:
        raise BodyTooLarge(declared)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > body_bytes_max:
            raise BodyTooLarge(str(size))
        chunks.append(chunk)
    return b"".join(chunks)


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests lists and objects, counting no further than ``limit + 1``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


class Webhook:
    """The endpoint, bound to one running service."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.settings = runtime.settings
        secret = self.settings.webhook_secret
        # An alert may carry the secret in a field where it does not belong; never echo it.
        self._redact = (lambda text: text.replace(secret, "***")) if secret else (lambda t: t)

    def _refuse(self, outcome: str, status: int, code: str, message: str, *,
                problems: list[Problem] | None = None,
                headers: Mapping[str, str] | None = None, source: str = "",
                fields: Mapping[str, Any] | None = None) -> Response:
        self.rt.metrics.count(outcome)
        problems = [Problem(p.field, self._redact(p.message)) for p in problems or ()]
        log.info("webhook %s %d %s%s%s", outcome, status, code,
                 "".join(f" {p.field}" for p in problems), source,
                 extra={"outcome": outcome, "status": status, "code": code,
                        **({"problems": [p.field for p in problems]} if problems else {}),
                        **(fields or {})})
        return error(status, code, self._redact(message), problems=problems, headers=headers)

    def _unavailable(self, code: str, message: str) -> Response:
        return self._refuse("unavailable", 503, code, message,
                            headers={"Retry-After": RETRY_AFTER_S})

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        s = self.settings
        deadline = started + s.request_timeout_ms / 1000
        portfolio = request.path_params.get("portfolio", "default")

        if not source_allowed(request, s.allowlist, s.trusted_proxies):
            # Named in the log (never in the answer), so an operator can tell TradingView's
            # new address from a stranger's: the address the allowlist judged, and the peer
            # when that was a trusted proxy speaking for it.
            address = client_address(request, s.trusted_proxies)
            peer = request.client.host if request.client else None
            via = peer if peer and str(address) != peer else None
            source = f" from {address or 'an unreadable address'}" + (
                f" via {via}" if via else "")
            return self._refuse("forbidden", 403, "forbidden",
                                "this source address may not send alerts", source=source,
                                fields={"source_ip": str(address) if address else None,
                                        **({"via": via} if via else {})})
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type and media_type not in ACCEPTED_MEDIA_TYPES:
            return self._refuse("invalid", 415, "unsupported_media_type",
                                "send the alert as application/json or text/plain")
        try:
            body = await _within(read_body(request, s.body_bytes_max), deadline)
        except BodyTooLarge:
            return self._refuse("too_large", 413, "body_too_large",
                                f"an alert is at most {s.body_bytes_max} bytes")
        except TimeoutError:
            return self._refuse("invalid", 408, "request_timeout",
                                "the body did not arrive in time")
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening for an answer

        try:
            data = parse_json(body)
        except InvalidSignal as e:
            return self._refuse("invalid", 400, "malformed_body", "the body is not JSON",
                                problems=e.problems)
        if not isinstance(data, dict):
            return self._refuse("invalid", 400, "malformed_body", "the body is not JSON",
                                problems=[Problem("body", "must be a JSON object")])
        if nesting_depth(data, s.json_depth_max) > s.json_depth_max:
            return self._refuse("invalid", 400, "malformed_body", "the body nests too deeply",
                                problems=[Problem("body", f"nests deeper than "
                                                          f"{s.json_depth_max} levels")])
        if not webhook_secret_ok(data, s.webhook_secret):
            return self._refuse("unauthorized", 401, "unauthorized",
                                "the alert's secret is missing or wrong")

        ledger, dedupe = self.rt.ledger, self.rt.dedupe
        rid = request_id(request)  # recorded in the receipt: which delivery this was
        if rid and s.webhook_secret and s.webhook_secret in rid:
            rid = None  # a caller that sends the secret as its request id: never stored
        remaining_s = max(0.0, deadline - time.perf_counter())
        # A redelivery may wait for the delivery being decided, within half the time left.
        wait_ms = min(s.signal_lock_wait_ms, int(remaining_s * 1000 * DEDUPE_WAIT_SHARE))

        def decide() -> Decision:
            # InvalidSignal: 422. The body's text goes with it: the receipt keeps it as sent.
            signal = parse_signal(data, portfolio, ledger.config, raw=body)
            with dedupe.turn(signal.fingerprint, wait_ms):
                return ledger.decide_signal(signal, request_id=rid)

        try:
            decision = await self.rt.decisions.run(decide, timeout_s=remaining_s)
        except InvalidSignal as e:
            message = ("the alert template was not filled in: TradingView placeholders "
                       "arrived as text (each problem names one); nothing was recorded"
                       if isinstance(e, UnfilledTemplate)
                       else "the alert cannot be decided; nothing was recorded")
            return self._refuse("invalid", 422, "invalid_signal", message, problems=e.problems)
        except (PersistenceError, StoreNotReady) as e:
            log.warning("webhook: store unavailable: %s", type(e).__name__)
            return self._unavailable("store_unavailable", "the event store did not answer; "
                                     "retry and the alert is decided once")
        except DeadlineExceeded as e:
            log.warning("webhook: deadline exceeded (%s)", "running" if e.started else "queued")
            return self._unavailable("timeout", f"no decision within {s.request_timeout_ms} ms; "
                                     "retry and the alert is decided once")
        except Overloaded:
            return self._unavailable("overloaded", "too many alerts waiting; retry")
        except DecisionContended:
            return self._unavailable("contended", "the portfolio kept changing under this "
                                     "decision; retry")

        elapsed = time.perf_counter() - started
        if self.rt.projections is not None:
            self.rt.projections.wake()  # project it now: a read may follow with ?after=
        self.rt.metrics.decision_seconds.observe(elapsed)
        outcome = "duplicate" if decision.duplicate else str(decision.body["decision"])
        self.rt.metrics.count(outcome)
        log.info("webhook %s %s %s %.1fms", outcome, decision.body["portfolio"],
                 decision.body["fingerprint"][:12], elapsed * 1000,
                 extra={"outcome": outcome, "status": 200,
                        "portfolio": decision.body["portfolio"],
                        "fingerprint": decision.body["fingerprint"],
                        "elapsed_ms": round(elapsed * 1000, 1)})
        return JSONResponse(decision.as_dict())


async def _within(awaitable: Any, deadline: float) -> Any:
    return await asyncio.wait_for(awaitable, max(0.0, deadline - time.perf_counter()))
