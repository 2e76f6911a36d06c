"""Database loss and return, dropped connections, shutdown: a real PostgreSQL stopped and started."""

import threading
import time

import psycopg
import pytest
import requests

from tests.pgservers import PgCluster
from tests.support import LiveServer
from todo_service.migrate import migrate

API_CALLS = [("GET", "/api/alice/tasks"), ("POST", "/api/alice/tasks"), ("GET", "/api/alice/tasks/1"),
             ("PUT", "/api/alice/tasks/1"), ("PATCH", "/api/alice/tasks/1/complete"),
             ("DELETE", "/api/alice/tasks/999999")]


@pytest.fixture
def cluster():
    pg = PgCluster("outage").init().start()
    pg.execute("CREATE DATABASE todo")
    migrate(pg.url("todo"))
    yield pg
    pg.destroy()


@pytest.fixture
def service(cluster):
    server = LiveServer({"DATABASE_URL": cluster.url("todo"), "WEB_CONCURRENCY": "2", "LOG_LEVEL": "info"})
    server.start()
    yield server
    server.stop()


def _attempt(url):
    try:
        return requests.get(url, timeout=25)
    except requests.RequestException as exc:
        return exc


def call(server, method, path, timeout=10):
    return requests.request(method, server.url(path), json={"title": "t"}, timeout=timeout)


def wait_until_serving(server, limit=60, streak=20):
    """Seconds until the API answers `streak` requests in a row with 200 again (every worker back)."""
    started, ok_since, in_a_row = time.monotonic(), None, 0
    while time.monotonic() - started < limit:
        response = call(server, "GET", "/api/alice/tasks")
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            ok_since, in_a_row = None, 0
            time.sleep(0.05)
            continue
        ok_since = ok_since or time.monotonic()
        in_a_row += 1
        if in_a_row == streak:
            return ok_since - started
    raise AssertionError(f"not serving {limit}s after the database came back")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_outage_answers_503_fast_then_recovers_with_every_task(cluster, service, mode):
    ids = [call(service, "POST", "/api/alice/tasks").json()["id"] for _ in range(5)]
    cluster.stop(mode)
    for _ in range(2):  # twice: both workers, and a pool that already knows
        for method, path in API_CALLS:
            started = time.monotonic()
            response = call(service, method, path)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, (method, path, response.status_code, response.text)
            assert elapsed < 5, f"{method} {path} took {elapsed:.2f}s"
            body = response.json()
            assert body["error_code"] == "DATABASE_UNAVAILABLE" and body["field"] is None
            assert int(response.headers["Retry-After"]) > 0
    assert call(service, "GET", "/readyz").status_code == 503
    assert call(service, "GET", "/healthz").status_code == 200

    cluster.start()
    recovery = wait_until_serving(service)
    print(f"\nrecovered {recovery:.2f}s after PostgreSQL came back ({mode} shutdown)")
    assert recovery < 30
    # No worker keeps a broken connection: many requests in a row, over new connections, all succeed.
    for _ in range(40):
        assert call(service, "GET", "/api/alice/tasks").status_code == 200
    assert call(service, "GET", "/readyz").status_code == 200
    listed = {t["id"] for t in call(service, "GET", "/api/alice/tasks").json()}
    assert set(ids) <= listed
    log = service.output()
    assert log.count("database unavailable:") <= 2 * 2, "outage logged per request, not per state change"
    assert "database available again" in log


@pytest.mark.slow
def test_connections_killed_while_idle_never_reach_a_user(cluster, service):
    for _ in range(10):  # warm both workers' pools
        assert call(service, "POST", "/api/alice/tasks").status_code == 201
    killed = cluster.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE application_name = 'todo_service'", dbname="postgres")[0][0]
    assert killed > 0
    statuses = [call(service, "GET", "/api/alice/tasks").status_code for _ in range(30)]
    assert statuses == [200] * 30, service.output()[:6000]


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_then_exits_0(cluster, service):
    task = call(service, "POST", "/api/alice/tasks").json()
    url = f"/api/alice/tasks/{task['id']}"
    result = {}
    with psycopg.connect(cluster.url("todo")) as blocker:
        blocker.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task["id"],))  # holds the row
        thread = threading.Thread(target=lambda: result.setdefault("r", requests.put(
            service.url(url), json={"title": "finished during shutdown"}, timeout=30)))
        thread.start()
        time.sleep(1.0)  # the PUT is now waiting on the row lock inside a worker
        service.proc.send_signal(15)
        time.sleep(1.0)
        late = {}
        latecomer = threading.Thread(target=lambda: late.setdefault("r", _attempt(service.url("/healthz"))))
        latecomer.start()
        time.sleep(0.5)
        blocker.rollback()  # release the row: the PUT can finish
    thread.join(30)
    latecomer.join(30)
    assert isinstance(late["r"], requests.ConnectionError), f"a connection made after SIGTERM was served: {late}"
    assert result["r"].status_code == 200 and result["r"].json()["title"] == "finished during shutdown"
    assert service.proc.wait(30) == 0
    left = cluster.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'todo_service'")
    assert left[0][0] == 0, "pool connections left open after shutdown"
