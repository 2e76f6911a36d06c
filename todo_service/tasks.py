"""The task endpoints under /api/{user_id}/tasks."""

from flask import Blueprint, g, request
from marshmallow import ValidationError
from werkzeug.routing import BaseConverter

from . import conditional, dao, idempotency, longpoll, paging, sync
from .errors import validation_error
from .jsonbody import json_object
from .responses import no_content
from .schemas import CHANGES_QUERY, LIST_QUERY, TASK_CREATE, TASK_UPDATE, check_user_id, parse_task_id

bp = Blueprint("tasks", __name__, url_prefix="/api/<user:user_id>/tasks")


class UserIdConverter(BaseConverter):
    """Matches any user id, even empty or holding '/', so validation (not routing) answers 400."""

    regex = "[\\s\\S]*?"
    part_isolating = False


class TaskIdConverter(BaseConverter):
    """Any path segment but `changes` (the change feed's own route), so validation answers 404 for a bad id
    and the feed's path allows only its own methods."""

    regex = "(?!changes(?![^/]))[^/]+"
    part_isolating = True  # one segment, like the default converter


def _load(loader, data):
    """`loader(data)`, or 400 naming the first invalid field."""
    try:
        return loader(data)
    except ValidationError as exc:
        field, messages = next(iter(exc.normalized_messages().items()))
        message = messages[0] if isinstance(messages, list) else str(messages)
        if field == "_schema":
            raise validation_error(message) from None
        if message == "Unknown field.":
            message = "is not a field of a task."
        raise validation_error(f"{field} {message}", field) from None


def _task_id(raw):
    task_id = parse_task_id(raw)
    if task_id is None:
        raise dao.TaskNotFound()
    return task_id


@bp.url_value_preprocessor
def pull_user_id(endpoint, values):
    """Take the path's user id out of the view arguments (authentication compares it first)."""
    g.path_user_id = values.pop("user_id")


@bp.before_request
def validate_user_id():
    """Validate the path's user id once for every endpoint here."""
    try:
        g.user_id = check_user_id(g.path_user_id)
    except ValidationError as exc:
        raise validation_error(exc.messages[0], "user_id") from None


@bp.after_request
def after_write(response):
    """A write that succeeded wakes this worker's long-polls of the user; a delete may purge old tombstones."""
    if request.method != "GET" and 200 <= response.status_code < 300 and "user_id" in g:
        longpoll.changed(g.user_id)
        if request.method == "DELETE":
            sync.purge_after_delete()
    return response


@bp.get("")
def list_tasks():
    """List the user's tasks, whole or one page (limit, cursor); 304 when If-None-Match holds its tag."""
    args = _load(LIST_QUERY.load_args, request.args.to_dict())
    render = paging.renderer(g.user_id, args)  # a bad cursor is 400 here, before any tag is weighed
    return conditional.list_response(g.user_id, args, render)


@bp.get("/changes")
def list_changes():
    """What changed since a sync token: tasks created or changed, ids deleted (long-poll with wait)."""
    return sync.changes_response(g.user_id, _load(CHANGES_QUERY.load, request.args.to_dict()))


@bp.post("")
def create_task():
    """Create a task; with an Idempotency-Key, at most once per key."""
    data = _load(TASK_CREATE.load, json_object())
    if (key := idempotency.key()) is not None:
        return idempotency.create_task(key, g.user_id, data, f"{request.path}/")
    row = dao.create_task(g.user_id, data["title"], data["description"], data["completed"])
    return conditional.task_response(row, 201, {"Location": f"{request.path}/{row['id']}"})


@bp.get("/<task:task_id>")
def get_task(task_id):
    """Get one task (304 when If-None-Match holds its current tag)."""
    task_id, tags = _task_id(task_id), conditional.if_none_match()
    return conditional.get_task_response(dao.get_task(g.user_id, task_id), tags)


@bp.put("/<task:task_id>")
def update_task(task_id):
    """Update any of a task's title, description and completed (with If-Match: only if unchanged)."""
    task_id = _task_id(task_id)
    changes = _load(TASK_UPDATE.load, json_object())
    return conditional.task_response(dao.update_task(g.user_id, task_id, changes, conditional.if_match()))


@bp.patch("/<task:task_id>/complete")
def toggle_task(task_id):
    """Flip a task's completed flag (with If-Match: only if unchanged; with an Idempotency-Key: once)."""
    task_id, etags = _task_id(task_id), conditional.if_match()
    if (key := idempotency.key()) is not None:
        return idempotency.toggle_task(key, g.user_id, task_id, etags)
    return conditional.task_response(dao.toggle_task(g.user_id, task_id, etags))


@bp.delete("/<task:task_id>")
def delete_task(task_id):
    """Delete a task (with If-Match: only if unchanged)."""
    dao.delete_task(g.user_id, _task_id(task_id), conditional.if_match())
    return no_content()
