"""The task endpoints, happy paths, through Flask's test client on the real database."""

import re
from datetime import datetime

import pytest

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
USER_IDS = ["8f14e45f-ceea-467f-a0e6-7c2f1d0f3c6b", "user_2NNEqL2nrIRdJ194ndJqAHwEfxC",
            "auth0|5f7c8ec7c33c6c004bbafe82", "alice@example.com"]


def create(client, user="alice", **body):
    body.setdefault("title", "Buy milk")
    response = client.post(f"/api/{user}/tasks", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def parse(ts):
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")


def test_create_returns_the_task_with_location(client):
    response = client.post("/api/alice/tasks", json={"title": "Buy milk"})
    assert response.status_code == 201
    task = response.get_json()
    assert set(task) == {"id", "user_id", "title", "description", "completed", "created_at", "updated_at"}
    assert task["user_id"] == "alice" and task["title"] == "Buy milk"
    assert task["description"] is None and task["completed"] is False
    assert isinstance(task["id"], int) and task["id"] > 0
    assert TIMESTAMP.match(task["created_at"]) and task["updated_at"] == task["created_at"]
    assert response.headers["Location"] == f"/api/alice/tasks/{task['id']}"
    assert response.headers["Content-Type"] == "application/json"


def test_create_with_all_fields(client):
    task = create(client, title="  Pay rent  ", description="  by Friday ", completed=True)
    assert task["title"] == "Pay rent"
    assert task["description"] == "  by Friday "
    assert task["completed"] is True


@pytest.mark.parametrize("user", USER_IDS)
def test_real_world_user_ids_work_on_every_endpoint(client, user):
    task = create(client, user=user)
    assert task["user_id"] == user
    base = f"/api/{user}/tasks"
    assert client.get(base).get_json()[0]["id"] == task["id"]
    assert client.get(f"{base}/{task['id']}").status_code == 200
    assert client.put(f"{base}/{task['id']}", json={"title": "x"}).get_json()["title"] == "x"
    assert client.patch(f"{base}/{task['id']}/complete").get_json()["completed"] is True
    assert client.delete(f"{base}/{task['id']}").status_code == 204


def test_list_is_empty_array_for_new_user(client):
    response = client.get("/api/nobody/tasks")
    assert response.status_code == 200 and response.get_json() == []


def test_get_returns_the_stored_task(client):
    task = create(client, description="two litres")
    response = client.get(f"/api/alice/tasks/{task['id']}")
    assert response.status_code == 200 and response.get_json() == task


def test_put_is_a_partial_update(client):
    task = create(client, description="keep me")
    updated = client.put(f"/api/alice/tasks/{task['id']}", json={"completed": True}).get_json()
    assert updated["completed"] is True
    assert updated["title"] == task["title"] and updated["description"] == "keep me"
    assert updated["created_at"] == task["created_at"]
    assert parse(updated["updated_at"]) > parse(task["updated_at"])


def test_put_each_field_and_null_description_clears(client):
    task = create(client, description="old")
    url = f"/api/alice/tasks/{task['id']}"
    assert client.put(url, json={"title": " New "}).get_json()["title"] == "New"
    assert client.put(url, json={"description": "new"}).get_json()["description"] == "new"
    cleared = client.put(url, json={"description": None}).get_json()
    assert cleared["description"] is None and cleared["title"] == "New"
    all_three = client.put(url, json={"title": "T", "description": "D", "completed": True}).get_json()
    assert (all_three["title"], all_three["description"], all_three["completed"]) == ("T", "D", True)
    assert client.get(url).get_json() == all_three


def test_every_change_moves_updated_at_forward(client):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    stamps = [task["updated_at"]]
    for _ in range(3):
        stamps.append(client.patch(url + "/complete").get_json()["updated_at"])
        stamps.append(client.put(url, json={"title": "same"}).get_json()["updated_at"])
    assert [parse(s) for s in stamps] == sorted({parse(s) for s in stamps})


def test_toggle_flips_both_ways(client):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}/complete"
    assert client.patch(url).get_json()["completed"] is True
    assert client.patch(url).get_json()["completed"] is False


def test_delete_then_gone(client):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    response = client.delete(url)
    assert response.status_code == 204 and response.data == b""
    assert "Content-Type" not in response.headers
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404


def test_healthz_does_not_need_the_database(app, client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    assert "todo_db" in app.extensions and "pool" not in app.extensions["todo_db"]


def test_readyz_when_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert generated != "bad id\twith spaces" and re.match(r"^[0-9a-f]{32}$", generated)
    assert re.match(r"^[0-9a-f]{32}$", client.get("/api/alice/tasks").headers["X-Request-ID"])
    assert client.get("/nope", headers={"X-Request-ID": "r-1"}).get_json()["request_id"] == "r-1"
