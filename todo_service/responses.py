"""JSON responses: orjson-encoded bodies and the task's wire format."""

from datetime import UTC

import orjson
from flask import Response

TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def json_response(payload, status=200, headers=None):
    """A response whose body is `payload` as JSON."""
    return Response(orjson.dumps(payload), status=status, headers=headers, mimetype="application/json")


def no_content():
    """204 with no body and no Content-Type."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def timestamp(value):
    """RFC 3339 in UTC with microseconds and a `Z`, e.g. 2026-11-26T13:29:37.123456Z."""
    return value.astimezone(UTC).strftime(TIMESTAMP)


def task_payload(row):
    """A tasks row as the API's task object (see schemas.TaskSchema)."""
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "title": row["title"],
        "description": row["description"],
        "completed": row["completed"],
        "created_at": timestamp(row["created_at"]),
        "updated_at": timestamp(row["updated_at"]),
    }
