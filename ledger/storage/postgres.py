"""The Postgres dialect: the production store."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from eventsourcing.persistence import InterfaceError, Notification, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Json
from psycopg.types.string import TextLoader

from ledger import wire
from ledger.storage.dialect import Column

if TYPE_CHECKING:
    from ledger.storage import StoreSettings

ROWS_PER_FETCH = 1000  # rows in memory at a time when a query's rows are read one by one
COPY_ROWS_MIN = 101  # rows from which COPY beats a multi-row INSERT
_INDEX = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ (USING .*)$")


class PostgresDialect:
    name: ClassVar[str] = "postgres"
    param: ClassVar[str] = "%s"
    concurrent_io: ClassVar[bool] = True  # the driver waits on the server without the GIL
    bounded_pool: ClassVar[bool] = True  # threads share store_pool_size + overflow
    reads_under_write_lock: ClassVar[bool] = True

    @staticmethod
    def name_connections(factory: Any, name: str) -> None:
        """Give the library's pool of ``factory`` an ``application_name`` for its connections
        (before it opens any): pg_stat_activity then tells a process's pools apart."""
        pool = factory.datastore.pool
        pool.kwargs = {**(pool.kwargs or {}), "application_name": name}

    def __init__(self, settings: StoreSettings, recorder: PostgresApplicationRecorder) -> None:
        self.settings = settings
        self.env = settings.env
        self.schema = settings.env["POSTGRES_SCHEMA"]
        self.recorder = recorder
        self.datastore = recorder.datastore

    @contextmanager
    def transaction(self, *, snapshot: bool = False, read_only: bool = False
                    ) -> Iterator[Any]:
        with self.datastore.transaction(commit=not read_only) as cursor:
            # JSON columns come back as their text, for the reader to parse: psycopg's own
            # parse turns numbers into floats (an alert's 0.82 would not survive).
            cursor.adapters.register_loader("json", TextLoader)
            cursor.adapters.register_loader("jsonb", TextLoader)
            if snapshot:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute(f"SET LOCAL search_path TO {self.schema}")
            yield cursor

    @contextmanager
    def turn(self, key: str, timeout_s: int) -> Iterator[None]:
        # A transaction-scoped advisory lock: it ends with the transaction, whatever happens
        # to this process.
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{timeout_s}s'")
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                           (f"ledger:{self.schema}:{key}",))
            yield

    def session_lock(self, name: str) -> AdvisoryLock:
        return AdvisoryLock(self.env, f"ledger:{self.schema}:{name}")

    def lock_for_reading(self, cursor: Any, tables: Sequence[str]) -> None:
        cursor.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS SHARE MODE")

    def lock_for_swapping(self, cursor: Any, tables: Sequence[str], wait_ms: int) -> None:
        cursor.execute(f"SET LOCAL lock_timeout = '{wait_ms}ms'")
        cursor.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")

    def allow_idle(self, cursor: Any, seconds: int) -> None:
        cursor.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{seconds}s'")

    def to_db(self, kind: str, value: Any) -> Any:
        if value is None:
            return None
        if kind == "num":
            return Decimal(value)
        if kind == "ts":
            return datetime.fromisoformat(value).astimezone(UTC)
        if kind == "json":
            # Typed json, not jsonb: the json column of an alert's payload keeps this text as
            # written (key order, numbers); jsonb columns take it by assignment cast.
            text = wire.dumps(value).decode()
            return Json(value, dumps=lambda _: text)
        if kind == "bool":
            return bool(value)
        return value

    def now(self) -> Any:
        return datetime.now(UTC)

    def insert_rows(self, cursor: Any, table: str, columns: Sequence[Column],
                    rows: Sequence[Mapping[str, Any]]) -> None:
        names = ", ".join(c for c, _ in columns)
        if len(rows) >= COPY_ROWS_MIN:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([self._copy_value(kind, row[c]) for c, kind in columns])
            return
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})",
            [[self.to_db(kind, row[c]) for c, kind in columns] for row in rows])

    def _copy_value(self, kind: str, value: Any) -> Any:
        """A value for ``COPY ... FROM STDIN`` (text format): the server parses the same text
        ``to_db``'s objects are sent as, without building them first. Money and prices are
        already exact decimal strings; UTC times (``wire.iso``: a 'Z' suffix) and JSON go as
        text; anything else takes ``to_db``'s way."""
        if kind == "num" and type(value) is str:
            return value
        if kind == "ts" and type(value) is str and value.endswith("Z"):
            return value
        if kind == "json" and value is not None:
            return wire.dumps(value).decode()
        return self.to_db(kind, value)

    def fetch_rows(self, cursor: Any) -> Iterator[Any]:
        while rows := cursor.fetchmany(ROWS_PER_FETCH):
            yield from rows

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as the library's
    def notifications(self, after: int, limit: int, stop: int | None = None
                      ) -> list[Notification]:
        """The recorder's ``select_notifications`` query, fetched in binary: the library's
        text fetch hex-encodes every event's state and took ~3/4 of the time of a read."""
        sql = (f"SELECT notification_id, originator_id, originator_version, topic, state "
               f"FROM {self.recorder.events_table_name} WHERE notification_id > %s"
               f"{' AND notification_id <= %s' if stop is not None else ''} "
               f"ORDER BY notification_id LIMIT %s")
        params = (after, stop, limit) if stop is not None else (after, limit)
        with self.transaction(read_only=True) as cursor:
            cursor.execute(sql, params, binary=True)
            return [Notification(id=r["notification_id"], originator_id=r["originator_id"],
                                 originator_version=r["originator_version"], topic=r["topic"],
                                 state=bytes(r["state"])) for r in cursor.fetchall()]

    def create_schema(self) -> None:
        """The URL's ``?schema=``, created if missing (`ledger migrate`)."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(self.schema)))

    def execute_script(self, cursor: Any, sql: str) -> None:
        cursor.execute(sql)  # psycopg runs a script of several statements in one call

    def table_names(self, cursor: Any) -> list[str]:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return [row["tablename"] for row in cursor.fetchall()]

    def copy_table(self, cursor: Any, table: str, copy: str, suffix: str) -> None:
        cursor.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")

    def replace_table(self, cursor: Any, table: str, copy: str) -> None:
        old = self._indexes(cursor, table)
        new = self._indexes(cursor, copy)
        cursor.execute(f"DROP TABLE {table}")
        cursor.execute(f"ALTER TABLE {copy} RENAME TO {table}")
        for shape, index in new.items():
            if shape in old:  # keep the migrations' index names
                cursor.execute(f"ALTER INDEX {index} RENAME TO {old[shape]}")

    @staticmethod
    def _indexes(cursor: Any, table: str) -> dict[tuple[bool, str], str]:
        """Index shape (unique?, definition without names) -> index name."""
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes "
                       "WHERE schemaname = current_schema() AND tablename = %s", (table,))
        found = {}
        for row in cursor.fetchall():
            match = _INDEX.match(row["indexdef"])
            if match:
                found[(bool(match.group(1)), match.group(2))] = row["indexname"]
        return found


class AdvisoryLock:
    """A session advisory lock held on a connection of its own: it dies with that
    connection (process killed, server restarted), which ``check`` finds out."""

    def __init__(self, env: Mapping[str, str], key: str) -> None:
        self.env = env
        self.key = key
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def held(self) -> bool:
        if self._conn is None:
            return False
        if self._conn.closed or self._conn.broken:
            self.release()
            return False
        return True

    def try_acquire(self) -> bool:
        if self.held:
            return True
        env = self.env
        try:
            conn = psycopg.connect(
                host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                dbname=env["POSTGRES_DBNAME"], user=env["POSTGRES_USER"],
                password=env["POSTGRES_PASSWORD"] or None, autocommit=True,
                connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]),
                application_name="ledger-lock")
        except psycopg.OperationalError:
            return False
        row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                           (self.key,)).fetchone()
        if row is None or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def check(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
            except psycopg.Error:
                self.release()
                return False
        return self.held

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


class FencedApplicationRecorder(PostgresApplicationRecorder):
    """The library's recorder, and one thing more: ``save(..., fence=check)`` runs
    ``check(cursor)`` in the very transaction that inserts the events, before them. A leader
    passes its epoch check (``coordination``): a stale leader's events are refused by the
    database, never half-written."""

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> None:
        fence = kwargs.get("fence")
        if fence is not None:
            # The library qualifies its own tables; ours resolve beside them.
            curs.execute(SQL("SET LOCAL search_path TO {}").format(
                Identifier(self.datastore.schema)))
            fence(curs)
        super()._insert_events(curs, stored_events, **kwargs)
