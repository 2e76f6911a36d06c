"""The change feed, GET /api/{user_id}/tasks/changes: snapshot, deltas, tombstones, tokens, 410, long-poll."""

import base64
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import SERVICE_ENV, settings_for
from tests.support import SUITE_METRICS_TOKEN, WITH_AUTH, LiveServer, with_auth
from todo_service import create_app, db, sync

BASE = "/api/alice/tasks"
CHANGES = f"{BASE}/changes"


def feed(client, since=None, user="alice", status=200, **params):
    """One answer of the feed as JSON, checked for its status and shape."""
    query = {**({"since": since} if since else {}), **params}
    response = client.get(f"/api/{user}/tasks/changes", query_string=query)
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    if status == 200:
        assert set(body) == {"changes", "deleted", "next", "has_more"}
        assert response.headers["ETag"] and response.headers["Cache-Control"] == "private, no-cache"
    return body


def apply(local, body):
    """What a client does with an answer."""
    for task in body["changes"]:
        local[task["id"]] = task
    for task_id in body["deleted"]:
        local.pop(task_id, None)


def catch_up(client, local, since=None, user="alice", **params):
    """Call until has_more is false, applying each answer; the last next."""
    while True:
        body = feed(client, since, user, **params)
        apply(local, body)
        since = body["next"]
        if not body["has_more"]:
            return since


def server_list(client, user="alice"):
    return {task["id"]: task for task in client.get(f"/api/{user}/tasks").get_json()}


def create(client, title, user="alice", **extra):
    response = client.post(f"/api/{user}/tasks", json={"title": title, **extra})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_a_snapshot_of_no_tasks_and_then_of_some(client):
    empty = feed(client)
    assert empty["changes"] == [] and empty["deleted"] == [] and empty["has_more"] is False
    made = [create(client, f"task {n}") for n in range(5)]
    body = feed(client)
    assert sorted(body["changes"], key=lambda t: t["id"]) == made
    assert body["deleted"] == [] and body["has_more"] is False
    assert feed(client, user="bob")["changes"] == []  # only the user's own tasks


def test_a_paged_snapshot_with_writes_between_pages_ends_equal_to_the_list(client):
    tasks = [create(client, f"task {n}") for n in range(7)]
    first = feed(client, limit=3)
    assert len(first["changes"]) == 3 and first["has_more"] is True
    local = {}
    apply(local, first)
    # meanwhile: one task already sent is deleted, one not yet sent is deleted, one changes, one is new
    sent, unsent = first["changes"][0]["id"], next(t["id"] for t in tasks if t["id"] not in local)
    assert client.delete(f"{BASE}/{sent}").status_code == 204
    assert client.delete(f"{BASE}/{unsent}").status_code == 204
    assert client.put(f"{BASE}/{first['changes'][1]['id']}", json={"title": "renamed"}).status_code == 200
    create(client, "late")
    catch_up(client, local, first["next"], limit=3)
    assert local == server_list(client)


def test_a_delta_holds_each_changed_task_once_in_its_latest_state_in_commit_order(client):
    a, b, c = (create(client, name) for name in "abc")
    since = feed(client)["next"]
    client.put(f"{BASE}/{a['id']}", json={"title": "a1"})
    client.put(f"{BASE}/{b['id']}", json={"title": "b1"})
    client.put(f"{BASE}/{a['id']}", json={"title": "a2"})
    client.delete(f"{BASE}/{c['id']}")
    gone = create(client, "gone")
    client.delete(f"{BASE}/{gone['id']}")
    body = feed(client, since)
    assert [t["title"] for t in body["changes"]] == ["b1", "a2"]  # b's last change committed before a's
    assert body["changes"][1] == client.get(f"{BASE}/{a['id']}").get_json()
    assert body["deleted"] == [c["id"], gone["id"]]
    assert body["has_more"] is False


def test_a_delta_pages_in_order_and_applying_it_gives_the_list(client):
    local = {}
    since = catch_up(client, local)
    for n in range(12):
        task = create(client, f"t{n}")
        if n % 3 == 0:
            client.delete(f"{BASE}/{task['id']}")
        elif n % 3 == 1:
            client.patch(f"{BASE}/{task['id']}/complete")
    pages = []
    while True:
        body = feed(client, since, limit=2)
        pages.append(body)
        apply(local, body)
        since = body["next"]
        if not body["has_more"]:
            break
    assert len(pages) >= 6 and all(len(p["changes"]) + len(p["deleted"]) <= 2 for p in pages)
    assert local == server_list(client)


WRITES = {  # name -> (method, path suffix, body, headers builder) applied to one task
    "update": ("put", "", {"title": "changed"}, lambda task: {}),
    "update with If-Match": ("put", "", {"title": "changed"}, lambda task: {"If-Match": f'"{task["updated_at"]}"'}),
    "toggle": ("patch", "/complete", None, lambda task: {}),
    "toggle with If-Match": ("patch", "/complete", None, lambda task: {"If-Match": f'"{task["updated_at"]}"'}),
    "keyed toggle": ("patch", "/complete", None, lambda task: {"Idempotency-Key": "toggle-1"}),
    "delete": ("delete", "", None, lambda task: {}),
    "delete with If-Match": ("delete", "", None, lambda task: {"If-Match": f'"{task["updated_at"]}"'}),
}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_every_write_path_feeds_the_change_log(client, name):
    method, suffix, body, headers = WRITES[name]
    task = create(client, "before")
    since = feed(client)["next"]
    kwargs = {"json": body} if body is not None else {}
    response = getattr(client, method)(f"{BASE}/{task['id']}{suffix}", headers=headers(task), **kwargs)
    assert response.status_code in (200, 204)
    delta = feed(client, since)
    if method == "delete":
        assert delta["changes"] == [] and delta["deleted"] == [task["id"]]
    else:
        assert delta["changes"] == [response.get_json()] and delta["deleted"] == []
    assert feed(client, delta["next"])["changes"] == []


@pytest.mark.parametrize("keyed", [False, True])
def test_a_create_feeds_the_change_log(client, keyed):
    since = feed(client)["next"]
    response = client.post(BASE, json={"title": "new"}, headers={"Idempotency-Key": "create-1"} if keyed else {})
    assert response.status_code == 201
    assert feed(client, since)["changes"] == [response.get_json()]


def test_refused_writes_and_replays_are_no_change(client):
    task = create(client, "kept")
    client.patch(f"{BASE}/{task['id']}/complete", headers={"Idempotency-Key": "k"})
    first = feed(client)
    assert client.put(f"{BASE}/{task['id']}", json={"title": "x"}, headers={"If-Match": '"old"'}).status_code == 412
    assert client.delete(f"{BASE}/999999").status_code == 404
    assert client.patch(f"{BASE}/{task['id']}/complete", headers={"Idempotency-Key": "k"}).status_code == 200
    again = feed(client, first["next"])
    assert again == {"changes": [], "deleted": [], "next": first["next"], "has_more": False}


def test_an_unchanged_answer_is_304_with_its_tag(client):
    create(client, "one")
    since = feed(client)["next"]
    quiet = client.get(CHANGES, query_string={"since": since})
    tag = quiet.headers["ETag"]
    again = client.get(CHANGES, query_string={"since": since}, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.headers["ETag"] == tag and again.data == b""
    create(client, "two")
    changed = client.get(CHANGES, query_string={"since": since}, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    assert [t["title"] for t in changed.get_json()["changes"]] == ["two"]


def _flip(token, index):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    char = alphabet[(alphabet.index(token[index]) + 1) % 64]
    return token[:index] + char + token[index + 1:]


def test_a_tampered_foreign_or_malformed_token_is_400(client):
    create(client, "one")
    token = feed(client)["next"]
    bad = [token[:-1], token + "A", token + "=", token[:40], "", "not a token", "A" * len(token)]
    bad += [_flip(token, index) for index in range(len(token) - 1)]  # the last character holds spare bits
    for since in bad:
        response = client.get(CHANGES, query_string={"since": since})
        body = response.get_json()
        assert response.status_code == 400, (since, body)
        assert body["error_code"] == "INVALID_SYNC_TOKEN" and body["field"] == "since", body
    other = client.get("/api/bob/tasks/changes", query_string={"since": token})
    assert other.status_code == 400 and other.get_json()["error_code"] == "INVALID_SYNC_TOKEN"


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "1001"}, {"limit": "-1"}, {"limit": "1.5"},
                                   {"limit": "x"}, {"wait": "26"}, {"wait": "-1"}, {"wait": "1e1"}, {"wait": ""}])
def test_a_bad_limit_or_wait_is_400_naming_it(client, query):
    response = client.get(CHANGES, query_string=query)
    body = response.get_json()
    assert response.status_code == 400 and body["error_code"] == "VALIDATION_ERROR"
    assert body["field"] == next(iter(query))


def expired(client, since, user="alice"):
    response = client.get(f"/api/{user}/tasks/changes", query_string={"since": since})
    body = response.get_json()
    assert response.status_code == 410, body
    assert body["error_code"] == "SYNC_TOKEN_EXPIRED" and "without since" in body["detail"]
    return body


def test_a_token_of_another_database_history_is_410(client, sql_conn):
    create(client, "one")
    token = feed(client)["next"]
    old = sql_conn.execute("SELECT secret FROM signing_keys WHERE purpose = 'sync_epoch'").fetchone()["secret"]
    sql_conn.execute("UPDATE signing_keys SET secret = %s WHERE purpose = 'sync_epoch'", (b"\x07" * 32,))
    try:
        expired(client, token)
        fresh = feed(client)  # a resync works at once
        assert [t["title"] for t in fresh["changes"]] == ["one"]
    finally:
        sql_conn.execute("UPDATE signing_keys SET secret = %s WHERE purpose = 'sync_epoch'", (old,))
    assert feed(client, token)["changes"] == []  # the same history again: the token is good


def test_a_token_of_a_database_with_other_keys_is_410(client, sql_conn):
    """Another deployment's token: its MAC cannot be checked here, its epoch is not this database's."""
    create(client, "one")
    token = feed(client)["next"]
    raw = bytearray(base64.urlsafe_b64decode(token + "=="))
    raw[1:9] = bytes(b ^ 0x5A for b in raw[1:9])  # an epoch differing in every byte, as another history's
    raw[-16:] = bytes(16)
    expired(client, base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("="))


def test_a_token_from_the_future_is_410(client, sql_conn):
    """After a restore from an earlier backup of the same database, the head is behind the token."""
    for n in range(3):
        create(client, f"t{n}")
    token = feed(client)["next"]
    sql_conn.execute("UPDATE task_list_versions SET seq = seq - 2 WHERE user_id = 'alice'")
    expired(client, token)


def test_a_token_whose_deletions_were_purged_is_410_and_newer_ones_work(app, client, sql_conn):
    task, kept = create(client, "doomed"), create(client, "kept")
    before = feed(client)["next"]
    client.delete(f"{BASE}/{task['id']}")
    sql_conn.execute("UPDATE task_tombstones SET deleted_at = now() - interval '31 days'")
    with app.app_context():
        sync.purge_batch()
    assert tombstones(sql_conn) == 0
    expired(client, before)
    after = feed(client)
    assert after["changes"] == [kept]
    assert feed(client, after["next"])["changes"] == []


def old_tombstones(sql_conn, count, recent=True):
    """`count` tombstones of alice's past the retention, and with `recent`, one that is not."""
    sql_conn.execute("""INSERT INTO task_tombstones (user_id, seq, task_id, deleted_at)
                        SELECT 'alice', n, 1000000 + n, now() - interval '40 days' FROM generate_series(1, %s) n""",
                     (count,))
    if recent:
        sql_conn.execute("INSERT INTO task_tombstones (user_id, seq, task_id) VALUES ('alice', 5000, 9999999)")


def tombstones(sql_conn):
    return sql_conn.execute("SELECT count(*) AS n FROM task_tombstones").fetchone()["n"]


def test_tombstones_are_purged_in_bounded_batches(app, client, sql_conn):
    create(client, "keep")
    old_tombstones(sql_conn, 1200)
    with app.app_context():
        assert [sync.purge_batch() for _ in range(4)] == [500, 500, 200, 0]  # the recent one stays
    assert tombstones(sql_conn) == 1
    assert sql_conn.execute("SELECT purged_seq FROM task_list_versions WHERE user_id = 'alice'"
                            ).fetchone()["purged_seq"] == 1200


def test_a_delete_purges_the_backlog_in_the_background_at_most_once_a_minute(app, client, sql_conn):
    task, kept = create(client, "doomed"), create(client, "kept")
    old_tombstones(sql_conn, 1200)
    app.extensions["todo_sync"]["next_purge"] = 0.0  # as if the process had run for a minute
    assert client.delete(f"{BASE}/{task['id']}").status_code == 204
    deadline = time.monotonic() + 20
    while tombstones(sql_conn) > 2:  # the two recent ones stay (the insert's and this delete's)
        assert time.monotonic() < deadline, tombstones(sql_conn)
        time.sleep(0.05)
    old_tombstones(sql_conn, 10, recent=False)
    assert client.delete(f"{BASE}/{kept['id']}").status_code == 204
    time.sleep(1)
    assert tombstones(sql_conn) == 2 + 10 + 1  # not again within the minute


@pytest.fixture
def short_retention(database_url, clean_db):
    app = create_app({"SETTINGS": settings_for(database_url, SYNC_TOMBSTONE_DAYS="0.00002"), "TESTING": True})
    yield app.test_client()  # 1.7 s
    db.close_pool(app)


def test_a_token_older_than_the_retention_is_410(short_retention):
    create(short_retention, "one")
    token = feed(short_retention)["next"]
    time.sleep(2)
    expired(short_retention, token)
    fresh = feed(short_retention)["next"]
    assert feed(short_retention, fresh)["changes"] == []


# Long-poll


def poll_in_thread(client, since, wait, user="alice"):
    """Start a long-poll; returns (thread, result dict that gets body and seconds)."""
    result = {}

    def run():
        started = time.monotonic()
        result["body"] = feed(client, since, user, wait=wait)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def wait_for_waiters(app, count, timeout=10):
    registry = app.extensions["todo_longpoll"]
    deadline = time.monotonic() + timeout
    while registry._count < count:
        assert time.monotonic() < deadline, f"{registry._count} waiters, not {count}"
        time.sleep(0.01)


def test_a_long_poll_times_out_with_nothing_and_the_same_next(client):
    since = feed(client)["next"]
    started = time.monotonic()
    body = feed(client, since, wait=1)
    assert time.monotonic() - started >= 1
    assert body == {"changes": [], "deleted": [], "next": since, "has_more": False}


def test_a_long_poll_answers_at_once_when_there_is_news(client):
    since = feed(client)["next"]
    create(client, "already")
    started = time.monotonic()
    assert [t["title"] for t in feed(client, since, wait=20)["changes"]] == ["already"]
    assert time.monotonic() - started < 10


def test_a_write_in_the_same_worker_wakes_the_waiter(app):
    client = app.test_client()
    since = feed(client)["next"]
    thread, result = poll_in_thread(app.test_client(), since, 20)
    wait_for_waiters(app, 1)
    create(client, "news")
    thread.join(30)
    assert [t["title"] for t in result["body"]["changes"]] == ["news"]
    assert result["seconds"] < 10  # woken, not timed out


def test_a_write_elsewhere_wakes_the_waiter(app, database_url):
    """Another worker or instance: a separate app with its own pool and waiters."""
    other = create_app({"SETTINGS": settings_for(database_url), "TESTING": True})
    try:
        since = feed(app.test_client())["next"]
        thread, result = poll_in_thread(app.test_client(), since, 20)
        wait_for_waiters(app, 1)
        create(other.test_client(), "from elsewhere")
        thread.join(30)
        assert [t["title"] for t in result["body"]["changes"]] == ["from elsewhere"]
        assert result["seconds"] < 10
        # a write for another user wakes no one
        thread, result = poll_in_thread(app.test_client(), result["body"]["next"], 2)
        wait_for_waiters(app, 1)
        create(other.test_client(), "not alice's", user="bob")
        thread.join(30)
        assert result["body"]["changes"] == [] and result["seconds"] >= 2
    finally:
        db.close_pool(other)


@pytest.fixture
def one_waiter(database_url, clean_db):
    app = create_app({"SETTINGS": settings_for(database_url, SYNC_MAX_WAITERS="1"), "TESTING": True})
    yield app
    db.close_pool(app)


def test_past_the_waiter_bound_a_long_poll_answers_at_once(one_waiter):
    client = one_waiter.test_client()
    since = feed(client)["next"]
    thread, result = poll_in_thread(one_waiter.test_client(), since, 20)
    wait_for_waiters(one_waiter, 1)
    started = time.monotonic()
    assert feed(client, since, wait=20) == {"changes": [], "deleted": [], "next": since, "has_more": False}
    assert time.monotonic() - started < 10  # answered as with wait=0, not queued
    create(client, "wakes the first")
    thread.join(30)
    assert [t["title"] for t in result["body"]["changes"]] == ["wakes the first"]


def writer(app, other, number, round_):
    """25 random writes of one client: creates, renames, toggles and deletes of its own tasks."""
    rng = random.Random(number * 100 + round_)
    client = (app if number % 2 else other).test_client()
    mine = []
    for step in range(25):
        action = rng.random()
        if not mine or action < 0.4:
            mine.append(create(client, f"w{number}-{step}")["id"])
        elif action < 0.6:
            client.put(f"{BASE}/{rng.choice(mine)}", json={"title": f"w{number}-{step}-renamed"})
        elif action < 0.8:
            client.patch(f"{BASE}/{rng.choice(mine)}/complete")
        else:
            client.delete(f"{BASE}/{mine.pop(rng.randrange(len(mine)))}")


def race(app, other, round_):
    """8 writers at once while a reader loops on the feed; the reader's list and the table afterwards."""
    reader, local = app.test_client(), {}
    position = {"since": catch_up(reader, local)}
    done = threading.Event()

    def read():
        while not done.is_set():
            position["since"] = catch_up(reader, local, position["since"], limit=7)

    reading = threading.Thread(target=read)
    reading.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda number: writer(app, other, number, round_), range(8)))
    done.set()
    reading.join(60)
    catch_up(reader, local, position["since"])
    return local, server_list(reader)


def test_concurrent_writers_never_make_a_reader_miss_a_change(app, database_url):
    """Writers in two 'workers' commit in any order; a reader looping on the feed ends with the table."""
    other = create_app({"SETTINGS": settings_for(database_url), "TESTING": True})
    try:
        for round_ in range(3):
            local, table = race(app, other, round_)
            assert local == table, f"round {round_}"
    finally:
        db.close_pool(other)


# Through a real gunicorn: the waiter bound per worker, other requests meanwhile, SIGTERM.


@pytest.fixture
def small_server(database_url, clean_db):
    """One gunicorn worker with 2 request threads and room for 3 waiters."""
    server = LiveServer({"DATABASE_URL": database_url, "WEB_CONCURRENCY": "1", "MIGRATE_ON_START": "false",
                         **SERVICE_ENV, "GUNICORN_THREADS": "2", "SYNC_MAX_WAITERS": "3"}).start()
    yield server
    server.stop()


def http_feed(server, since, wait, user="alice"):
    response = requests.get(server.url(f"/api/{user}/tasks/changes"), params={"since": since, "wait": wait},
                            headers=with_auth(f"/api/{user}/tasks", None), timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def held(server, since, count):
    """`count` long-polls of 25 s in threads; (futures, pool)."""
    pool = ThreadPoolExecutor(count)
    futures = [pool.submit(http_feed, server, since, 25) for _ in range(count)]
    return futures, pool


def wait_until_waiting(server, count, timeout=15):
    """Until the worker's waiter gauge (GET /metrics) shows `count`."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {SUITE_METRICS_TOKEN}"} if WITH_AUTH else {}
    while True:
        text = requests.get(server.url("/metrics"), headers=headers, timeout=5).text
        if f"todo_sync_waiters {float(count)}" in text:
            return
        assert time.monotonic() < deadline, [line for line in text.splitlines() if "sync" in line]
        time.sleep(0.05)


def test_waiters_never_starve_other_requests_and_past_the_bound_answer_at_once(small_server):
    since = http_feed(small_server, None, 0)["next"]
    futures, pool = held(small_server, since, 3)
    try:
        wait_until_waiting(small_server, 3)
        started = time.monotonic()
        for _ in range(5):  # the 2 request threads are free: ordinary requests go through meanwhile
            assert requests.get(small_server.url("/api/alice/tasks"), headers=with_auth("/api/alice/tasks", None),
                                timeout=10).status_code == 200
        assert http_feed(small_server, since, 25)["next"] == since  # a fourth waiter: answered at once
        assert time.monotonic() - started < 10
        created = requests.post(small_server.url("/api/alice/tasks"), json={"title": "wakes all"},
                                headers=with_auth("/api/alice/tasks", None), timeout=10).json()
        for future in futures:
            assert future.result(30)["changes"] == [created]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_sigterm_answers_every_waiter_at_once(database_url, clean_db):
    server = LiveServer({"DATABASE_URL": database_url, "WEB_CONCURRENCY": "2", "MIGRATE_ON_START": "false",
                         **SERVICE_ENV}).start()
    try:
        since = http_feed(server, None, 0)["next"]
        futures, pool = held(server, since, 4)
        wait_until_waiting(server, 4)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for future in futures:
            assert future.result(30) == {"changes": [], "deleted": [], "next": since, "has_more": False}
        assert server.proc.wait(30) == 0
        assert time.monotonic() - started < 15  # not held until the 25 s wait or the graceful timeout
        pool.shutdown()
    finally:
        server.stop()
