"""Idempotency-Key on create and complete: a retry is answered again, never done again."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest
import requests

from tests.conftest import settings_for
from tests.support import auth_headers, wait_for_lock_wait
from tests.test_tasks_api import create
from todo_service import create_app, db, idempotency

KEY = "3f2b8c1e-6a1d-4c55-9a8e-0c7d2f1b9e47"


def keyed(key=KEY):
    return {"Idempotency-Key": key}


def count_tasks(sql_conn, user="alice"):
    return sql_conn.execute("SELECT count(*) AS n FROM tasks WHERE user_id = %s", (user,)).fetchone()["n"]


def assert_same_answer(first, again):
    assert again.status_code == first.status_code
    assert again.data == first.data  # byte for byte
    assert again.headers.get("Location") == first.headers.get("Location")
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_a_retried_create_gets_the_first_answer_and_makes_no_second_task(client, sql_conn):
    first = client.post("/api/alice/tasks", json={"title": "Buy milk"}, headers=keyed())
    assert first.status_code == 201
    task = first.get_json()
    assert first.headers["Location"] == f"/api/alice/tasks/{task['id']}"
    assert first.headers["ETag"] == f'"{task["updated_at"]}"'
    for _ in range(3):
        assert_same_answer(first, client.post("/api/alice/tasks", json={"title": "Buy milk"}, headers=keyed()))
    assert count_tasks(sql_conn) == 1


def test_a_keyed_answer_is_the_same_json_as_any_other(client):
    """The stored body is rendered by PostgreSQL; it matches the API's own rendering byte for byte."""
    text = "".join(chr(c) for c in range(1, 0x250)) + "\u2028\u2029\ufeff\U0001f600 \"quoted\" \\ /"
    first = client.post("/api/alice/tasks", json={"title": "T é 😀", "description": text}, headers=keyed())
    task = first.get_json()
    assert task["description"] == text
    assert client.get(f"/api/alice/tasks/{task['id']}").data == first.data
    toggled = client.patch(f"/api/alice/tasks/{task['id']}/complete", headers=keyed("toggle"))
    assert client.get(f"/api/alice/tasks/{task['id']}").data == toggled.data


def test_a_replay_changes_nothing_even_after_the_task_changed_or_went(client, sql_conn):
    first = client.post("/api/alice/tasks", json={"title": "original"}, headers=keyed())
    url = first.headers["Location"]
    client.put(url, json={"title": "changed since"})
    assert_same_answer(first, client.post("/api/alice/tasks", json={"title": "original"}, headers=keyed()))
    assert client.get(url).get_json()["title"] == "changed since"
    client.delete(url)
    assert_same_answer(first, client.post("/api/alice/tasks", json={"title": "original"}, headers=keyed()))
    assert count_tasks(sql_conn) == 0


def test_a_retried_complete_flips_once(client, sql_conn):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    first = client.patch(url + "/complete", headers=keyed())
    assert first.status_code == 200 and first.get_json()["completed"] is True
    assert first.headers["ETag"] == f'"{first.get_json()["updated_at"]}"' and "Location" not in first.headers
    for _ in range(3):
        assert_same_answer(first, client.patch(url + "/complete", headers=keyed()))
    assert client.get(url).get_json() == first.get_json()
    client.patch(url + "/complete")  # flipped back by another request
    assert_same_answer(first, client.patch(url + "/complete", headers=keyed()))
    assert client.get(url).get_json()["completed"] is False
    client.delete(url)
    assert_same_answer(first, client.patch(url + "/complete", headers=keyed()))  # a replay, not a 404


def test_a_replay_wins_over_a_precondition_that_no_longer_holds(client):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}/complete"
    headers = {**keyed(), "If-Match": f'"{task["updated_at"]}"'}
    first = client.patch(url, headers=headers)
    assert first.status_code == 200
    assert_same_answer(first, client.patch(url, headers=headers))  # the tag is stale now: still the answer


@pytest.mark.parametrize("second", [
    ("post", "/api/alice/tasks", {"title": "another title"}),
    ("post", "/api/alice/tasks", {"title": "Buy milk", "completed": True}),
    ("post", "/api/alice/tasks", {"title": "Buy milk", "description": "more"}),
    ("patch", "/api/alice/tasks/{id}/complete", None),
])
def test_the_same_key_on_another_request_is_422(client, sql_conn, second):
    first = client.post("/api/alice/tasks", json={"title": "Buy milk"}, headers=keyed())
    method, path, body = second
    response = getattr(client, method)(path.format(id=first.get_json()["id"]), json=body, headers=keyed())
    assert response.status_code == 422
    error = response.get_json()
    assert error["error_code"] == "IDEMPOTENCY_KEY_REUSED" and error["field"] == "Idempotency-Key"
    assert response.headers["Cache-Control"] == "no-store"
    assert count_tasks(sql_conn) == 1
    assert client.get(first.headers["Location"]).get_json() == first.get_json()


def test_a_complete_key_reused_on_another_task_is_422(client):
    one, two = create(client), create(client)
    assert client.patch(f"/api/alice/tasks/{one['id']}/complete", headers=keyed()).status_code == 200
    response = client.patch(f"/api/alice/tasks/{two['id']}/complete", headers=keyed())
    assert response.status_code == 422 and response.get_json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert client.get(f"/api/alice/tasks/{two['id']}").get_json()["completed"] is False


def test_the_same_request_is_judged_after_validation(client, sql_conn):
    first = client.post("/api/alice/tasks", json={"title": "Buy milk"}, headers=keyed())
    for body in [{"title": "  Buy milk  "}, {"completed": False, "title": "Buy milk", "description": None}]:
        assert_same_answer(first, client.post("/api/alice/tasks", json=body, headers=keyed()))
    assert count_tasks(sql_conn) == 1


def test_keys_belong_to_one_user(client, sql_conn):
    mine = client.post("/api/alice/tasks", json={"title": "same"}, headers=keyed())
    theirs = client.post("/api/bob/tasks", json={"title": "same"}, headers=keyed())
    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers and theirs.get_json()["user_id"] == "bob"
    assert count_tasks(sql_conn, "alice") == count_tasks(sql_conn, "bob") == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "caf\u00e9", "tab\there", "\u00a0"])
def test_a_key_that_is_not_1_to_255_printable_ascii_is_400(client, sql_conn, key):
    task = create(client)
    for response in [client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed(key)),
                     client.patch(f"/api/alice/tasks/{task['id']}/complete", headers=keyed(key))]:
        assert response.status_code == 400
        error = response.get_json()
        assert error["error_code"] == "VALIDATION_ERROR" and error["field"] == "Idempotency-Key"
    assert count_tasks(sql_conn) == 1


@pytest.mark.parametrize("key", ["x", "y" * 255, "".join(chr(c) for c in range(0x21, 0x7F))])
def test_any_printable_ascii_key_of_1_to_255_works(client, key):
    first = client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed(key))
    assert first.status_code == 201
    assert_same_answer(first, client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed(key)))


def test_only_successful_writes_are_kept(client, sql_conn):
    """A refused request leaves its key free for the corrected one."""
    assert client.post("/api/alice/tasks", json={"title": ""}, headers=keyed()).status_code == 400
    broken = client.post("/api/alice/tasks", data="{", content_type="application/json", headers=keyed())
    assert broken.status_code == 422
    created = client.post("/api/alice/tasks", json={"title": "fixed"}, headers=keyed())
    assert created.status_code == 201 and "Idempotent-Replayed" not in created.headers
    task = created.get_json()
    url = f"/api/alice/tasks/{task['id']}/complete"
    assert client.patch("/api/alice/tasks/999999/complete", headers=keyed("k2")).status_code == 404
    assert client.patch(url, headers={**keyed("k2"), "If-Match": '"stale"'}).status_code == 412
    assert client.get(f"/api/alice/tasks/{task['id']}").get_json()["completed"] is False
    flipped = client.patch(url, headers={**keyed("k2"), "If-Match": f'"{task["updated_at"]}"'})
    assert flipped.status_code == 200 and "Idempotent-Replayed" not in flipped.headers
    keys = sql_conn.execute("SELECT idempotency_key, status FROM idempotency_keys ORDER BY 1").fetchall()
    assert keys == [{"idempotency_key": KEY, "status": 201}, {"idempotency_key": "k2", "status": 200}]


def test_a_missing_or_someone_elses_task_is_404_with_a_key(client):
    theirs = create(client, user="bob")
    for url in ["/api/alice/tasks/999999/complete", f"/api/alice/tasks/{theirs['id']}/complete"]:
        response = client.patch(url, headers=keyed())
        assert response.status_code == 404 and response.get_json()["error_code"] == "TASK_NOT_FOUND"
    assert client.get(f"/api/bob/tasks/{theirs['id']}").get_json() == theirs


def test_without_the_header_nothing_is_kept_and_other_endpoints_ignore_it(client, sql_conn):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    assert client.put(url, json={"title": "x"}, headers=keyed()).status_code == 200
    assert client.put(url, json={"title": "y"}, headers=keyed()).get_json()["title"] == "y"
    assert client.get(url, headers=keyed("not a key")).status_code == 200
    client.patch(url + "/complete")
    assert client.delete(url, headers=keyed()).status_code == 204
    assert sql_conn.execute("SELECT count(*) AS n FROM idempotency_keys").fetchone()["n"] == 0


def key_lifetime(sql_conn, key=KEY):
    row = sql_conn.execute("SELECT expires_at - now() AS left FROM idempotency_keys WHERE idempotency_key = %s",
                           (key,)).fetchone()
    return row["left"]


def test_keys_live_24_hours_by_default(client, sql_conn):
    client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed())
    assert timedelta(hours=23, minutes=59) < key_lifetime(sql_conn) <= timedelta(hours=24)


def test_key_lifetime_is_configurable(database_url, clean_db, sql_conn):
    app = create_app({"SETTINGS": settings_for(database_url, IDEMPOTENCY_TTL_HOURS="2"), "TESTING": True})
    try:
        app.test_client().post("/api/alice/tasks", json={"title": "t"}, headers=keyed())
        assert timedelta(hours=1, minutes=59) < key_lifetime(sql_conn) <= timedelta(hours=2)
    finally:
        db.close_pool(app)


def test_after_its_lifetime_a_key_carries_a_new_request(client, sql_conn):
    first = client.post("/api/alice/tasks", json={"title": "first"}, headers=keyed())
    sql_conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    again = client.post("/api/alice/tasks", json={"title": "first"}, headers=keyed())
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.get_json()["id"] != first.get_json()["id"]
    sql_conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    other = client.post("/api/alice/tasks", json={"title": "another request"}, headers=keyed())
    assert other.status_code == 201 and other.get_json()["title"] == "another request"
    assert_same_answer(other, client.post("/api/alice/tasks", json={"title": "another request"}, headers=keyed()))
    assert count_tasks(sql_conn) == 3


def insert_keys(sql_conn, count, expires):
    prefix = f"k{int(expires.total_seconds())}-{count}-"
    sql_conn.execute(
        "INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, status, body, etag, expires_at) "
        "SELECT 'old', %s || g, '\\x00', 201, '\\x7b7d', 'tag', now() + %s + g * interval '1 millisecond' "
        "FROM generate_series(1, %s) AS g", (prefix, expires, count))


def test_expired_keys_are_purged_by_the_service_in_small_batches(database_url, clean_db, sql_conn):
    insert_keys(sql_conn, idempotency.PURGE_BATCH + 100, timedelta(hours=-1))
    insert_keys(sql_conn, 5, timedelta(hours=1))
    remaining = "SELECT count(*) FILTER (WHERE expires_at <= now()) AS expired, count(*) AS n FROM idempotency_keys"
    app = create_app({"SETTINGS": settings_for(database_url), "TESTING": True})
    try:
        client = app.test_client()
        client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed("a"))  # a full batch of the oldest
        assert sql_conn.execute(remaining).fetchone() == {"expired": 100, "n": 106}
        oldest = sql_conn.execute("SELECT min(expires_at) AS t FROM idempotency_keys WHERE user_id = 'old'")
        assert oldest.fetchone()["t"] > sql_conn.execute("SELECT now() - interval '1 hour' AS t").fetchone()["t"]
        client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed("b"))  # the batch was full: again
        assert sql_conn.execute(remaining).fetchone() == {"expired": 0, "n": 7}
        insert_keys(sql_conn, 10, timedelta(hours=-1))
        client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed("c"))  # not due for a minute
        assert sql_conn.execute(remaining).fetchone() == {"expired": 10, "n": 18}
    finally:
        db.close_pool(app)


def test_a_request_waits_for_one_in_flight_with_its_key_and_replays_it(client, database_url, sql_conn):
    """The first request's transaction is still open: the retry waits for it, then answers with its answer."""
    client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed())  # only to learn the request's hash
    request_hash = sql_conn.execute("DELETE FROM idempotency_keys RETURNING request_hash").fetchone()["request_hash"]
    sql_conn.execute("TRUNCATE tasks")
    answer = {}
    with psycopg.connect(database_url) as first:
        first.execute(
            "INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, status, body, location, etag, "
            "expires_at) VALUES ('alice', %s, %s, 201, %s, '/api/alice/tasks/7', 'then', now() + interval '1 hour')",
            (KEY, request_hash, b'{"stored": true}'))
        retry = threading.Thread(target=lambda: answer.setdefault("retry", client.post(
            "/api/alice/tasks", json={"title": "t"}, headers=keyed())))
        retry.start()
        wait_for_lock_wait(sql_conn, retry)
        first.commit()
    retry.join()
    response = answer["retry"]
    assert response.status_code == 201 and response.data == b'{"stored": true}'
    assert response.headers["Idempotent-Replayed"] == "true" and response.headers["Location"] == "/api/alice/tasks/7"
    assert response.headers["ETag"] == '"then"'
    assert count_tasks(sql_conn) == 0


def test_when_the_key_cannot_be_settled_the_answer_is_409(client, sql_conn, monkeypatch):
    monkeypatch.setattr(idempotency, "ATTEMPTS", 1)
    client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed())
    sql_conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    response = client.post("/api/alice/tasks", json={"title": "t"}, headers=keyed())
    assert response.status_code == 409 and response.headers["Retry-After"] == "1"
    assert response.get_json()["error_code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"
    assert count_tasks(sql_conn) == 1


# --- concurrency, over real HTTP ----------------------------------------------------------------------

def concurrently(live_server, user, requests_args, workers):
    def send(args):
        method, path, body = args
        with requests.Session() as session:
            return session.request(method, live_server.url(path), json=body, timeout=60,
                                   headers={**keyed(), **auth_headers(user)})

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(send, requests_args))


def test_100_concurrent_creates_with_one_key_make_one_task(live_server, api, sql_conn):
    answers = concurrently(live_server, "crowd", [("POST", "/api/crowd/tasks", {"title": "once"})] * 100, 50)
    assert count_tasks(sql_conn, "crowd") == 1
    assert {answer.status_code for answer in answers} <= {201, 409}
    done = [answer for answer in answers if answer.status_code == 201]
    assert len({(a.content, a.headers["Location"], a.headers["ETag"]) for a in done}) == 1
    assert len([a for a in done if "Idempotent-Replayed" not in a.headers]) == 1


def test_concurrent_completes_with_one_key_flip_once(live_server, api, sql_conn):
    task = api("POST", "/api/crowd/tasks", json={"title": "flip me"}).json()
    path = f"/api/crowd/tasks/{task['id']}/complete"
    answers = concurrently(live_server, "crowd", [("PATCH", path, None)] * 40, 40)
    assert {answer.status_code for answer in answers} <= {200, 409}
    done = [answer for answer in answers if answer.status_code == 200]
    assert len({a.content for a in done}) == 1 and done[0].json()["completed"] is True
    assert api("GET", f"/api/crowd/tasks/{task['id']}").json()["completed"] is True


def test_concurrent_different_requests_with_one_key_do_one_write(live_server, api, sql_conn):
    bodies = [("POST", "/api/crowd/tasks", {"title": f"request {n % 4}"}) for n in range(40)]
    answers = concurrently(live_server, "crowd", bodies, 40)
    assert count_tasks(sql_conn, "crowd") == 1
    title = sql_conn.execute("SELECT title FROM tasks WHERE user_id = 'crowd'").fetchone()["title"]
    for (_, _, body), answer in zip(bodies, answers, strict=True):
        assert answer.status_code == (201 if body["title"] == title else 422)
