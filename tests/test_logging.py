"""One structured line per request: JSON with LOG_FORMAT=json, readable text otherwise."""

import json
import re

import requests

from tests.conftest import SERVICE_ENV
from tests.support import WITH_AUTH, LiveServer, auth_headers


def serve_and_log(database_url, fmt):
    server = LiveServer({"DATABASE_URL": database_url, "LOG_FORMAT": fmt, "LOG_LEVEL": "info",
                         "WEB_CONCURRENCY": "1", "MIGRATE_ON_START": "false", **SERVICE_ENV})
    server.start()
    try:
        requests.post(server.url("/api/logger/tasks"), json={"title": "t"},
                      headers={"X-Request-ID": "req-1", **auth_headers("logger")}, timeout=10)
        requests.get(server.url("/api/logger/tasks/abc"), headers={"X-Request-ID": "req-2", **auth_headers("logger")},
                     timeout=10)
    finally:
        server.stop()
    return server.log_path.read_text()


def test_json_lines_carry_the_request_fields(database_url):
    records = [json.loads(line) for line in serve_and_log(database_url, "json").splitlines()
               if line.startswith("{")]
    by_id = {r["request_id"]: r for r in records if r.get("logger") == "todo_service.request"}
    created, missing = by_id["req-1"], by_id["req-2"]
    assert (created["method"], created["path"], created["status"]) == ("POST", "/api/logger/tasks", 201)
    assert (missing["method"], missing["status"]) == ("GET", 404)
    if WITH_AUTH:  # the authenticated user, never the token
        assert created["user"] == missing["user"] == "logger"
        assert "Bearer" not in json.dumps(records) and "eyJ" not in json.dumps(records)
    for record in (created, missing):
        assert record["level"] == "INFO" and isinstance(record["duration_ms"], float)
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", record["time"])


def test_text_lines_are_readable_and_carry_the_request_id(database_url):
    lines = [line for line in serve_and_log(database_url, "text").splitlines() if "todo_service.request" in line]
    user = " user=logger" if WITH_AUTH else ""
    assert any(re.search(rf"INFO \[req-1\] todo_service\.request: POST /api/logger/tasks 201 [\d.]+ms{user}$", line)
               for line in lines), lines
