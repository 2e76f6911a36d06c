"""What only a real server shows: gunicorn with gunicorn.conf.py, two workers, over real HTTP."""

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import WITH_AUTH, auth_line

ORIGIN = "http://localhost:3000"


def raw_request(server, data, timeout=5):
    """Send bytes on a fresh socket; return what came back (status line first)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def test_crud_round_trip_over_http(api):
    created = api("POST", "/api/alice/tasks", json={"title": "over http"})
    assert created.status_code == 201 and created.headers["Location"].endswith(f"/tasks/{created.json()['id']}")
    url = created.headers["Location"]
    assert api("GET", url).json() == created.json()
    assert api("PUT", url, json={"completed": True}).json()["completed"] is True
    assert api("PATCH", url + "/complete").json()["completed"] is False
    assert api("DELETE", url).status_code == 204
    assert api("GET", url).status_code == 404


def test_body_over_64_kib_is_413_with_content_length(api):
    body = json.dumps({"title": "t", "description": "x" * 70_000})
    response = api("POST", "/api/alice/tasks", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error_code"] == "PAYLOAD_TOO_LARGE"


def test_chunked_body_over_64_kib_is_413(api):
    def chunks():
        yield b'{"title": "t", "description": "'
        for _ in range(20):
            yield b"y" * 4096
        yield b'"}'
    response = api("POST", "/api/alice/tasks", data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error_code"] == "PAYLOAD_TOO_LARGE"


def test_preflight_for_a_listed_origin(api):
    response = api("OPTIONS", "/api/alice/tasks/1", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "Content-Type, Authorization, X-Request-ID"})
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= methods
    headers = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "authorization", "x-request-id"} <= headers


def test_simple_request_from_listed_origin_gets_credentials_never_star(api):
    response = api("GET", "/api/alice/tasks", headers={"Origin": ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-Request-ID" in response.headers.get("Access-Control-Expose-Headers", "")


def test_a_request_without_origin_gets_no_cors_headers_but_varies_on_origin(api):
    for response in (api("GET", "/api/alice/tasks"), api("GET", "/api/alice/tasks/999"), api("GET", "/nowhere")):
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]
        assert "origin" in response.headers["Vary"].lower()
    with_origin = api("GET", "/api/alice/tasks", headers={"Origin": ORIGIN})
    assert "origin" in with_origin.headers["Vary"].lower()


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:3001", "null"])
def test_unlisted_origin_gets_no_allow_origin(api, origin):
    for response in (
        api("GET", "/api/alice/tasks", headers={"Origin": origin}),
        api("OPTIONS", "/api/alice/tasks", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}),
    ):
        assert "Access-Control-Allow-Origin" not in response.headers


def test_100_concurrent_creates_all_succeed(api):
    with ThreadPoolExecutor(100) as pool:
        responses = list(pool.map(
            lambda i: api("POST", "/api/crowd/tasks", json={"title": f"task {i}"}), range(100)))
    assert [r.status_code for r in responses] == [201] * 100
    assert len({r.json()["id"] for r in responses}) == 100
    listed = api("GET", "/api/crowd/tasks").json()
    assert sorted(t["title"] for t in listed) == sorted(f"task {i}" for i in range(100))


def test_150_concurrent_toggles_lose_no_flip(api):
    task = api("POST", "/api/toggler/tasks", json={"title": "flip me"}).json()
    url = f"/api/toggler/tasks/{task['id']}/complete"
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda _: api("PATCH", url), range(150)))
    assert [r.status_code for r in responses] == [200] * 150
    assert sum(r.json()["completed"] for r in responses) == 75
    assert api("GET", f"/api/toggler/tasks/{task['id']}").json()["completed"] is False
    stamps = sorted(r.json()["updated_at"] for r in responses)
    assert len(set(stamps)) == 150


@pytest.mark.parametrize("path", [b"/api/%FF%FE/tasks", b"/api/alice/tasks/%FF%FE"])
def test_invalid_utf8_in_path_is_400(live_server, path):
    reply = raw_request(live_server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + auth_line("alice")
                        + b"Connection: close\r\n\r\n")
    if WITH_AUTH and b"alice" not in path:  # a path user no token can name: authentication answers first
        assert reply.startswith(b"HTTP/1.1 403") and b'"error_code":"FORBIDDEN"' in reply
        return
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'"error_code":"VALIDATION_ERROR"' in reply


def test_request_id_over_http(api):
    assert api("GET", "/healthz", headers={"X-Request-ID": "edge-42"}).headers["X-Request-ID"] == "edge-42"
    assert len(api("GET", "/healthz").headers["X-Request-ID"]) == 32
