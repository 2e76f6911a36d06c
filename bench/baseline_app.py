"""The HTTP ceiling: a bare WSGI app, no framework and no database, answering one constant task.

Served by gunicorn with the service's own gunicorn.conf.py, so the difference between its
throughput and a scenario's is what Flask, the app code and PostgreSQL cost.
"""

import json

BODY = json.dumps({
    "id": 1,
    "user_id": "bench-user-1",
    "title": "Task 1",
    "description": None,
    "completed": False,
    "created_at": "2026-01-01T00:00:00.000000Z",
    "updated_at": "2026-01-01T00:00:00.000000Z",
}).encode()
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    """Answer every request with the constant task."""
    start_response("200 OK", HEADERS)
    return [BODY]
