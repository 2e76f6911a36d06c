"""`make sql-plan`: EXPLAIN (ANALYZE, BUFFERS) of every API statement on a large data set.

Also the helpers the vet and plan tests share: prepare a statement as written, explain it, walk a plan.
"""

import re
import sys
from datetime import timedelta

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.pq import ExecStatus
from psycopg.rows import dict_row

from .config import load_settings
from .dao import LIST_QUERIES, PAGE_QUERIES, STATUS_FLAG
from .db import resolve_url
from .migrate import migrate
from .queries import QUERIES

BIG_USER = "big-user"
TYPICAL_USER = "user-42"
TOTAL_ROWS = 1_000_000
BIG_USER_ROWS = TOTAL_ROWS // 10
PLAN_DATABASE = "todo_plan"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
TOTAL_KEYS = 200_000
TOTAL_TOMBSTONES = 100_000  # deletions of the big user, for the change feed's plans
SMALL_DELTA = 20  # the feed's plan checks read the changes after the user's latest seq less this
API_PREFIXES = ("get_task", "update_task", "toggle_task", "delete_task", "list_tasks_", "get_list_version",
                "create_task", "get_idempotency_answer", "delete_expired_idempotency_key",
                "purge_idempotency_keys", "list_changes", "purge_tombstones", "get_change_heads")


def api_statements():
    """Names of the statements the plan checks cover: list, get, update, toggle, delete, idempotency keys."""
    return sorted(name for name in QUERIES if name.startswith(API_PREFIXES))


PAGE_LIMIT = 50  # the page size of the plan checks: list-page's and list-deep's in bench/
PAGE_SORT_KEY = {"created": "created_at", "updated": "updated_at", "title": "title"}


def page_cases(conn, user):
    """The first, a middle and the last page of every list of `user`, as
    ((status, sort, order), position, statement name, params, ids the page must hold).

    The boundaries and expected ids come from the unpaged list statement itself: the middle page
    starts after its middle task, the last one after the task PAGE_LIMIT / 2 from its end. A list of
    one page has only the first.
    """
    cases = []
    for key, list_name in sorted(LIST_QUERIES.items()):
        status, sort, _ = key
        params = {"user_id": user, "known_versions": []}  # no version known: the tasks are read
        if status != "all":
            params["completed"] = STATUS_FLAG[status]
        with conn.cursor(row_factory=dict_row) as cur:
            rows = QUERIES[list_name].run(cur, **params)
        ids = [row["id"] for row in rows]
        first = {**params, "row_limit": PAGE_LIMIT + 1}
        cases.append((key, "first", PAGE_QUERIES[(*key, False)], first, ids[:PAGE_LIMIT + 1]))
        if len(rows) <= PAGE_LIMIT:
            continue  # one page only
        for position, index in (("middle", len(rows) // 2), ("last", len(rows) - PAGE_LIMIT // 2 - 1)):
            after = {**first, "after_key": rows[index][PAGE_SORT_KEY[sort]], "after_id": rows[index]["id"]}
            cases.append((key, position, PAGE_QUERIES[(*key, True)], after, ids[index + 1:index + PAGE_LIMIT + 2]))
    return cases


def positional(query):
    """The statement with $1..$n in place of its named parameters."""
    order = []

    def number(match):
        if match[1] not in order:
            order.append(match[1])
        return f"${order.index(match[1]) + 1}"

    return PLACEHOLDER.sub(number, query.sql)


def prepare_error(conn, query):
    """None when PostgreSQL accepts the statement as written, else its error message."""
    result = conn.pgconn.prepare(f"vet_{query.name}".encode(), positional(query).encode())
    if result.status != ExecStatus.COMMAND_OK:
        return result.get_error_message().strip()
    conn.pgconn.exec_(f"DEALLOCATE vet_{query.name}".encode())
    return None


def plan_nodes(plan):
    """Every node of a JSON plan, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def seed_large_dataset(url):
    """Fill an empty migrated database with the plan data set and analyse it."""
    with psycopg.connect(url, autocommit=True) as conn:
        QUERIES.seed_plan_dataset.run(conn, big_user=BIG_USER, total=TOTAL_ROWS)
        conn.execute("VACUUM ANALYZE tasks")
    seed_idempotency_keys(url)
    seed_tombstones(url)


def seed_tombstones(url):
    """The big user's tombstones, above every seq its tasks have, unless there are some already."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT NOT EXISTS (SELECT FROM task_tombstones)").fetchone()[0]:
            after = conn.execute("SELECT coalesce(max(change_seq), 0) FROM tasks").fetchone()[0]
            QUERIES.seed_plan_tombstones.run(conn, big_user=BIG_USER, total=TOTAL_TOMBSTONES, after_seq=after)
            conn.execute("VACUUM ANALYZE task_tombstones")


def seed_idempotency_keys(url):
    """The plan data set's idempotency keys, unless it has them already (it predates migration 0006)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT NOT EXISTS (SELECT FROM idempotency_keys)").fetchone()[0]:
            QUERIES.seed_plan_idempotency_keys.run(conn, total=TOTAL_KEYS)
            conn.execute("VACUUM ANALYZE idempotency_keys")


def sample_params(conn, query, user):
    """Realistic values for `query`: `user` and one of its tasks from the middle."""
    task_id = conn.execute("SELECT id FROM tasks WHERE user_id = %s ORDER BY id OFFSET 50 LIMIT 1",
                           (user,)).fetchone()[0]
    key = conn.execute("SELECT idempotency_key FROM idempotency_keys WHERE user_id = %s LIMIT 1",
                       (user,)).fetchone()
    latest = conn.execute("SELECT greatest((SELECT max(change_seq) FROM tasks WHERE user_id = %(u)s), "
                          "(SELECT max(seq) FROM task_tombstones WHERE user_id = %(u)s))", {"u": user}).fetchone()[0]
    after = max((latest or 0) - SMALL_DELTA, 0)
    values = {"user_id": user, "id": task_id, "completed": False, "title": "new title",
              "description": None, "set_description": False, "etags": ["2026-01-01T00:00:00.000000Z"],
              "idempotency_key": key[0] if key else "new-key", "request_hash": b"\x00" * 32,
              "ttl": timedelta(hours=24), "location_prefix": f"/api/{user}/tasks/", "batch": 500,
              "max_tasks": 10_000, "after_seq": after, "after_id": 0, "gone_seq": after, "gone_id": 0,
              "row_limit": 101, "retention": timedelta(days=30), "user_ids": [user], "seen": [0], "known_versions": []}
    return {name: values[name] for name in query.params}


def explain(conn, query, params=None, options="FORMAT JSON"):
    """EXPLAIN output: the custom plan for `params`, or the generic plan when params is None.

    Runs inside a transaction that is rolled back, so ANALYZE of a write changes nothing.
    """
    with conn.transaction(force_rollback=True):
        if params is None:
            return conn.execute(f"EXPLAIN (GENERIC_PLAN, {options}) {positional(query)}").fetchall()
        return conn.execute(f"EXPLAIN ({options}) {query.sql}", params).fetchall()


def ensure_plan_database(server_url):
    """URL of the `todo_plan` database on `server_url`, created and seeded on first use."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PLAN_DATABASE,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PLAN_DATABASE)))
    url = make_conninfo(server_url, dbname=PLAN_DATABASE)
    migrate(url)
    if not exists:
        print(f"seeding {TOTAL_ROWS:,} rows into {PLAN_DATABASE} (once; about a minute)", flush=True)
        seed_large_dataset(url)
    seed_idempotency_keys(url)
    seed_tombstones(url)
    return url


def main():
    url = ensure_plan_database(resolve_url(load_settings()))
    with psycopg.connect(url, autocommit=True) as conn:
        for name in api_statements():
            query = QUERIES[name]
            for user in (TYPICAL_USER, BIG_USER):
                print(f"\n== {name} ({query.source}) for {user}; header index: {query.index}")
                rows = explain(conn, query, sample_params(conn, query, user), "ANALYZE, BUFFERS")
                print("\n".join(row[0] for row in rows))
        for _, position, name, params, _ in page_cases(conn, BIG_USER):
            query = QUERIES[name]
            print(f"\n== {name} ({query.source}), {position} page for {BIG_USER}; header index: {query.index}")
            print("\n".join(row[0] for row in explain(conn, query, params, "ANALYZE, BUFFERS")))


if __name__ == "__main__":
    sys.exit(main())
