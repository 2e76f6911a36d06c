"""The connection pool: one per process, opened lazily after gunicorn forks; how views reach PostgreSQL."""

import atexit
import logging
import os
from contextlib import contextmanager

import psycopg
from flask import current_app
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from . import embedded
from .queries import QUERIES

log = logging.getLogger(__name__)
OUTAGE_WAIT_SECONDS = 0.5


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached or did not answer in time."""


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
        # A startup option costs no round trip; poolers reject it, so they get SET LOCAL instead.
        kwargs["options"] = f"-c statement_timeout={settings.statement_timeout_ms}"
    return kwargs


def make_pool(settings, url=None):
    """A pool for `settings`, not yet open."""
    return ConnectionPool(
        url or resolve_url(settings),
        kwargs=connect_kwargs(settings),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout,
        max_idle=settings.pool_max_idle,
        max_lifetime=settings.pool_max_lifetime,
        check=ConnectionPool.check_connection if settings.pool_check == "checkout" else None,
        reconnect_timeout=float("inf"),
        name="todo_service",
        open=False,
    )


def get_pool():
    """This process's pool, created on first use so every gunicorn worker gets its own."""
    state = current_app.extensions["todo_db"]
    if state.get("pid") != os.getpid():
        pool = make_pool(current_app.config["SETTINGS"])
        pool.open(wait=False)
        atexit.register(pool.close)
        state.update(pid=os.getpid(), pool=pool)
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


@contextmanager
def connection():
    """A pooled connection; connection-level failures become DatabaseUnavailable."""
    settings = current_app.config["SETTINGS"]
    # While the database is known to be down, wait briefly: answer 503 fast instead of queueing.
    timeout = settings.pool_timeout if _Health.up else min(settings.pool_timeout, OUTAGE_WAIT_SECONDS)
    try:
        with get_pool().connection(timeout=timeout) as conn:
            if settings.pgbouncer and settings.statement_timeout_ms:
                with conn.transaction():
                    QUERIES.set_statement_timeout.run(conn, timeout=str(settings.statement_timeout_ms))
                    yield conn
            else:
                yield conn
    except (psycopg.OperationalError, PoolTimeout) as exc:
        _Health.mark(False, _first_line(exc))
        raise DatabaseUnavailable(_first_line(exc)) from exc
    _Health.mark(True)


def run(name, **params):
    """Run one named statement on a pooled connection and return its result."""
    with connection() as conn:
        return QUERIES[name].run(conn, **params)


def close_pool(app):
    """Close this process's pool (tests and shutdown)."""
    state = app.extensions.get("todo_db", {})
    pool = state.pop("pool", None)
    state.pop("pid", None)
    if pool is not None:
        pool.close()


def init_app(app):
    """Register the pool state on `app`; nothing connects until the first request."""
    app.extensions["todo_db"] = {}
