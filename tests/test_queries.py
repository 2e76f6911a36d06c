"""The strict SQL loader: every convention breach fails at load, naming file and statement."""

import pytest

from todo_service.queries import QUERIES, QueryFileError, load

GOOD = """-- name: get_thing :one
-- Fetch a thing.
-- params: user_id, id
-- index: things_pkey
SELECT id FROM things WHERE id = %(id)s AND user_id = %(user_id)s;
"""


def write(tmp_path, text, name="things.sql"):
    (tmp_path / name).write_text(text)
    return tmp_path


def test_good_file_loads_with_its_header(tmp_path):
    query = load(write(tmp_path, GOOD)).get_thing
    assert query.kind == ":one" and query.params == {"user_id", "id"}
    assert query.index == "things_pkey" and query.doc == "Fetch a thing."
    assert query.source.endswith("things.sql:1")


@pytest.mark.parametrize("text,message", [
    (GOOD + "\n" + GOOD, "already defined"),
    (GOOD.replace(":one", ":single"), "unknown result kind ':single'"),
    (GOOD.replace("-- params: user_id, id", "-- params: user_id"), r"undeclared parameters \['id'\]"),
    (GOOD.replace("-- params: user_id, id", "-- params: user_id, id, extra"), r"unused parameters \['extra'\]"),
    (GOOD.replace("WHERE id", "WHERE title LIKE 'a%' AND id"), "stray '%'"),
    (GOOD.replace("%(id)s", "%(id)s + %s"), "stray '%'"),
    (GOOD.replace("-- index: things_pkey\n", ""), "'-- index:'"),
    (GOOD.replace("-- params: user_id, id\n", ""), "'-- params:'"),
    (GOOD.replace("-- Fetch a thing.\n", ""), "description line"),
    (GOOD.replace("get_thing", "GetThing"), "lower_snake_case"),
    ("SELECT 1;\n" + GOOD, "SQL outside a '-- name:' block"),
    (GOOD.split("SELECT")[0], "has no SQL"),
])
def test_breaches_fail_at_load(tmp_path, text, message):
    with pytest.raises(QueryFileError, match=message):
        load(write(tmp_path, text))


def test_duplicate_names_across_files_fail(tmp_path):
    write(tmp_path, GOOD, "a.sql")
    write(tmp_path, GOOD, "b.sql")
    with pytest.raises(QueryFileError, match=r"b\.sql:1: get_thing is already defined at .*a\.sql:1"):
        load(tmp_path)


def test_run_insists_on_the_declared_parameters(sql_conn):
    with pytest.raises(TypeError, match="get_task takes"):
        QUERIES.get_task.run(sql_conn, id=1)
    with pytest.raises(TypeError, match="get_task takes"):
        QUERIES.get_task.run(sql_conn, id=1, user_id="a", extra=2)


def test_every_project_statement_has_a_header():
    assert QUERIES, "no statements loaded"
    for query in QUERIES.values():
        assert query.doc and query.index, query.name
