"""Concurrency, partial failures and hostile clients, over real HTTP against gunicorn."""

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import auth_headers, auth_line
from tests.test_http import raw_request
from todo_service.jsonbody import BODY_IDLE_TIMEOUT_SECONDS


def test_concurrent_puts_each_answer_a_whole_task_and_last_write_wins(api, live_server):
    task = api("POST", "/api/racer/tasks", json={"title": "start"}).json()
    url = live_server.url(f"/api/racer/tasks/{task['id']}")
    racer = auth_headers("racer")
    bodies = [{"title": f"title-{i}", "description": f"description-{i}", "completed": i % 2 == 0}
              for i in range(60)]
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda body: requests.put(url, json=body, headers=racer, timeout=15), bodies))
    assert [a.status_code for a in answers] == [200] * 60
    for answer in answers:
        got = answer.json()
        i = int(got["title"].split("-")[1])
        assert (got["description"], got["completed"]) == (f"description-{i}", i % 2 == 0), got
    final = requests.get(url, headers=racer, timeout=5).json()
    last = max(answers, key=lambda a: a.json()["updated_at"]).json()
    assert final == last


def test_concurrent_deletes_exactly_one_204(api, live_server):
    task = api("POST", "/api/racer/tasks", json={"title": "delete me"}).json()
    url = live_server.url(f"/api/racer/tasks/{task['id']}")
    racer = auth_headers("racer")
    with ThreadPoolExecutor(20) as pool:
        codes = sorted(pool.map(lambda _: requests.delete(url, headers=racer, timeout=15).status_code, range(20)))
    assert codes == [204] + [404] * 19


def test_truncated_body_stores_nothing(api, live_server):
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/cut/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + auth_line("cut") + b"Content-Length: 100\r\n\r\n{\"title\": \"half")
        sock.shutdown(socket.SHUT_WR)
        reply = sock.recv(65536)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:200]
    assert api("GET", "/api/cut/tasks").json() == []


def test_a_stalled_body_gets_4xx_and_frees_its_thread(api, live_server):
    """A silent client holds a worker thread for BODY_IDLE_TIMEOUT_SECONDS at most, then gets 400."""
    stalled = []
    started = time.monotonic()
    for _ in range(20):  # more than one worker's eight threads
        sock = socket.create_connection(("127.0.0.1", live_server.port), timeout=60)
        sock.sendall(b"POST /api/slow/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + auth_line("slow") + b"Content-Length: 50\r\n\r\n{\"title\":")
        stalled.append(sock)
    for sock in stalled:
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        sock.close()
    # Twenty stalls, at worst all queued on one worker's eight threads: three rounds of the timeout.
    assert time.monotonic() - started < 3 * BODY_IDLE_TIMEOUT_SECONDS + 3
    assert api("POST", "/api/fast/tasks", json={"title": "served afterwards"}).status_code == 201
    assert api("GET", "/api/slow/tasks").json() == []


@pytest.mark.parametrize("request_bytes", [
    b"GET /api/alice/tasks HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /api/alice/tasks HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
    b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"BREW /api/alice/tasks HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
])
def test_absurd_requests_get_4xx_or_a_closed_connection(live_server, request_bytes):
    reply = raw_request(live_server, request_bytes + b"Connection: close\r\n\r\n")
    assert reply == b"" or reply.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), reply[:200]
    assert requests.get(live_server.url("/healthz"), timeout=5).status_code == 200


def test_non_utf8_header_values_are_ignored_not_a_500(live_server):
    reply = raw_request(live_server, b"GET /api/alice/tasks HTTP/1.1\r\nHost: x\r\nX-Request-ID: \xff\xfe\r\n"
                        + auth_line("alice") + b"X-Other: \xc3\x28\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert re.search(rb"(?i:X-Request-ID): [0-9a-f]{32}\r\n", reply)  # a balancer may lower-case names
