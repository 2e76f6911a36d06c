"""Idempotency-Key on POST /tasks and PATCH /tasks/{id}/complete: a retried write is answered again, not done again.

The first request with a key does its write and stores its answer (status, body, Location, ETag)
with the key in the same SQL statement (sql/queries/idempotency.sql), so the answer exists exactly
when the write committed. A retry of the same request (method, endpoint, task id and validated
body, as a SHA-256) gets those bytes again with `Idempotent-Replayed: true`, whatever happened to
the task since; the same key on another request is refused (422). A request racing another with
the same key waits for it on the key's primary key: its own write fails there and rolls back, and
it answers with the stored answer instead. Only successful writes are stored: a request refused
by validation, 404 or 412 leaves its key free. Keys are per user; each lives IDEMPOTENCY_TTL_HOURS.
Expired keys are deleted by the service itself, a small batch at a time (see `_purge`).
"""

import hashlib
import logging
import re
import time
from datetime import timedelta

import orjson
import psycopg
from flask import Response, current_app, request

from . import metrics
from .dao import PreconditionFailed, QuotaExceeded, TaskNotFound, max_tasks
from .db import DatabaseUnavailable, run
from .errors import ApiError, validation_error

log = logging.getLogger(__name__)
HEADER = "Idempotency-Key"
VALID_KEY = re.compile(r"[!-~]{1,255}")  # printable ASCII, no space
KEY_CONSTRAINT = "idempotency_keys_pkey"
ATTEMPTS = 3
PURGE_BATCH = 500
PURGE_EVERY_SECONDS = 60.0


def key():
    """The request's Idempotency-Key, None without one; 400 naming the header when it is not valid."""
    value = request.headers.get(HEADER)
    if value is not None and not VALID_KEY.fullmatch(value):
        raise validation_error(f"{HEADER} must be 1 to 255 printable ASCII characters without spaces.", HEADER)
    return value


def _request_hash(*parts):
    """What makes two requests with one key the same request."""
    return hashlib.sha256(orjson.dumps([request.method, request.endpoint, *parts],
                                       option=orjson.OPT_SORT_KEYS)).digest()


def create_task(idempotency_key, user_id, data, location_prefix):
    """POST /tasks with a key: 201 with the task, done at most once per key."""
    return _once("create_task_once", user_id=user_id, idempotency_key=idempotency_key,
                 request_hash=_request_hash(data), title=data["title"], description=data["description"],
                 completed=data["completed"], location_prefix=location_prefix, max_tasks=max_tasks())


def toggle_task(idempotency_key, user_id, task_id, etags):
    """PATCH /tasks/{id}/complete with a key: 200 with the task, flipped at most once per key."""
    return _once("toggle_task_once", user_id=user_id, idempotency_key=idempotency_key,
                 request_hash=_request_hash(task_id), id=task_id, etags=etags)


def _answer(row, replayed):
    response = Response(row["body"], status=row["status"], mimetype="application/json")
    response.set_etag(row["etag"])
    if row["location"] is not None:
        response.headers["Location"] = row["location"]
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _outcome(row, request_hash):
    """get_idempotency_answer's row judged as the keyed statements judge their `previous` row."""
    if row is None:
        return None  # gone already (expired and deleted): try again
    if not row["live"]:
        return "expired"
    return "replayed" if bytes(row["request_hash"]) == request_hash else "reused"


def _once(statement, **params):
    """Run a keyed write statement and answer with what it says happened."""
    state = current_app.extensions["todo_idempotency"]
    params["ttl"] = state["ttl"]
    user_id, idempotency_key = params["user_id"], params["idempotency_key"]
    for _ in range(ATTEMPTS):
        try:
            row = run(statement, **params)
            outcome = row["outcome"] if row is not None else "not_found"
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != KEY_CONSTRAINT:
                raise
            # Another request with this key committed first; this one's write rolled back.
            row = run("get_idempotency_answer", user_id=user_id, idempotency_key=idempotency_key)
            outcome = _outcome(row, params["request_hash"])
        if outcome == "written":
            _purge(state)
            return _answer(row, replayed=False)
        if outcome == "replayed":
            metrics.count(metrics.IDEMPOTENT_REPLAYS)
            return _answer(row, replayed=True)
        if outcome == "reused":
            raise ApiError(422, "IDEMPOTENCY_KEY_REUSED", f"This {HEADER} was used for another request; "
                           "use a new key for a new request.", HEADER)
        if outcome == "not_found":
            raise TaskNotFound()
        if outcome == "precondition_failed":
            raise PreconditionFailed()
        if outcome == "over_quota":
            raise QuotaExceeded(params["max_tasks"])
        if outcome == "expired":
            run("delete_expired_idempotency_key", user_id=user_id, idempotency_key=idempotency_key)
    raise ApiError(409, "IDEMPOTENCY_KEY_IN_PROGRESS", f"Another request with this {HEADER} is in progress; "
                   "retry in a moment.", HEADER, {"Retry-After": "1"})


def _purge(state):
    """Delete a batch of expired keys, at most once a minute per process, or at once while the last batch was full.

    Runs after a keyed write committed: a failure here is logged and does not change the answer.
    """
    now = time.monotonic()
    if now < state["next_purge"]:
        return
    state["next_purge"] = now + PURGE_EVERY_SECONDS
    try:
        if run("purge_idempotency_keys", batch=PURGE_BATCH) >= PURGE_BATCH:
            state["next_purge"] = 0.0
    except (DatabaseUnavailable, psycopg.Error) as exc:
        log.warning("purging expired idempotency keys failed: %s", exc)


def init_app(app):
    """Key lifetime from IDEMPOTENCY_TTL_HOURS; the first keyed write of each process purges."""
    hours = app.config["SETTINGS"].idempotency_ttl_hours
    app.extensions["todo_idempotency"] = {"ttl": timedelta(hours=hours), "next_purge": 0.0}
