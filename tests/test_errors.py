"""Every error code of the contract, with its envelope and headers."""

import logging
import time

import pytest

from tests.conftest import settings_for
from tests.support import free_port
from tests.test_tasks_api import create
from tests.test_validation import error
from todo_service import create_app, db


@pytest.mark.parametrize("path", ["/", "/api", "/api/alice", "/api/alice/task", "/api/alice/tasks/1/done",
                                  "/api/alice/tasks/1/complete/x", "/openapi.yaml", "/healthz/x"])
def test_unknown_route_is_404_not_found(client, path):
    body = error(client.get(path), 404, "NOT_FOUND", None)
    assert "<html" not in body["detail"].lower()


@pytest.mark.parametrize("method,path,allowed", [
    ("delete", "/api/alice/tasks", {"GET", "POST"}),
    ("put", "/api/alice/tasks", {"GET", "POST"}),
    ("patch", "/api/alice/tasks", {"GET", "POST"}),
    ("post", "/api/alice/tasks/1", {"GET", "PUT", "DELETE"}),
    ("patch", "/api/alice/tasks/1", {"GET", "PUT", "DELETE"}),
    ("get", "/api/alice/tasks/1/complete", {"PATCH"}),
    ("post", "/api/alice/tasks/1/complete", {"PATCH"}),
    ("post", "/healthz", {"GET"}),
    ("delete", "/openapi.json", {"GET"}),
])
def test_wrong_method_is_405_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path)
    error(response, 405, "METHOD_NOT_ALLOWED", None)
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_other_users_task_is_indistinguishable_from_a_missing_one(client):
    task = create(client, user="alice")
    url = f"/api/bob/tasks/{task['id']}"
    missing = "/api/bob/tasks/9223372036854775807"
    for method, suffix in [("get", ""), ("put", ""), ("delete", ""), ("patch", "/complete")]:
        theirs = getattr(client, method)(url + suffix, json={"title": "stolen"})
        nothing = getattr(client, method)(missing + suffix, json={"title": "stolen"})
        assert theirs.status_code == nothing.status_code == 404
        strip = lambda r: {k: v for k, v in r.get_json().items() if k != "request_id"}  # noqa: E731
        assert strip(theirs) == strip(nothing) == {
            "detail": "No task with this id exists for this user.", "error_code": "TASK_NOT_FOUND", "field": None}
    assert client.get(f"/api/alice/tasks/{task['id']}").get_json() == task
    assert client.get("/api/bob/tasks").get_json() == []


def test_lists_never_show_other_users_tasks(client):
    mine = {create(client, user="alice", title=f"a{i}")["id"] for i in range(3)}
    theirs = {create(client, user="alice2", title=f"b{i}")["id"] for i in range(2)}
    create(client, user="Alice", title="case matters")
    assert {t["id"] for t in client.get("/api/alice/tasks").get_json()} == mine
    assert {t["id"] for t in client.get("/api/alice2/tasks").get_json()} == theirs
    for status in ("pending", "completed", "all"):
        for t in client.get(f"/api/alice/tasks?status={status}").get_json():
            assert t["user_id"] == "alice"


def test_unexpected_error_is_500_without_internals_and_logged_with_request_id(app, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internal detail")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/boom", headers={"X-Request-ID": "trace-500"})
    body = error(response, 500, "INTERNAL_ERROR", None)
    assert "secret" not in response.get_data(as_text=True) and "Traceback" not in response.get_data(as_text=True)
    assert body["request_id"] == "trace-500"
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert record.request_id == "trace-500" and record.exc_info is not None


def test_unreachable_database_is_503_with_retry_after_within_5s():
    settings = settings_for(f"postgresql://todo@127.0.0.1:{free_port()}/todo", DB_POOL_TIMEOUT="2",
                            DB_CONNECT_TIMEOUT="1")
    app = create_app({"SETTINGS": settings})
    client = app.test_client()
    try:
        for method, path in [("get", "/api/a/tasks"), ("post", "/api/a/tasks"), ("get", "/api/a/tasks/1"),
                             ("put", "/api/a/tasks/1"), ("patch", "/api/a/tasks/1/complete"),
                             ("delete", "/api/a/tasks/1"), ("get", "/readyz")]:
            started = time.monotonic()
            response = getattr(client, method)(path, json={"title": "t"})
            assert time.monotonic() - started < 5
            error(response, 503, "DATABASE_UNAVAILABLE", None)
            assert int(response.headers["Retry-After"]) > 0
        assert client.get("/healthz").status_code == 200
    finally:
        db.close_pool(app)
