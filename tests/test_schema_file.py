"""sql/schema.sql is exactly what the migrations produce, so every schema change shows as a diff."""

import difflib

from todo_service.schemadump import SCHEMA_FILE, dump_schema


def test_schema_file_matches_the_migrations(server_url):
    expected = dump_schema(server_url)
    actual = SCHEMA_FILE.read_text()
    diff = "".join(difflib.unified_diff(actual.splitlines(True), expected.splitlines(True),
                                        "sql/schema.sql (committed)", "from sql/migrations"))
    assert actual == expected, f"sql/schema.sql is stale; run `make schema` and commit it:\n{diff}"
