"""A statement that runs past DB_STATEMENT_TIMEOUT_MS: 503 DATABASE_TIMEOUT, logged once, and no outage."""

import contextlib
import logging

import psycopg
import pytest

from tests.conftest import settings_for
from tests.support import auth_headers
from tests.test_validation import error
from todo_service import create_app, db

USER = "slow"


@pytest.fixture
def slow_app(database_url, clean_db):
    """The app with a 200 ms statement timeout and a pool of two connections."""
    settings = settings_for(database_url, DB_STATEMENT_TIMEOUT_MS="200", DB_POOL_MIN_SIZE="2", DB_POOL_MAX_SIZE="2")
    application = create_app({"SETTINGS": settings, "TESTING": True})
    yield application
    db.close_pool(application)


@contextlib.contextmanager
def row_locked(database_url, task_id):
    """Another session holds the task's row, so a statement that writes it waits (and times out)."""
    with psycopg.connect(database_url) as blocker:
        # Should the service's timeout not fire, the lock goes after 5 s and the test fails, not hangs.
        blocker.execute("SET idle_in_transaction_session_timeout = 5000")
        blocker.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task_id,))
        yield
        with contextlib.suppress(psycopg.OperationalError):
            blocker.rollback()


@pytest.mark.parametrize("method,suffix,statement", [
    ("put", "", "update_task"), ("patch", "/complete", "toggle_task"), ("delete", "", "delete_task")])
def test_timeout_is_503_database_timeout_logged_once_and_no_outage(slow_app, database_url, caplog, method,
                                                                   suffix, statement):
    client, headers = slow_app.test_client(), auth_headers(USER)
    task = client.post(f"/api/{USER}/tasks", json={"title": "held"}, headers=headers).get_json()
    url = f"/api/{USER}/tasks/{task['id']}"
    with row_locked(database_url, task["id"]), caplog.at_level(logging.INFO):
        response = getattr(client, method)(url + suffix, json={"title": "x"},
                                           headers={**headers, "X-Request-ID": "slow-1"})
    body = error(response, 503, "DATABASE_TIMEOUT", None)
    assert body["request_id"] == "slow-1" and int(response.headers["Retry-After"]) > 0
    assert "timeout" in body["detail"].lower() or "too long" in body["detail"]

    logged = [r for r in caplog.records if r.name.startswith("todo_service") and r.levelno >= logging.WARNING]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert statement in logged[0].getMessage() and "slow statement" in logged[0].getMessage()
    assert logged[0].request_id == "slow-1"
    assert not any("database unavailable" in r.getMessage() for r in caplog.records)

    # The worker still sees the database up and its connections work: every one of them, at once.
    for _ in range(4):
        assert client.get(url, headers=headers).get_json()["title"] == "held"
    assert client.get("/readyz").status_code == 200
    assert getattr(client, method)(url + suffix, json={"title": "x"}, headers=headers).status_code in (200, 204)
    assert not any("database unavailable" in r.getMessage() or "available again" in r.getMessage()
                   for r in caplog.records)
