"""What each request costs in round trips to PostgreSQL, counted on the wire, directly and through PgBouncer.

The service talks to the database through bench/proxy.py (1 ms each way), which counts the
exchanges in which the service waited for the server. Each endpoint runs often enough on each
pooled connection that psycopg prepares its statements during the test, so that run is counted too.
"""

import contextlib

import psycopg
import pytest

from bench.proxy import LatencyProxy
from tests.conftest import settings_for
from tests.pgservers import PgBouncer, PgCluster
from tests.support import auth_headers
from todo_service import create_app, db
from todo_service.migrate import migrate
from todo_service.queries import QUERIES

DELAY_MS = 1
POOL = {"DB_POOL_MIN_SIZE": "2", "DB_POOL_MAX_SIZE": "2"}
RUNS = 16  # runs per endpoint: over DATABASE_PREPARE_THRESHOLD + 1 on each of the 2 pooled connections
USER = "wire"


@pytest.fixture(scope="module")
def servers():
    """A PostgreSQL of its own, migrated, and a PgBouncer in transaction mode in front of it."""
    cluster = PgCluster("roundtrips").init().start()
    cluster.execute("CREATE DATABASE todo")
    migrate(cluster.url("todo"))
    bouncer = PgBouncer(cluster.port, name="roundtrips-bouncer").start()
    yield cluster, bouncer
    bouncer.stop()
    cluster.destroy()


@pytest.fixture(params=["direct", "pgbouncer"])
def path(request, servers):
    """(mode, proxy, URL through the proxy, direct URL): the service -> 1 ms -> [PgBouncer ->] PostgreSQL."""
    cluster, bouncer = servers
    cluster.execute("TRUNCATE tasks", dbname="todo")
    port = cluster.port if request.param == "direct" else bouncer.port
    with LatencyProxy(("127.0.0.1", port), DELAY_MS) as proxy:
        yield request.param, proxy, proxy.conninfo(cluster.url("todo")), cluster.url("todo")


def service(mode, url, **env):
    """The app on `url`; pooler mode (DATABASE_PGBOUNCER) when the path goes through PgBouncer."""
    pooler = {"DATABASE_PGBOUNCER": "true"} if mode == "pgbouncer" else {}
    return create_app({"SETTINGS": settings_for(url, **POOL, **pooler, **env), "TESTING": True})


def costs(proxy, call):
    """(response, round trips it cost)."""
    before = proxy.counts()
    response = call()
    return response, (proxy.counts() - before).round_trips


UPDATES = [{"title": "renamed"}, {"description": None}, {"completed": True, "description": "d"},
           {"title": "t", "description": "x", "completed": False}]


def test_every_request_costs_one_round_trip_a_fresh_list_too(path):
    mode, proxy, url, _ = path
    app = service(mode, url)
    client, headers, base = app.test_client(), auth_headers(USER), f"/api/{USER}/tasks"
    seen = {}

    def call(name, status, method, target, **kw):
        response, trips = costs(proxy, lambda: getattr(client, method)(target, headers=headers, **kw))
        assert response.status_code == status, (name, response.get_json())
        seen.setdefault(name, []).append(trips)
        return response

    try:
        since = client.get(base + "/changes", headers=headers).get_json()["next"]  # reads the signing key once
        for run in range(RUNS):
            task = call("create", 201, "post", base, json={"title": f"task {run}"}).get_json()
            one = f"{base}/{task['id']}"
            call("get", 200, "get", one)
            call("update", 200, "put", one, json=UPDATES[run % len(UPDATES)])
            call("toggle", 200, "patch", one + "/complete")
            call("fresh list", 200, "get", base)
            call("kept list", 200, "get", base)
            call("fresh filtered list", 200, "get", base + "?status=pending&sort=title")
            call("kept filtered list", 200, "get", base + "?status=pending&sort=title")
            call("changes snapshot", 200, "get", base + "/changes")
            answer = call("changes since", 200, "get", base + "/changes", query_string={"since": since})
            since = answer.get_json()["next"]
            call("delete", 204, "delete", one)
            call("get missing", 404, "get", one)
            call("delete missing", 404, "delete", one)
            call("readyz", 200, "get", "/readyz")
            call("invalid body", 400, "post", base, json={"title": ""})
    finally:
        db.close_pool(app)
    expected = {name: [1] * RUNS for name in seen}
    expected.update({"invalid body": [0] * RUNS})  # a fresh list too: its version and rows are one statement
    assert seen == expected, f"round trips per request ({mode})"
    counts = proxy.counts()
    assert counts.opaque_connections == 0 and counts.mean_delay_ms >= DELAY_MS


def test_a_list_without_the_list_cache_is_one_round_trip(path):
    """The list's version (its ETag, a primary-key read) and its rows in one statement, cache or not."""
    mode, proxy, url, _ = path
    app = service(mode, url, LIST_CACHE_MB="0")
    client = app.test_client()
    try:
        client.post(f"/api/{USER}/tasks", json={"title": "one"}, headers=auth_headers(USER))
        trips = [costs(proxy, lambda: client.get(f"/api/{USER}/tasks", headers=auth_headers(USER)))[1]
                 for _ in range(RUNS)]
    finally:
        db.close_pool(app)
    assert trips == [1] * RUNS


@pytest.mark.parametrize("prepared", [False, True])
def test_prepared_statements_behind_a_pooler_only_when_asked(servers, prepared):
    """DATABASE_PGBOUNCER_PREPARED=true keeps psycopg's prepared statements in pooler mode (for PgBouncer
    1.21+ with max_prepared_statements): the statement's text then stops crossing the wire."""
    cluster, _ = servers
    cluster.execute("TRUNCATE tasks", dbname="todo")
    with LatencyProxy(("127.0.0.1", cluster.port), DELAY_MS) as proxy:
        env = {"DATABASE_PGBOUNCER_PREPARED": str(prepared).lower()}
        app = service("pgbouncer", proxy.conninfo(cluster.url("todo")), **env)
        client, headers = app.test_client(), auth_headers(USER)
        try:
            task = client.post(f"/api/{USER}/tasks", json={"title": "t"}, headers=headers).get_json()
            for _ in range(RUNS):  # past the prepare threshold on both connections
                assert client.get(f"/api/{USER}/tasks/{task['id']}", headers=headers).status_code == 200
            before = proxy.counts()
            assert client.get(f"/api/{USER}/tasks/{task['id']}", headers=headers).status_code == 200
            sent = proxy.counts() - before
        finally:
            db.close_pool(app)
    assert sent.round_trips == 1
    statement = len(QUERIES.get_task.sql.encode())
    if prepared:
        assert sent.client_bytes < statement, "a prepared statement is run by name, without its text"
    else:
        assert sent.client_bytes > statement, "an unprepared statement travels with its text"


def test_statement_timeout_through_the_proxy_fails_cleanly_in_one_round_trip(path):
    mode, proxy, url, direct_url = path
    app = service(mode, url, DB_STATEMENT_TIMEOUT_MS="300")
    client, headers, base = app.test_client(), auth_headers(USER), f"/api/{USER}/tasks"
    try:
        task = client.post(base, json={"title": "locked"}, headers=headers).get_json()
        with psycopg.connect(direct_url) as blocker:  # holds the row: the update waits
            # Should the service's timeout not fire, the lock goes after 5 s and the test fails, not hangs.
            blocker.execute("SET idle_in_transaction_session_timeout = 5000")
            blocker.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task["id"],))
            response, trips = costs(proxy, lambda: client.put(f"{base}/{task['id']}", json={"title": "x"},
                                                              headers=headers))
            with contextlib.suppress(psycopg.OperationalError):  # ended by its idle timeout, if it came to that
                blocker.rollback()
        assert response.status_code == 503 and response.get_json()["error_code"] == "DATABASE_TIMEOUT"
        assert trips == 1
        for _ in range(4):  # both pooled connections work, each in one round trip
            response, trips = costs(proxy, lambda: client.get(f"{base}/{task['id']}", headers=headers))
            assert (response.status_code, response.get_json()["title"], trips) == (200, "locked", 1)
    finally:
        db.close_pool(app)
