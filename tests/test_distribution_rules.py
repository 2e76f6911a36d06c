"""The schema and every statement stay ready for a distributed PostgreSQL sharded by user_id (Citus).

- Every primary key, unique constraint and foreign key of a per-user table includes user_id, so each
  can be enforced within one shard.
- No table has a trigger (Citus needs unsafe-trigger mode for them, YugabyteDB lacks transition tables):
  what a write does is all in its statement.
- Every statement in sql/queries/ reads and writes the rows of one user only: each scan of a per-user
  table in its generic plan is bounded by `user_id = ` the statement's user_id parameter, and a
  statement that inserts takes user_id as a parameter. So each is router-executable on one shard.
  The exceptions are named below with their reason; docs/scaling.md says how each runs under Citus.
"""

import re

import pytest

from todo_service.queries import QUERIES
from todo_service.sqlplan import explain, plan_nodes

PER_USER_TABLES = {"tasks", "task_list_versions", "task_tombstones", "idempotency_keys"}
# Tables that are not per user: they stay on the coordinator, or become reference tables.
NODE_TABLES = {"schema_migrations", "signing_keys"}
NOT_PER_USER = {  # statement -> why it may touch more than one user's rows (or none)
    "purge_idempotency_keys": "upkeep: expired keys of any user, in batches",
    "purge_tombstones": "upkeep: tombstones past the retention of any user, in batches",
    "get_change_heads": "the long-poll's poller: the head seq of every user waiting in one worker",
}
NOT_PER_USER_FILES = ("service.sql", "dev.sql")  # the service's own tables and developer tools only


def _user_statements():
    return sorted(name for name, query in QUERIES.items()
                  if name not in NOT_PER_USER and not query.source.split(":")[0].endswith(NOT_PER_USER_FILES))


def test_every_table_is_either_per_user_or_named_as_a_node_table(sql_conn):
    tables = {row["relname"] for row in sql_conn.execute(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")}
    assert tables == PER_USER_TABLES | NODE_TABLES


def test_every_key_and_foreign_key_of_a_per_user_table_includes_user_id(sql_conn):
    rows = sql_conn.execute("""
        SELECT c.conname, t.relname,
               'user_id' = ANY(ARRAY(SELECT a.attname FROM pg_attribute a
                                     WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey))) AS has_user
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE c.contype IN ('p', 'u', 'f', 'x') AND t.relname = ANY(%s)""", (sorted(PER_USER_TABLES),)).fetchall()
    assert {row["relname"] for row in rows if row["conname"].endswith("_pkey")} == PER_USER_TABLES
    assert [row["conname"] for row in rows if not row["has_user"]] == []
    unique_indexes = sql_conn.execute("""
        SELECT i.indexrelid::regclass::text AS name
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        WHERE i.indisunique AND t.relname = ANY(%s)
          AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = 'user_id'
                          AND a.attnum = ANY(i.indkey))""", (sorted(PER_USER_TABLES),)).fetchall()
    assert unique_indexes == []


def test_no_table_has_a_trigger(sql_conn):
    triggers = sql_conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").fetchall()
    assert triggers == []


@pytest.mark.parametrize("name", _user_statements())
def test_each_statement_touches_one_users_rows_only(sql_conn, name):
    query = QUERIES[name]
    assert "user_id" in query.params, f"{name} ({query.source}) takes no user_id"
    order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", query.sql)))  # positional() numbers them so
    number = order.index("user_id") + 1
    bound = re.compile(rf"user_id = \${number}(?!\d)")
    plan = explain(sql_conn, query)[0]["QUERY PLAN"][0]["Plan"]
    for node in plan_nodes(plan):
        if node.get("Relation Name") in PER_USER_TABLES and "Scan" in node["Node Type"]:
            conditions = " ".join(str(node.get(key, "")) for key in ("Index Cond", "Filter", "Recheck Cond"))
            assert bound.search(conditions), (f"{name} ({query.source}): a scan of {node['Relation Name']} is not "
                                              f"bounded by user_id = ${number}: {node['Node Type']} {conditions!r}")


def test_the_exceptions_are_real_statements():
    assert set(NOT_PER_USER) <= set(QUERIES)
