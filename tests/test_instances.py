"""Two service instances behind HAProxy on one PostgreSQL through PgBouncer: what one writes the other
serves at once, retries and cursors cross instances, a dead instance loses nothing, and a reload, a
re-exec or a drained restart of one fails no request."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import psycopg
import pytest
import requests

from tests.cluster import Balanced
from tests.conftest import SERVICE_ENV
from tests.pgservers import PgBouncer, PgCluster
from tests.support import auth_headers, wait_for_lock_wait
from todo_service.migrate import migrate
from todo_service.scratch import scratch_database

USER = "multi"


@pytest.fixture(scope="module")
def stack():
    """PostgreSQL, PgBouncer (transaction mode), instances a and b (2 workers each), HAProxy."""
    cluster = PgCluster("instances").init().start()
    bouncer = PgBouncer(cluster.port, name="instances-bouncer").start()
    try:
        with scratch_database(bouncer.url(), "todo_instances") as url:
            migrate(url)
            balanced = Balanced(url, {**SERVICE_ENV, "DATABASE_PGBOUNCER": "true"}).start()
            balanced.database_url = url
            try:
                yield balanced
            finally:
                balanced.stop()
    finally:
        bouncer.stop()
        cluster.destroy()


@pytest.fixture
def db(stack):
    """A connection to the stack's database, with its tasks and keys emptied first."""
    with psycopg.connect(stack.database_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("TRUNCATE tasks, idempotency_keys")
        yield conn


@pytest.fixture
def both_up(stack):
    """Both instances answering and UP in HAProxy before and after the test (a test may kill one)."""
    yield stack
    for name, instance in stack.instances.items():
        if instance.proc.poll() is not None:
            stack.restart(name)
        stack.haproxy.set_state(name, "ready")
    stack.haproxy.wait_status({"a": "UP", "b": "UP"})


def fresh(method, url, **kwargs):
    """One request on a new connection, so that it may land on either worker of an instance."""
    headers = {"Connection": "close", **auth_headers(USER), **kwargs.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


def until(condition, timeout=30):
    """Return once `condition()` holds; fail the test if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not so after {timeout} s"
        time.sleep(0.01)


def tasks_url(instance, query=""):
    return instance.url(f"/api/{USER}/tasks{query}")


def test_a_write_through_one_instance_is_read_at_once_through_the_other(stack, db):
    first, second = stack.instances["a"], stack.instances["b"]
    for number in range(4):
        writer, reader = (first, second) if number % 2 == 0 else (second, first)
        for _ in range(4):  # every worker of the reader has rendered (and may keep) the list as it was
            assert fresh("GET", tasks_url(reader)).status_code == 200
        before = fresh("GET", tasks_url(reader))
        created = fresh("POST", tasks_url(writer), json={"title": f"task {number}"})
        assert created.status_code == 201
        task = created.json()
        for _ in range(4):
            listed = fresh("GET", tasks_url(reader))
            assert sorted(t["title"] for t in listed.json()) == [f"task {n}" for n in range(number + 1)]
            assert task in listed.json()
            page = fresh("GET", tasks_url(reader, "?sort=created&order=desc&limit=1"))
            assert page.json() == [task]
            stale = fresh("GET", tasks_url(reader), headers={"If-None-Match": before.headers["ETag"]})
            assert stale.status_code == 200 and task in stale.json()
            current = fresh("GET", tasks_url(reader), headers={"If-None-Match": listed.headers["ETag"]})
            assert current.status_code == 304
            got = fresh("GET", reader.url(f"/api/{USER}/tasks/{task['id']}"))
            assert got.status_code == 200 and got.json() == task


def test_a_retry_landing_on_the_other_instance_replays_the_first_answer(stack, db):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = fresh("POST", tasks_url(stack.instances["a"]), json={"title": "once"}, headers=key)
    again = fresh("POST", tasks_url(stack.instances["b"]), json={"title": "once"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert db.execute("SELECT count(*) FROM tasks WHERE user_id = %s", (USER,)).fetchone()[0] == 1


def test_a_cursor_made_by_one_instance_is_accepted_by_the_other(stack, db):
    for number in range(7):
        assert fresh("POST", tasks_url(stack.haproxy), json={"title": f"task {number}"}).status_code == 201
    whole = fresh("GET", tasks_url(stack.haproxy)).json()
    instances = [stack.instances["a"], stack.instances["b"]]
    url, listed, turn = tasks_url(instances[0], "?sort=created&order=asc&limit=2"), [], 0
    while url is not None:
        answer = fresh("GET", url)
        assert answer.status_code == 200, answer.text
        listed += answer.json()
        turn += 1
        following = answer.links.get("next", {}).get("url")
        url = None if following is None else urljoin(instances[turn % 2].base, following)
    assert turn == 4
    assert listed == sorted(whole, key=lambda task: (task["created_at"], task["id"]))


def keyed_create(session, url, title, retried, attempts=40):
    """POST one task under an Idempotency-Key, retrying with that key on 5xx or a broken connection, as
    a careful client does (and on 409, a key still in progress); the final answer, or None when every
    attempt failed."""
    headers = {"Idempotency-Key": title, **auth_headers(USER)}
    for _ in range(attempts):
        try:
            answer = session.post(url, json={"title": title}, headers=headers, timeout=10)
            if answer.status_code < 500 and answer.status_code != 409:  # 409: the key is in progress
                return answer
            retried.append(f"{title}: {answer.status_code}")
        except requests.RequestException as exc:  # refused, reset, cut off mid-body, timed out
            retried.append(f"{title}: {exc!r}")
        time.sleep(0.1)
    return None


def test_killing_an_instance_loses_no_acknowledged_write_and_makes_no_duplicate(both_up, db):
    stack = both_up
    url, stop, acknowledged, failed, retried = tasks_url(stack.haproxy), threading.Event(), {}, [], []

    def client(number):
        with requests.Session() as session:
            count = 0
            while not stop.is_set():
                title = f"c{number}-{count}"
                answer = keyed_create(session, url, title, retried)
                if answer is None:
                    failed.append(title)
                else:
                    assert answer.status_code == 201, answer.text
                    acknowledged[title] = answer.json()["id"]
                count += 1

    with ThreadPoolExecutor(4) as pool:
        clients = [pool.submit(client, number) for number in range(4)]
        try:
            until(lambda: len(acknowledged) >= 40)
            stack.instances["a"].kill()
            killed = time.monotonic()
            status = stack.haproxy.wait_status({"a": "DOWN"}, timeout=10)
            out_after = time.monotonic() - killed
            after_kill = len(acknowledged)
            until(lambda: len(acknowledged) >= after_kill + 60)
        finally:
            stop.set()
        for future in clients:
            future.result()

    print(f"\nkill: {len(acknowledged)} creates acknowledged, {len(retried)} attempts retried, DOWN after "
          f"{out_after:.2f} s: {retried[:2]}")
    assert status["b"] == "UP" and not failed
    rows = db.execute("SELECT title, id FROM tasks WHERE user_id = %s", (USER,)).fetchall()
    titles = [title for title, _ in rows]
    assert len(titles) == len(set(titles)), "a key made two tasks"
    assert {title: task_id for title, task_id in rows if title in acknowledged} == acknowledged  # each one, as answered


class Load:
    """Clients that list, create and read through HAProxy without retrying; every failure is counted."""

    def __init__(self, url, threads=6):
        self.url, self.threads, self.stop = url, threads, threading.Event()
        self.sent, self.failures, self.lock = 0, [], threading.Lock()

    def client(self, number):
        with requests.Session() as session:
            count = 0
            while not self.stop.is_set():
                count += 1
                try:
                    if count % 3 == 0:
                        answer = session.post(self.url, json={"title": f"l{number}-{count}"}, timeout=30,
                                              headers={"Idempotency-Key": f"l{number}-{count}", **auth_headers(USER)})
                    else:
                        answer = session.get(self.url + "?limit=20", timeout=30, headers=auth_headers(USER))
                    failure = None if answer.status_code < 500 else f"{answer.status_code} {answer.text[:200]}"
                except requests.RequestException as exc:
                    failure = repr(exc)
                with self.lock:
                    self.sent += 1
                    if failure:
                        self.failures.append(failure)

    def __enter__(self):
        self.pool = ThreadPoolExecutor(self.threads)
        self.futures = [self.pool.submit(self.client, number) for number in range(self.threads)]
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for future in self.futures:
            future.result()
        self.pool.shutdown()


class SlowRequest:
    """A PUT straight to `instance` that waits on a row lock the test holds, until `release()`."""

    def __init__(self, stack, instance):
        self.task = fresh("POST", tasks_url(instance), json={"title": "slow"}).json()
        self.locker = psycopg.connect(stack.database_url, prepare_threshold=None)
        self.locker.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (self.task["id"],))
        self.answer = {}
        url = instance.url(f"/api/{USER}/tasks/{self.task['id']}")
        self.thread = threading.Thread(target=lambda: self.answer.setdefault(
            "put", fresh("PUT", url, json={"title": "done", "completed": True})))
        self.thread.start()
        with psycopg.connect(stack.database_url, autocommit=True, prepare_threshold=None,
                             row_factory=psycopg.rows.dict_row) as watcher:
            wait_for_lock_wait(watcher, self.thread)

    def release(self):
        """Let the PUT go on; its answer."""
        self.locker.rollback()
        self.locker.close()
        self.thread.join(30)
        return self.answer["put"]


def test_a_reload_a_reexec_and_a_drained_restart_under_load_fail_no_request(both_up, db):
    stack = both_up
    with Load(tasks_url(stack.haproxy)) as load:
        time.sleep(1)
        # A reload while an old worker still finishes a request: meanwhile new connections keep coming
        # to every socket of the instance, and each must be served by a new worker.
        slow = SlowRequest(stack, stack.instances["a"])
        started = time.monotonic()
        old = stack.instances["a"].reload()  # `make reload`: HUP to the master in the pid file
        time.sleep(2)
        finished = slow.release()
        stack.instances["a"].wait_replaced(old)
        reload_seconds = time.monotonic() - started
        sent_by_reload = load.sent
        time.sleep(1)

        started = time.monotonic()
        stack.instances["a"].reexec()  # USR2, then SIGTERM to the old master
        reexec_seconds = time.monotonic() - started
        time.sleep(1)

        started = time.monotonic()
        stack.haproxy.set_state("b", "drain")  # no new requests; those in flight finish
        until(lambda: stack.haproxy.sessions("b") == 0)
        stack.haproxy.set_state("b", "maint")
        assert stack.instances["b"].stop() == 0  # SIGTERM: it finishes what it has and exits
        stack.restart("b")
        stack.haproxy.set_state("b", "ready")
        stack.haproxy.wait_status({"b": "UP"})
        restart_seconds = time.monotonic() - started
        time.sleep(1)
    print(f"\nrolling restart: {load.sent} requests, {len(load.failures)} failed; reload {reload_seconds:.2f} s "
          f"with a 2 s request in flight ({sent_by_reload} requests by then), re-exec {reexec_seconds:.2f} s, "
          f"drained restart {restart_seconds:.2f} s")
    assert finished.status_code == 200 and finished.json()["completed"] is True
    assert load.sent > 100 and load.failures == []


def test_sigterm_lets_an_in_flight_request_finish_then_exits(both_up, db):
    stack = both_up
    slow = SlowRequest(stack, stack.instances["b"])
    stack.haproxy.set_state("b", "maint")
    exit_code = {}
    stopping = threading.Thread(target=lambda: exit_code.setdefault("b", stack.instances["b"].stop()))
    stopping.start()
    time.sleep(1)  # the master has told its workers to stop; the request still waits for the lock
    assert stopping.is_alive()
    finished = slow.release()
    stopping.join(30)
    assert finished.status_code == 200 and finished.json()["title"] == "done"
    assert exit_code == {"b": 0}
