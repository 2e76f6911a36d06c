"""Fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL), a migrated database, the app, a live gunicorn."""

import os
import shutil

import psycopg
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.cluster import Balanced
from tests.pgservers import PgBouncer, PgCluster
from tests.support import LOG_DIR, SUITE_METRICS_TOKEN, WITH_AUTH, LiveServer, serve_suite_keys, with_auth
from todo_service import create_app, db, embedded
from todo_service.config import PROJECT_ROOT, load_settings
from todo_service.migrate import migrate
from todo_service.scratch import scratch_database

# `make test` runs the tests that talk to the live server once more with this set: `live_server` is
# then HAProxy in front of two instances (tests/cluster.py), both on one PostgreSQL through PgBouncer.
THROUGH_BALANCER = os.environ.get("TEST_THROUGH_BALANCER") == "1"
# `make test` runs the API tests a second time with this set: every connection the tests and the
# service make then goes through a real PgBouncer in transaction pooling mode.
THROUGH_PGBOUNCER = os.environ.get("TEST_THROUGH_PGBOUNCER") == "1" or THROUGH_BALANCER
# With TEST_AUTH=1 every app and server the tests start verifies tokens against the suite's key set.
# The suite sends far more than a user's share of requests from one address: rate limits are off for
# these apps and servers, and tests/test_ratelimit.py turns them on where it needs them.
SERVICE_ENV = {"RATE_LIMIT": "off", "RATE_LIMIT_WRITES": "off",
               **({"DATABASE_PGBOUNCER": "true"} if THROUGH_PGBOUNCER else {}),
               **({"AUTH_JWKS_URL": serve_suite_keys(), "METRICS_TOKEN": SUITE_METRICS_TOKEN} if WITH_AUTH else {})}


def pytest_sessionstart(session):
    """Start each session with no gunicorn logs left from earlier ones."""
    shutil.rmtree(LOG_DIR, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Through the balancer, only the tests that talk to the live server run (the others did already)."""
    if THROUGH_BALANCER:
        others = [item for item in items if "live_server" not in getattr(item, "fixturenames", ())]
        config.hook.pytest_deselected(items=others)
        items[:] = [item for item in items if item not in others]


@pytest.fixture(scope="session")
def server_url():
    """URL of a PostgreSQL server with a maintenance database to create test databases in."""
    if THROUGH_PGBOUNCER:
        cluster = PgCluster("behind-pgbouncer").init().start()
        bouncer = PgBouncer(cluster.port).start()
        yield bouncer.url()
        bouncer.stop()
        cluster.destroy()
        return
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    yield embedded.start(PROJECT_ROOT / ".data" / "test-postgres")
    embedded.stop()


@pytest.fixture(scope="session")
def database_url(server_url):
    """A fresh, migrated database for this test session, dropped at the end."""
    with scratch_database(server_url, "todo_test") as url:
        migrate(url)
        yield url


@pytest.fixture
def sql_conn(database_url):
    """A direct connection to the test database, for arranging and inspecting rows."""
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row,
                         prepare_threshold=None) as conn:
        yield conn


@pytest.fixture
def clean_db(sql_conn):
    """Start from empty tasks, idempotency keys, head rows and tombstones."""
    sql_conn.execute("TRUNCATE tasks, idempotency_keys, task_list_versions, task_tombstones")


def settings_for(database_url, **overrides):
    """Settings as the service would read them, pointed at `database_url`."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_URL_DIRECT")}
    env.update({"DATABASE_URL": database_url, "MIGRATE_ON_START": "false", **SERVICE_ENV, **overrides})
    return load_settings(env)


class UserClient(FlaskClient):
    """Flask's test client; with TEST_AUTH=1 each request carries a token for its path's user."""

    def open(self, *args, **kwargs):
        if args and isinstance(args[0], str):
            kwargs["headers"] = with_auth(args[0], kwargs.get("headers"))
        return super().open(*args, **kwargs)


Flask.test_client_class = UserClient  # for every app the tests make


@pytest.fixture
def app(database_url, clean_db):
    """The Flask app on the test database."""
    application = create_app({"SETTINGS": settings_for(database_url), "TESTING": True})
    yield application
    db.close_pool(application)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def live_server(database_url):
    """A real gunicorn (gunicorn.conf.py, two workers) on 127.0.0.1, stopped by PID afterwards; with
    TEST_THROUGH_BALANCER=1, HAProxy in front of two of them."""
    if THROUGH_BALANCER:
        server = Balanced(database_url, SERVICE_ENV).start()
    else:
        server = LiveServer({"DATABASE_URL": database_url, "WEB_CONCURRENCY": "2", "MIGRATE_ON_START": "false",
                             **SERVICE_ENV}).start()
    yield server
    server.stop()


@pytest.fixture
def api(live_server, clean_db):
    """`api(method, path, **requests_kwargs)` against the live gunicorn, on one keep-alive session."""
    session = requests.Session()

    def call(method, path, headers=None, **kw):
        return session.request(method, live_server.url(path), headers=with_auth(path, headers), timeout=30, **kw)

    yield call
    session.close()


@pytest.fixture
def empty_database(server_url):
    """A new, empty database (no migrations), dropped afterwards."""
    with scratch_database(server_url, "todo_empty") as url:
        yield url
