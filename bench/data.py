"""The benchmark's data set: seeded users, the big user, and the id pool the delete scenario uses up."""

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import psycopg
import requests
from psycopg.rows import dict_row

from todo_service.queries import QUERIES

USER_PREFIX = "bench-user-"
BIG_USER = "bench-big"
NEW_USER_PREFIX = "bench-new-"  # create targets: never listed, so the lists keep their 100 tasks
DELETE_USER = "bench-delete"


PAGE_SIZE = 50  # list-page and list-deep


def connect(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def _analyze(conn):
    # Fresh rows have no statistics until autovacuum gets to them; analyze now so every run plans alike.
    conn.execute("ANALYZE tasks")


@dataclass(frozen=True)
class Seeded:
    """Users PREFIX1..PREFIXn with `tasks_per_user` tasks each (ids contiguous from `first_id`), plus the big user."""

    users: int
    tasks_per_user: int
    first_id: int
    big_tasks: int

    def user_ids(self):
        """Every user id a scenario's requests can name."""
        numbered = [f"{prefix}{n}" for prefix in (USER_PREFIX, NEW_USER_PREFIX) for n in range(1, self.users + 1)]
        return [*numbered, BIG_USER, DELETE_USER]

    def lua_env(self):
        """What bench/common.lua reads."""
        return {
            "BENCH_USER_PREFIX": USER_PREFIX,
            "BENCH_USERS": str(self.users),
            "BENCH_TASKS_PER_USER": str(self.tasks_per_user),
            "BENCH_FIRST_ID": str(self.first_id),
            "BENCH_BIG_USER": BIG_USER,
            "BENCH_NEW_USER_PREFIX": NEW_USER_PREFIX,
        }


def seed(url, users, tasks_per_user, big_tasks):
    """Seed the users one after another, then the big user; check the ids the Lua scripts compute."""
    with connect(url) as conn:
        for number in range(1, users + 1):
            QUERIES.seed_tasks.run(conn, user_id=f"{USER_PREFIX}{number}", count=tasks_per_user)
        QUERIES.seed_tasks.run(conn, user_id=BIG_USER, count=big_tasks)
        _analyze(conn)
        rows = conn.execute(
            "SELECT user_id, min(id) AS low, max(id) AS high, count(*) AS n FROM tasks"
            " WHERE user_id LIKE %s GROUP BY user_id", [USER_PREFIX + "%"],
        ).fetchall()
    ranges = {row["user_id"]: row for row in rows}
    first_id = ranges[f"{USER_PREFIX}1"]["low"]
    for number in range(1, users + 1):
        row = ranges[f"{USER_PREFIX}{number}"]
        low = first_id + (number - 1) * tasks_per_user
        if (row["low"], row["high"], row["n"]) != (low, low + tasks_per_user - 1, tasks_per_user):
            raise RuntimeError(f"seeded ids of {row['user_id']} are not contiguous from {low}: {row}")
    return Seeded(users, tasks_per_user, first_id, big_tasks)


def seed_delete_pool(url, count):
    """`count` fresh tasks for DELETE_USER; returns their (first, last) id, contiguous."""
    with connect(url) as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) AS high FROM tasks").fetchone()["high"]
        QUERIES.seed_tasks.run(conn, user_id=DELETE_USER, count=count)
        _analyze(conn)
        row = conn.execute(
            "SELECT min(id) AS low, max(id) AS high, count(*) AS n FROM tasks WHERE user_id = %s AND id > %s",
            [DELETE_USER, before],
        ).fetchone()
    if row["n"] != count or row["high"] - row["low"] + 1 != count:
        raise RuntimeError(f"the delete pool's ids are not contiguous: {row}")
    return row["low"], row["high"]


def middle_page(base_url, user, tasks, lua_env):
    """Path and query of the page of PAGE_SIZE in the middle of `user`'s list (of `tasks` tasks),
    reached by following rel="next" from the first page, as a client would."""
    url = f"{base_url}/api/{user}/tasks?limit={PAGE_SIZE}"
    headers = {"Authorization": _bearer(lua_env, user)} if "BENCH_TOKENS" in lua_env else {}
    with requests.Session() as session:
        for _ in range(tasks // PAGE_SIZE // 2):
            answer = session.get(url, headers=headers, timeout=30)
            answer.raise_for_status()
            if "next" not in answer.links:
                raise RuntimeError(f"{url} has no Link rel=next before the middle of {tasks} tasks")
            url = urljoin(url, answer.links["next"]["url"])
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _bearer(lua_env, user):
    """The token bench/tokens.py wrote for `user`."""
    with open(lua_env["BENCH_TOKENS"]) as lines:
        return next(f"Bearer {token}" for name, token in (line.split() for line in lines) if name == user)
