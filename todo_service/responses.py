"""JSON responses, encoded with orjson.

Task rows need no conversion: the SQL returns them in the API's shape (sql/queries/tasks.sql).
"""

import orjson
from flask import Response


def json_response(payload, status=200, headers=None):
    """A response whose body is `payload` as JSON."""
    return Response(orjson.dumps(payload), status=status, headers=headers, mimetype="application/json")


def json_bytes_response(body, status=200):
    """A response whose body is `body`, JSON already encoded."""
    return Response(body, status=status, mimetype="application/json")


def no_content():
    """204 with no body and no Content-Type."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response
