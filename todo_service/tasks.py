"""The task endpoints under /api/{user_id}/tasks."""

from flask import Blueprint, g, request
from marshmallow import ValidationError
from werkzeug.routing import BaseConverter

from . import dao, listcache, paging
from .errors import validation_error
from .jsonbody import json_object
from .responses import json_bytes_response, json_response, no_content
from .schemas import LIST_QUERY, TASK_CREATE, TASK_UPDATE, check_user_id, parse_task_id

bp = Blueprint("tasks", __name__, url_prefix="/api/<user:user_id>/tasks")


class UserIdConverter(BaseConverter):
    """Matches any user id, even empty or holding '/', so validation (not routing) answers 400."""

    regex = "[\\s\\S]*?"
    part_isolating = False


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


@bp.get("")
def list_tasks():
    """List the user's tasks: all of them, or one page when a limit or cursor is given."""
    args = _load(LIST_QUERY.load_args, request.args.to_dict())
    if args["limit"] is not None or args["cursor"] is not None:
        return paging.page_response(g.user_id, args)
    return json_bytes_response(listcache.list_json(g.user_id, args["status"], args["sort"], args["order"]))


@bp.post("")
def create_task():
    """Create a task."""
    data = _load(TASK_CREATE.load, json_object())
    row = dao.create_task(g.user_id, data["title"], data["description"], data["completed"])
    location = f"{request.path}/{row['id']}"
    return json_response(row, 201, {"Location": location})


@bp.get("/<task_id>")
def get_task(task_id):
    """Get one task."""
    return json_response(dao.get_task(g.user_id, _task_id(task_id)))


@bp.put("/<task_id>")
def update_task(task_id):
    """Update any of a task's title, description and completed."""
    task_id = _task_id(task_id)
    changes = _load(TASK_UPDATE.load, json_object())
    return json_response(dao.update_task(g.user_id, task_id, changes))


@bp.patch("/<task_id>/complete")
def toggle_task(task_id):
    """Flip a task's completed flag."""
    return json_response(dao.toggle_task(g.user_id, _task_id(task_id)))


@bp.delete("/<task_id>")
def delete_task(task_id):
    """Delete a task."""
    dao.delete_task(g.user_id, _task_id(task_id))
    return no_content()
