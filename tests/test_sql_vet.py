"""Vet: every named statement prepares against the migrated schema, and names an index that exists."""

import pytest

from todo_service.queries import QUERIES
from todo_service.sqlplan import prepare_error


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_statement_prepares_against_the_schema(sql_conn, name):
    query = QUERIES[name]
    error = prepare_error(sql_conn, query)
    assert error is None, f"{name} ({query.source}) does not prepare against the migrated schema: {error}"


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_statement_header_names_an_existing_index(sql_conn, name):
    query = QUERIES[name]
    index = query.index.split()[0]
    if index == "none":
        assert "(" in query.index, f"{name} ({query.source}): say why no index is used, e.g. 'none (insert)'"
        return
    found = sql_conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (index,)).fetchone()
    assert found, f"{name} ({query.source}) relies on index {index!r}, which the migrations do not create"
