"""Kept list renderings: never stale, whoever changed the tasks and however; bounded in size."""

import shutil
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from tests.conftest import settings_for
from tests.support import auth_headers, count_task_reads, path_user
from tests.test_tasks_api import create
from todo_service import create_app, db
from todo_service.listcache import ENTRY_OVERHEAD, ListCache
from todo_service.migrate import MIGRATION_DIR, migrate
from todo_service.queries import QUERIES


def titles(client, user="keeper", query=""):
    response = client.get(f"/api/{user}/tasks{query}")
    assert response.status_code == 200
    return sorted(t["title"] for t in response.get_json())


def listed(client, user="keeper"):
    response = client.get(f"/api/{user}/tasks")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def reads(monkeypatch):
    """Counts the lists whose tasks were read from the database (the real reads, only counted)."""
    return count_task_reads(monkeypatch, "list_tasks")


def test_an_unchanged_list_is_served_without_reading_the_tasks_again(client, reads):
    create(client, user="keeper", title="one")
    assert titles(client) == ["one"] and len(reads) == 1
    assert titles(client) == ["one"] and len(reads) == 1
    assert titles(client, query="?sort=title") == ["one"] and len(reads) == 2  # another list: read once
    assert titles(client, query="?sort=title") == ["one"] and len(reads) == 2
    create(client, user="keeper", title="two")
    assert titles(client) == ["one", "two"] and len(reads) == 3
    assert titles(client, query="?sort=title") == ["one", "two"] and len(reads) == 4
    assert titles(client) == ["one", "two"] and len(reads) == 4


def test_every_change_through_the_api_shows_in_the_next_list(client):
    first = create(client, user="keeper", title="one")
    assert titles(client) == titles(client) == ["one"]  # the second read is served from the cache
    second = create(client, user="keeper", title="two")
    assert titles(client) == ["one", "two"]
    client.put(f"/api/keeper/tasks/{first['id']}", json={"title": "uno", "description": "d"})
    assert titles(client) == ["two", "uno"]
    assert [t["description"] for t in listed(client) if t["title"] == "uno"] == ["d"]
    client.patch(f"/api/keeper/tasks/{second['id']}/complete")
    assert titles(client, query="?status=completed") == ["two"]
    assert titles(client, query="?status=pending") == ["uno"]
    client.patch(f"/api/keeper/tasks/{second['id']}/complete")
    assert titles(client, query="?status=completed") == []
    client.delete(f"/api/keeper/tasks/{first['id']}")
    assert titles(client) == ["two"]
    assert titles(client, query="?status=pending") == ["two"]


def write(conn, statement, user="keeper", **params):
    """Run one of the service's own write statements on `conn`, as another worker or instance would."""
    defaults = {"title": None, "description": None, "set_description": False, "completed": None}
    wanted = QUERIES[statement].params
    values = {"user_id": user, "max_tasks": 10_000, **defaults, **params}
    values = {k: v for k, v in values.items() if k in wanted}
    if statement == "create_task":
        values["completed"] = bool(values["completed"])
    return QUERIES[statement].run(conn, **values)


def test_changes_made_by_another_process_show_too(client, sql_conn):
    task = create(client, user="keeper", title="one")
    assert titles(client) == titles(client) == ["one"]
    other = write(sql_conn, "create_task", title="from elsewhere")
    assert titles(client) == ["from elsewhere", "one"]
    write(sql_conn, "update_task", id=task["id"], title="renamed")
    assert titles(client) == ["from elsewhere", "renamed"]
    write(sql_conn, "delete_task", id=other["id"])
    assert titles(client) == ["renamed"]
    sql_conn.execute("TRUNCATE tasks, task_list_versions, task_tombstones")  # as clean_db does
    assert titles(client) == []
    create(client, user="keeper", title="after truncate")
    assert titles(client) == titles(client) == ["after truncate"]


def test_a_change_in_an_open_transaction_shows_only_once_committed(client, database_url):
    create(client, user="keeper", title="one")
    assert titles(client) == ["one"]
    with psycopg.connect(database_url) as conn:
        write(conn, "create_task", title="pending commit")
        assert titles(client) == ["one"]
    assert titles(client) == ["one", "pending commit"]


def test_lists_stay_correct_without_a_known_version(client, sql_conn):
    create(client, user="keeper", title="one")
    assert titles(client) == ["one"]
    sql_conn.execute("DELETE FROM task_list_versions")
    sql_conn.execute("UPDATE tasks SET title = 'unversioned change' WHERE user_id = 'keeper'")
    sql_conn.execute("DELETE FROM task_list_versions")
    assert titles(client) == titles(client) == ["unversioned change"]


def test_users_never_see_each_others_kept_lists(client):
    create(client, user="keeper", title="mine")
    create(client, user="other", title="theirs")
    for _ in range(2):
        assert titles(client, user="keeper") == ["mine"]
        assert titles(client, user="other") == ["theirs"]
        assert titles(client, user="nobody") == []


def test_a_change_through_one_instance_shows_in_the_kept_lists_of_another(database_url, clean_db):
    instances = [create_app({"SETTINGS": settings_for(database_url), "TESTING": True}) for _ in range(2)]
    try:
        first, second = (app.test_client() for app in instances)
        task = create(first, user="keeper", title="one")
        assert titles(first) == titles(second) == ["one"]
        create(second, user="keeper", title="two")
        assert titles(first) == titles(second) == ["one", "two"]
        first.patch(f"/api/keeper/tasks/{task['id']}/complete")
        assert titles(second, query="?status=completed") == ["one"]
        assert titles(first, query="?status=completed") == ["one"]
        second.delete(f"/api/keeper/tasks/{task['id']}")
        assert titles(first) == titles(second) == ["two"]
    finally:
        for app in instances:
            db.close_pool(app)


def test_lists_are_fresh_on_every_worker_of_a_real_server(api, live_server):
    """Two gunicorn workers, each with its own cache; every new connection may land on either."""
    url = live_server.url("/api/crosser/tasks")
    for number in range(6):
        created = api("POST", "/api/crosser/tasks", json={"title": f"task {number}"})
        assert created.status_code == 201
        for _ in range(4):  # a new connection each time: spread over both workers
            answer = requests.get(url, timeout=10, headers={"Connection": "close", **auth_headers(path_user(url))})
            assert answer.status_code == 200
            assert sorted(t["title"] for t in answer.json()) == [f"task {n}" for n in range(number + 1)]


def test_concurrent_writers_and_readers_end_with_the_database_state(api, live_server, sql_conn):
    def write(number):
        task = api("POST", "/api/busy/tasks", json={"title": f"t{number}"}).json()
        api("PATCH", f"/api/busy/tasks/{task['id']}/complete")
        if number % 3 == 0:
            api("DELETE", f"/api/busy/tasks/{task['id']}")

    def read(_):
        return requests.get(live_server.url("/api/busy/tasks"), headers=auth_headers("busy"), timeout=10).status_code

    with ThreadPoolExecutor(16) as pool:
        writes = [pool.submit(write, n) for n in range(30)]
        reads = list(pool.map(read, range(60)))
        for future in writes:
            future.result()
    assert set(reads) == {200}
    stored = sql_conn.execute("SELECT title, completed FROM tasks WHERE user_id = 'busy'").fetchall()
    expected = sorted((row["title"], row["completed"]) for row in stored)
    assert len(expected) == 20 and all(completed for _, completed in expected)
    for _ in range(4):
        answer = requests.get(live_server.url("/api/busy/tasks"), timeout=10,
                              headers={"Connection": "close", **auth_headers("busy")})
        assert sorted((t["title"], t["completed"]) for t in answer.json()) == expected


def test_turned_off_the_lists_are_read_every_time(database_url, clean_db, sql_conn):
    app = create_app({"SETTINGS": settings_for(database_url, LIST_CACHE_MB="0"), "TESTING": True})
    try:
        assert app.extensions["todo_lists"] is None
        client = app.test_client()
        create(client, user="keeper", title="one")
        sql_conn.execute("DELETE FROM task_list_versions")
        assert titles(client) == ["one"]
    finally:
        db.close_pool(app)


def test_the_cache_keeps_the_most_recently_used_within_its_size():
    body = b"x" * 1000
    cache = ListCache(max_bytes=3 * (len(body) + ENTRY_OVERHEAD))
    for user in "abc":
        cache.put((user,), 1, body)
    assert cache.get(("a",)) == (1, body, None)  # a is now the most recently used
    cache.put(("d",), 1, body)
    assert cache.get(("b",)) is None
    assert all(cache.get((user,)) == (1, body, None) for user in "acd")
    cache.put(("a",), 2, body)  # a newer version replaces the entry
    assert cache.get(("a",)) == (2, body, None)
    cache.put(("huge",), 1, b"x" * cache.max_bytes)
    assert cache.get(("huge",)) is None and cache.get(("a",)) == (2, body, None)


def test_a_kept_page_keeps_its_link_and_counts_it():
    cache = ListCache(max_bytes=2 * (1000 + ENTRY_OVERHEAD))
    cache.put(("page",), 1, b"[]", "<next>; rel=\"next\"")
    assert cache.get(("page",)) == (1, b"[]", "<next>; rel=\"next\"")
    cache.put(("big",), 1, b"x" * 1000, "c" * (1001 + ENTRY_OVERHEAD))  # together one byte too big
    assert cache.get(("big",)) is None and cache.get(("page",)) == (1, b"[]", "<next>; rel=\"next\"")


def test_migration_gives_existing_users_a_version(empty_database, tmp_path):
    for path in MIGRATION_DIR.glob("*.sql"):
        if path.name < "0004_task_list_versions.sql":
            shutil.copy(path, tmp_path / path.name)
    migrate(empty_database, tmp_path)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("INSERT INTO tasks (user_id, title) VALUES ('early', 'a'), ('early', 'b'), ('bird', 'c')")
        migrate(empty_database)
        rows = conn.execute("SELECT user_id FROM task_list_versions ORDER BY user_id").fetchall()
    assert rows == [("bird",), ("early",)]


WRITES = {  # every write statement of the service -> its parameters besides the user's
    "create_task": {"title": "x"},
    "update_task": {"title": "y"},
    "toggle_task": {},
    "delete_task": {},
    "update_task_if_match": {"title": "y", "etags": ["*"]},
    "toggle_task_if_match": {"etags": ["*"]},
    "delete_task_if_match": {"etags": ["*"]},
    "create_task_once": {"idempotency_key": "k1", "request_hash": b"h", "title": "x", "description": None,
                         "completed": False, "location_prefix": "/x/", "ttl": "1 hour"},
    "toggle_task_once": {"idempotency_key": "k2", "request_hash": b"h", "etags": None, "ttl": "1 hour"},
    "seed_tasks": {"count": 3},
}


def test_every_write_statement_is_covered():
    writes = {name for name, query in QUERIES.items()
              if name not in ("seed_plan_dataset", "seed_plan_idempotency_keys", "seed_plan_tombstones")
              and any(word in query.sql for word in ("INSERT INTO tasks", "UPDATE tasks", "DELETE FROM tasks"))}
    assert writes == set(WRITES)


@pytest.mark.parametrize("statement", sorted(WRITES))
def test_each_write_statement_moves_the_version_and_the_seq(client, sql_conn, statement):
    task = create(client, user="keeper", title="one")
    params = dict(WRITES[statement])
    if "etags" in params and params["etags"] == ["*"]:
        params["etags"] = [task["updated_at"]]
    if "id" in QUERIES[statement].params:
        params["id"] = task["id"]
    head = "SELECT version, seq, task_count FROM task_list_versions WHERE user_id = 'keeper'"
    before = sql_conn.execute(head).fetchone()
    write(sql_conn, statement, **params)
    after = sql_conn.execute(head).fetchone()
    assert after["version"] != before["version"] and after["seq"] == before["seq"] + 1
    count = sql_conn.execute("SELECT count(*) AS n FROM tasks WHERE user_id = 'keeper'").fetchone()["n"]
    assert after["task_count"] == count


@pytest.mark.parametrize("statement", ["update_task", "toggle_task", "delete_task"])
def test_a_write_that_finds_no_task_leaves_the_head_row_alone(client, sql_conn, statement):
    create(client, user="keeper", title="one")
    head = "SELECT version, seq, task_count FROM task_list_versions WHERE user_id = 'keeper'"
    before = sql_conn.execute(head).fetchone()
    assert write(sql_conn, statement, id=10**12) in (None, 0)
    assert sql_conn.execute(head).fetchone() == before
