"""The stack's floor: what Flask alone, and Flask with one psycopg read, cost under the same gunicorn.

`flask_app` answers get.lua's requests from a route of a bare Flask app with a constant task;
`pg_app` reads the task with the service's own statement (sql/queries/, `get_task`) through a
psycopg pool of one connection per gunicorn thread, as the service does, and encodes it with orjson.
Neither has the service's hooks: no authentication, ETag, request id, log line, metrics, limits
or CORS. Served with the service's gunicorn.conf.py by bench/floor.py, so the service's CPU per
request less theirs is what the service's own code costs.
"""

import os
import threading

import orjson
from flask import Flask, Response
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from bench.baseline_app import BODY
from todo_service.config import load_settings
from todo_service.queries import QUERIES

GET_TASK = QUERIES["get_task"]
flask_app = Flask("floor_flask")
pg_app = Flask("floor_pg")
_pool = {"pid": None, "pool": None}
_lock = threading.Lock()


@flask_app.get("/healthz")
@pg_app.get("/healthz")
def healthz():
    """What bench/service.py waits for before a load."""
    return Response(b"ok")


@flask_app.get("/api/<user_id>/tasks/<int:task_id>")
def constant_task(user_id, task_id):
    """The baseline's constant task, through Flask's routing, request context and response."""
    return Response(BODY, mimetype="application/json")


def pool():
    """One pool per gunicorn worker, opened after the fork, one connection per thread."""
    if _pool["pid"] != os.getpid():
        with _lock:
            if _pool["pid"] != os.getpid():
                threads = load_settings().threads
                _pool["pool"] = ConnectionPool(os.environ["DATABASE_URL"], min_size=threads, max_size=threads,
                                               kwargs={"autocommit": True, "row_factory": dict_row}, open=True)
                _pool["pid"] = os.getpid()
    return _pool["pool"]


@pg_app.get("/api/<user_id>/tasks/<int:task_id>")
def read_task(user_id, task_id):
    """The task read by primary key with the service's statement, on a pooled connection."""
    with pool().connection() as conn:
        row = GET_TASK.run(conn, user_id=user_id, id=task_id)
    if row is None:
        return Response(b'{"error_code":"TASK_NOT_FOUND"}', status=404, mimetype="application/json")
    return Response(orjson.dumps(row), mimetype="application/json")
