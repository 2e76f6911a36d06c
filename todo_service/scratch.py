"""Throwaway databases for the tools and the tests: created on a server, dropped when done."""

import uuid
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo


def create_database(server_url, prefix):
    """Create an empty database with a unique name on `server_url`; return (name, its URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, make_conninfo(server_url, dbname=name)


def drop_database(server_url, name):
    """Drop it, ending any session still in it (a killed worker may leave one behind)."""
    with psycopg.connect(server_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_database(server_url, prefix):
    """The URL of a new empty database, dropped when the block ends."""
    name, url = create_database(server_url, prefix)
    try:
        yield url
    finally:
        drop_database(server_url, name)
