"""MAX_TASKS_PER_USER: a create past it is 409 TASK_QUOTA_EXCEEDED, decided atomically by the insert itself."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import SERVICE_ENV, settings_for
from tests.support import LiveServer, with_auth
from todo_service import create_app, db


@pytest.fixture
def small_quota(database_url, clean_db):
    app = create_app({"SETTINGS": settings_for(database_url, MAX_TASKS_PER_USER="3"), "TESTING": True})
    yield app.test_client()
    db.close_pool(app)


def test_a_create_past_the_quota_is_409_and_writes_nothing(small_quota, sql_conn):
    for number in range(3):
        assert small_quota.post("/api/alice/tasks", json={"title": f"t{number}"}).status_code == 201
    refused = small_quota.post("/api/alice/tasks", json={"title": "one too many"})
    assert refused.status_code == 409
    body = refused.get_json()
    assert body["error_code"] == "TASK_QUOTA_EXCEEDED" and "3" in body["detail"] and body["field"] is None
    assert sql_conn.execute("SELECT count(*) AS n FROM tasks WHERE user_id = 'alice'").fetchone()["n"] == 3
    # another user has a quota of their own; a delete frees a place
    assert small_quota.post("/api/bob/tasks", json={"title": "mine"}).status_code == 201
    first = small_quota.get("/api/alice/tasks").get_json()[0]
    assert small_quota.delete(f"/api/alice/tasks/{first['id']}").status_code == 204
    assert small_quota.post("/api/alice/tasks", json={"title": "fits again"}).status_code == 201
    assert small_quota.post("/api/alice/tasks", json={"title": "full again"}).status_code == 409


def test_a_keyed_create_past_the_quota_is_409_and_a_replay_still_replays(small_quota):
    keyed = {"Idempotency-Key": "first-create"}
    created = small_quota.post("/api/alice/tasks", json={"title": "kept"}, headers=keyed)
    assert created.status_code == 201
    for number in range(2):
        small_quota.post("/api/alice/tasks", json={"title": f"t{number}"})
    over = small_quota.post("/api/alice/tasks", json={"title": "over"}, headers={"Idempotency-Key": "new"})
    assert over.status_code == 409 and over.get_json()["error_code"] == "TASK_QUOTA_EXCEEDED"
    replay = small_quota.post("/api/alice/tasks", json={"title": "kept"}, headers=keyed)
    assert replay.status_code == 201 and replay.data == created.data
    assert replay.headers["Idempotent-Replayed"] == "true"
    # the refused key stays free: once there is room, it creates
    small_quota.delete(f"/api/alice/tasks/{created.get_json()['id']}")
    assert small_quota.post("/api/alice/tasks", json={"title": "over"},
                            headers={"Idempotency-Key": "new"}).status_code == 201


def test_concurrent_creates_at_the_edge_never_overshoot(database_url, clean_db, sql_conn):
    """100 creates at once against a quota of 10, through a real gunicorn with two workers."""
    server = LiveServer({"DATABASE_URL": database_url, "WEB_CONCURRENCY": "2", "MIGRATE_ON_START": "false",
                         **SERVICE_ENV, "MAX_TASKS_PER_USER": "10"})
    server.start()
    try:
        path = "/api/edge/tasks"

        def create(number):
            headers = with_auth(path, {"Idempotency-Key": f"k{number}"} if number % 2 else None)
            return requests.post(server.url(path), json={"title": f"t{number}"}, headers=headers, timeout=30)

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(create, range(100)))
    finally:
        server.stop()
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(201) == 10 and statuses.count(409) == 90
    rows = sql_conn.execute("SELECT count(*) AS n FROM tasks WHERE user_id = 'edge'").fetchone()["n"]
    head = sql_conn.execute("SELECT task_count FROM task_list_versions WHERE user_id = 'edge'").fetchone()
    assert rows == 10 and head["task_count"] == 10
