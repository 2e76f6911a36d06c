"""The connection pool: one per process, opened lazily after gunicorn forks; how views reach PostgreSQL."""

import atexit
import logging
import os
import select
import threading
import time
from contextlib import contextmanager

import psycopg
from flask import current_app
from psycopg.pq import ConnStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from . import embedded, metrics
from .queries import QUERIES

log = logging.getLogger(__name__)
OUTAGE_WAIT_SECONDS = 0.5
# psycopg_pool retries a lost connection with doubling delays until this many seconds have passed,
# then gives up and lets the next request start a fresh attempt at once. Short, so that a database
# that comes back is in use again within seconds rather than after a long backoff.
RECONNECT_WINDOW_SECONDS = 5.0
_POOL_LOCK = threading.Lock()


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached or did not answer in time."""

    def __init__(self, message, retryable=False):
        super().__init__(message)
        self.retryable = retryable


class DatabaseTimeout(Exception):
    """A statement ran past DB_STATEMENT_TIMEOUT_MS and was cancelled; the database itself is fine."""

    def __init__(self, statement, message):
        super().__init__(message)
        self.statement = statement


# The server ended the session before running the statement (admin or crash shutdown, terminated
# backend): it answers with one of these instead of a result, so running it again is safe.
SERVER_ENDED_SESSION = {"57P01", "57P02", "57P03"}


class PooledConnection(psycopg.Connection):
    """A pool connection that runs each statement in one round trip, on one cursor it keeps.

    `conn.execute` makes a new cursor per statement, about a third of psycopg's cost for a one-row
    query (docs/performance.md). Only the thread holding the connection uses it, so one is enough.
    """

    # Behind a transaction-mode pooler: the statement timeout to set for each statement's own
    # transaction (set by the pool's `configure`); None where the connection's startup set it.
    local_timeout = None

    @property
    def statements(self):
        cursor = self.__dict__.get("_statements")
        if cursor is None or cursor.closed:
            cursor = self._statements = self.cursor()
        return cursor

    @metrics.timed
    def run(self, query, **params):
        """Run a named statement on the kept cursor and return its result, in one round trip.

        Most runs are a plain execute: Parse/Bind/Execute and Sync in one packet, or Bind/Execute
        once psycopg has prepared the statement. Two kinds of run go out as a pipeline with a single
        Sync instead, so that what psycopg sends with the statement travels in the same exchange:
        behind a pooler, the `set_statement_timeout` that bounds it (both run in the implicit
        transaction that ends at the Sync), and a run on which psycopg may prepare it (alone, that
        Parse would wait for an answer of its own). Only plain runs keep the server's reason when it
        ends the session (psycopg's pipeline loses it), so plain is the rule. docs/performance.md.
        """
        cursor = self.statements
        try:
            if self.local_timeout is None and not self._may_prepare(query, params):
                return query.run(cursor, **params)
            if _looks_dead(self):  # closed since checkout: say so while nothing has been sent
                self.close()
                raise DatabaseUnavailable("the server closed the connection", retryable=True)
            with self.pipeline():
                if self.local_timeout is not None:
                    QUERIES.set_statement_timeout.send(cursor, timeout=self.local_timeout)
                query.send(cursor, **params)
            return query.result(cursor)
        except psycopg.errors.QueryCanceled as exc:
            log.warning("slow statement %s: cancelled (%s)", query.name, _first_line(exc))
            raise DatabaseTimeout(query.name, _first_line(exc)) from exc
        finally:
            if query.kind == ":many":
                cursor.close()  # else its result would hold every listed row until the next statement

    def _may_prepare(self, query, params):
        """Whether psycopg may prepare `query` on this run: it prepares a statement on the run after
        `prepare_threshold` runs, counting per text and parameter types. The same count here, by name
        and the types the values are sent as; a miss only costs that run a second round trip."""
        if self.prepare_threshold is None:
            return False
        runs = self.__dict__.setdefault("_runs", {})
        key = (query.name, *map(_sent_as, params.values()))
        count = runs.get(key, 0)
        if count > self.prepare_threshold:
            return False
        runs[key] = count + 1
        return True


def _sent_as(value):
    """The PostgreSQL type psycopg sends `value` as, as far as it varies for one Python type: an int
    goes as int2, int4, int8 or numeric by its size, a list as an array of its items' type (an empty
    one as unknown)."""
    if type(value) is list:
        return list, type(value[0]) if value else None
    if type(value) is not int:
        return type(value)
    if -(2**15) <= value < 2**15:
        return "int2"
    if -(2**31) <= value < 2**31:
        return "int4"
    return "int8" if -(2**63) <= value < 2**63 else "numeric"


def resolve_url(settings):
    """DATABASE_URL when set; otherwise the embedded server, started if needed."""
    return settings.database_url or embedded.start(settings.data_dir)


def connect_kwargs(settings):
    """Per-connection options: timeouts, keepalives, prepared statements, and autocommit."""
    kwargs = {
        "autocommit": True,
        "prepare_threshold": settings.prepare_threshold,
        "connect_timeout": settings.connect_timeout,
        "application_name": "todo_service",
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "row_factory": dict_row,
    }
    if not settings.pgbouncer and settings.statement_timeout_ms:
        # A startup option costs no round trip; poolers reject it, so there each statement sets it (run()).
        kwargs["options"] = f"-c statement_timeout={settings.statement_timeout_ms}"
    return kwargs


def configure_for(settings):
    """The pool's per-connection setup: behind a pooler, the timeout each statement sets for itself."""
    local_timeout = str(settings.statement_timeout_ms) if settings.pgbouncer and settings.statement_timeout_ms else None

    def configure(conn):
        conn.local_timeout = local_timeout

    return configure


def make_pool(settings, url=None):
    """A pool for `settings`, not yet open."""
    return ConnectionPool(
        url or resolve_url(settings),
        connection_class=PooledConnection,
        kwargs=connect_kwargs(settings),
        configure=configure_for(settings),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout,
        max_idle=settings.pool_max_idle,
        max_lifetime=settings.pool_max_lifetime,
        reconnect_timeout=RECONNECT_WINDOW_SECONDS,
        reconnect_failed=lambda pool: log.info("pool %s: reconnecting on the next request", pool.name),
        name="todo_service",
        open=False,
    )


def get_pool(state=None):
    """This process's pool, created on first use so every gunicorn worker gets its own."""
    state = state or current_app.extensions["todo_db"]
    if state.get("pid") != os.getpid():
        with _POOL_LOCK:  # a worker's threads may all arrive at once
            if state.get("pid") != os.getpid():
                pool = make_pool(state["settings"])
                pool.open(wait=False)
                atexit.register(pool.close)
                metrics.watch_pool(pool)
                state.update(pool=pool, pid=os.getpid())
    return state["pool"]


class _Health:
    """Whether this process last found the database up; logs once per change, not per request."""

    up = True

    @classmethod
    def mark(cls, up, reason=""):
        if up != cls.up:
            cls.up = up
            if up:
                log.warning("database available again")
            else:
                log.error("database unavailable: %s", reason)


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _looks_dead(conn):
    """True when the server has closed or is closing this idle connection.

    An idle connection has nothing to read; if its socket is readable, the server sent a FATAL
    notice (restart, pg_terminate_backend, an idle timeout such as Neon's) or closed it. One
    zero-timeout poll, no round trip.
    """
    if conn.closed or conn.pgconn.status != ConnStatus.OK:
        return True
    poller = select.poll()  # not select(): descriptors above 1023 are common in a busy worker
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _looks_dead_by_query(conn):
    """The thorough check: a round trip with an empty statement."""
    try:
        conn.execute("")
    except psycopg.Error:
        return True
    return False


CHECKS = {"poll": _looks_dead, "query": _looks_dead_by_query, "none": lambda conn: False}


def _checkout(pool, timeout, check):
    """A connection that passes `check`; dead ones are closed and replaced without waiting."""
    deadline = time.monotonic() + timeout
    while True:
        conn = pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
        if not check(conn):
            return conn
        conn.close()
        pool.putconn(conn)  # the pool notices it is closed and opens a replacement


@contextmanager
def connection(read_only=False):
    """A pooled connection; connection-level failures become DatabaseUnavailable.

    Retryable when the server ended the session, or, for a statement that changes nothing
    (`read_only`), when the connection broke under it: the server cannot have written anything.
    """
    state = current_app.extensions["todo_db"]
    settings, pool = state["settings"], get_pool(state)
    # While the database is known to be down, wait briefly: answer 503 fast instead of queueing.
    timeout = settings.pool_timeout if _Health.up else min(settings.pool_timeout, OUTAGE_WAIT_SECONDS)
    try:
        conn = _checkout(pool, timeout, CHECKS[settings.pool_check])
    except (psycopg.OperationalError, PoolTimeout) as exc:
        _Health.mark(False, _first_line(exc))
        raise DatabaseUnavailable(_first_line(exc)) from exc
    try:
        yield conn
    except DatabaseTimeout:
        _Health.mark(True)  # it answered, if slowly: a statement timeout is no outage
        raise
    except psycopg.OperationalError as exc:
        retryable = exc.sqlstate in SERVER_ENDED_SESSION or (read_only and conn.closed)
        if not retryable:
            _Health.mark(False, _first_line(exc))
        raise DatabaseUnavailable(_first_line(exc), retryable) from exc
    finally:
        pool.putconn(conn)
    _Health.mark(True)


def run(name, **params):
    """Run one named statement on a pooled connection and return its result.

    Once more on another connection when the server ended the session instead of running it, or
    when a read's connection broke (a connection killed while idle can look alive until used).
    """
    query = QUERIES[name]
    try:
        with connection(query.read_only) as conn:
            return conn.run(query, **params)
    except DatabaseUnavailable as exc:
        if not exc.retryable:
            raise
    with connection(query.read_only) as conn:
        return conn.run(query, **params)


def close_pool(app):
    """Close this process's pool (tests and shutdown)."""
    state = app.extensions.get("todo_db", {})
    pool = state.pop("pool", None)
    state.pop("pid", None)
    if pool is not None:
        pool.close()


def init_app(app):
    """Register the pool state on `app`; nothing connects until the first request."""
    app.extensions["todo_db"] = {"settings": app.config["SETTINGS"]}
