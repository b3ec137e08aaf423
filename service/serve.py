"""`ledger serve`: the HTTP service on Hypercorn, stopped gracefully by SIGTERM or SIGINT.

On a signal Hypercorn stops accepting connections and gives in-flight requests up to
``graceful_timeout_ms`` to finish; then the lifespan lets every decision already running in a
worker thread commit (or fail) as a whole, and closes the store's connection pools.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from urllib.parse import unquote, urlsplit

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from starlette.applications import Starlette

import migrations
from api.settings import ENV_TOKEN, ServeSettings, SettingsError, from_environment
from coordination.settings import SettingsError as CoordinationSettingsError
from ledger.application import StoreNotReady
from ledger.config import LedgerConfig, load_config
from ledger.storage import redact, store_settings
from service import bootstrap, logs

log = logging.getLogger("ledger.api")

EXIT_OK, EXIT_INVALID, EXIT_STORE = 0, 2, 3


def hypercorn_config(settings: ServeSettings, *, access_log: bool = False) -> HypercornConfig:
    config = HypercornConfig()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.graceful_timeout_ms / 1000
    # Hypercorn's keep-alive timer runs whenever no request is in progress: between requests,
    # and from a connection's first byte until its request head is complete (trickled or
    # not), and closes the connection when it fires. So it is the header bound too. Not
    # Hypercorn's read_timeout: when it fires it only stops reading (the socket stays open
    # until this timer), and it also fires while a slow answer is being computed.
    config.keep_alive_timeout = min(settings.keep_alive_timeout_s,
                                    settings.header_read_timeout_s)
    config.include_server_header = False
    # Hypercorn's loggers go through ours (one format, one stream, no duplicate lines).
    config.accesslog = logging.getLogger("hypercorn.access") if access_log else None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


def run(args: argparse.Namespace) -> int:
    try:
        redactor = logs.configure(os.environ.get(logs.ENV_LOG_FORMAT))
    except logs.LogFormatError as e:
        print(f"ledger: {e}", file=sys.stderr)
        return EXIT_INVALID
    config: LedgerConfig = load_config(args.config)
    store = store_settings(args.database_url, config.limits)  # a bad URL stops us here
    redactor.add(*_url_passwords(store.url))
    try:
        settings = from_environment(config.limits, host=args.host, port=args.port)
        redactor.add(settings.webhook_secret, settings.api_token)
        settings.check_startable(config.limits, store.dialect.bounded_pool)
        coordinator = bootstrap.coordinator(args.database_url)
        bootstrap.broker()  # a broker misconfigured stops us here, not at the first order
        jobs = bootstrap.job_settings()
        redactor.add(*_url_passwords(coordinator.redis_url))
    except (SettingsError, CoordinationSettingsError, ValueError) as e:
        print(f"ledger: {redactor(str(e))}", file=sys.stderr)
        return EXIT_INVALID
    try:
        missing = bootstrap.missing_migrations(config, args.database_url)
    except StoreNotReady as e:
        print(f"ledger: store not ready: {e} (is it running, and is the URL right?)",
              file=sys.stderr)
        return EXIT_STORE
    if missing and args.migrate:
        with bootstrap.open_ledger(config, args.database_url, ready=False) as ledger:
            log.info("migrated %s: %s", store.redacted_url,
                     ", ".join(migrations.migrate(ledger)))
        missing = []
    if missing:  # reachable, but serving would answer 503 forever: say so and stop
        print(f"ledger: {store.redacted_url} lacks {', '.join(missing)}: run `ledger migrate`",
              file=sys.stderr)
        return EXIT_STORE

    log.info("store %s; webhook secret %s; api token %s; source allowlist %s",
             store.redacted_url, "set" if settings.webhook_secret else "NOT SET",
             "set" if settings.api_token else f"not set (reads are open; set {ENV_TOKEN})",
             "off" if settings.allowlist is None else ", ".join(map(str, settings.allowlist)))
    log.info("coordination: %s", f"Redis at {redact(coordinator.redis_url)}"
             if coordinator.redis_url else "through the store (no LEDGER_REDIS_URL)")
    app = bootstrap.http_app(settings, config, args.database_url, coordinate=coordinator,
                             jobs=jobs)
    asyncio.run(serve_until_signalled(app, hypercorn_config(settings,
                                                            access_log=args.access_log)))
    log.info("stopped")
    return EXIT_OK


def _url_passwords(url: str | None) -> tuple[str, ...]:
    """The password in a URL (``postgresql://user:PASSWORD@...``, ``redis://:PASSWORD@...``),
    as written and percent-decoded, for the log's redaction."""
    password = urlsplit(url).password if url else None
    return (password, unquote(password)) if password else ()


async def serve_until_signalled(app: Starlette, config: HypercornConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopping(stop, signum))
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def _stopping(stop: asyncio.Event, signum: int):  # type: ignore[no-untyped-def]
    def handler() -> None:
        if not stop.is_set():
            log.info("%s: no new connections; finishing in-flight requests",
                     signal.Signals(signum).name)
        stop.set()

    return handler
