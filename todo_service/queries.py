"""Strict loader and runner for the named SQL statements under `sql/queries/`.

Each statement starts with a header (see sql/README.md):

    -- name: get_task :one
    -- One line or more on what it does.
    -- params: user_id, id
    -- index: tasks_pkey

Anything the loader cannot vouch for fails at load, naming the file and line.
"""

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from .config import PROJECT_ROOT

QUERY_DIR = PROJECT_ROOT / "sql" / "queries"
KINDS = {":one", ":many", ":exec", ":execrows"}
NAME_LINE = re.compile(r"^-- name:\s*(?P<name>\S+)\s+(?P<kind>:\S+)\s*$")
VALID_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
PARAM = re.compile(r"%\((?P<name>[a-z][a-z0-9_]*)\)s")
# What makes a statement a write: a data-changing command, a row lock, or a call with effects.
WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|CREATE|ALTER|DROP|TRUNCATE|COPY|FOR\s+(NO\s+KEY\s+)?UPDATE|"
                    r"FOR\s+(KEY\s+)?SHARE|nextval|setval|set_config|pg_(try_)?advisory\w*)\b", re.IGNORECASE)


class QueryFileError(ValueError):
    """A statement file breaks the conventions; the message names the file and line."""


@dataclass(frozen=True)
class Query:
    """One reviewed statement: its name, result kind, SQL text and declared parameters."""

    name: str
    kind: str
    sql: str
    params: frozenset[str]
    index: str
    doc: str
    source: str

    @functools.cached_property
    def read_only(self):
        """True when the statement changes nothing, so running it again on another connection is safe.

        Read once per statement, not per request (a regular-expression search over the whole text).
        """
        return WRITES.search(self.sql) is None

    def run(self, conn, **params):
        """Execute on `conn` (a connection or a cursor) with exactly the declared parameters.

        Returns what the kind says: a row, a list of rows, a row count or None.
        """
        return self.result(self.send(conn, **params))

    def send(self, conn, **params):
        """Execute with exactly the declared parameters; returns the cursor. In a pipeline, the result
        is there once the pipeline is synced."""
        if params.keys() != self.params:
            raise TypeError(f"{self.name} takes {sorted(self.params)}, got {sorted(params)}")
        return conn.execute(self.sql, params or None)

    def result(self, cur):
        """What the kind says the executed statement on `cur` returns."""
        if self.kind == ":one":
            return cur.fetchone()
        if self.kind == ":many":
            return cur.fetchall()
        if self.kind == ":execrows":
            return cur.rowcount
        return None


def _header_value(line, key):
    prefix = f"-- {key}:"
    return line[len(prefix):].strip() if line.startswith(prefix) else None


def _parse_block(name, kind, lines, where):
    """Turn the lines after a `-- name:` line into a Query, or explain what is wrong."""
    if not VALID_NAME.match(name):
        raise QueryFileError(f"{where}: name {name!r} must be lower_snake_case")
    if kind not in KINDS:
        raise QueryFileError(f"{where}: {name} has unknown result kind {kind!r}; use one of {sorted(KINDS)}")
    doc, declared, index, body = [], None, None, []
    for line in lines:
        if body or not line.startswith("--"):
            body.append(line)
        elif (value := _header_value(line, "params")) is not None:
            declared = frozenset() if value == "none" else frozenset(p.strip() for p in value.split(","))
        elif (value := _header_value(line, "index")) is not None:
            index = value
        else:
            doc.append(line[2:].strip())
    sql = "\n".join(body).strip()
    if not sql:
        raise QueryFileError(f"{where}: {name} has no SQL")
    if declared is None or index is None or not doc:
        raise QueryFileError(f"{where}: {name} needs a description line, '-- params:' and '-- index:'")
    used = frozenset(m["name"] for m in PARAM.finditer(sql))
    if declared - used:
        raise QueryFileError(f"{where}: {name} declares unused parameters {sorted(declared - used)}")
    if used - declared:
        raise QueryFileError(f"{where}: {name} uses undeclared parameters {sorted(used - declared)}")
    if "%" in PARAM.sub("", sql):
        raise QueryFileError(f"{where}: {name} has a stray '%'; pass patterns and operators as parameters")
    return Query(name, kind, sql, declared, index, " ".join(doc), where)


def parse_file(path):
    """Every statement in one .sql file, in order."""
    queries, current, start = [], None, 0
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate([*lines, "-- name: <end> :end"], start=1):
        match = NAME_LINE.match(line)
        if match is None:
            if current is None and line.strip() and not line.startswith("--"):
                raise QueryFileError(f"{path}:{number}: SQL outside a '-- name:' block")
            continue
        if current is not None:
            queries.append(_parse_block(*current, lines[start:number - 1], f"{path}:{start}"))
        current, start = (match["name"], match["kind"]), number
    return queries


class QuerySet(dict):
    """Named statements, reachable as attributes: `QUERIES.get_task.run(conn, ...)`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no SQL statement named {name!r} under {QUERY_DIR}") from None


def load(directory=QUERY_DIR):
    """Load every *.sql file of `directory`; duplicate names fail."""
    found = QuerySet()
    for path in sorted(Path(directory).glob("*.sql")):
        for query in parse_file(path):
            if query.name in found:
                raise QueryFileError(f"{query.source}: {query.name} is already defined at {found[query.name].source}")
            found[query.name] = query
    return found


QUERIES = load()
