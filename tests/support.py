"""Helpers for the tests: a gunicorn process under test, URL juggling, free ports."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from todo_service import dao

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
LOG_DIR = ROOT / ".data" / "test-logs"  # git-ignored; emptied at the start of each test session


# `make test` runs the API tests again with this set: the service then requires a token from a key
# set, as with Better Auth, and every request the tests make as a user carries one for that user.
WITH_AUTH = os.environ.get("TEST_AUTH") == "1"
# One fixed Ed25519 key, so that every process of a run (pytest, schemathesis) signs alike.
SUITE_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"todo_service test suite").digest())
SUITE_KID = "suite-ed25519"
# With authentication on, /metrics answers only this bearer (METRICS_TOKEN of the servers the suite starts).
SUITE_METRICS_TOKEN = "metrics-token-of-the-test-suite"


def serve_suite_keys():
    """Serve the suite key's public half as a JSON Web Key Set on 127.0.0.1 for this process; its URL."""
    from tests.authkit import KeySetServer, SigningKey  # it needs free_port from here

    return KeySetServer([SigningKey("EdDSA", SUITE_KID, SUITE_KEY)]).start().url


def token_for(user, seconds=3600):
    """An EdDSA token naming `user`, as the frontend's auth server would issue it."""
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + seconds}, SUITE_KEY, algorithm="EdDSA",
                      headers={"kid": SUITE_KID})


def auth_headers(user):
    """Headers that authenticate a request as `user`: none while the suite runs with authentication off."""
    return {"Authorization": f"Bearer {token_for(user)}"} if WITH_AUTH else {}


def auth_line(user):
    """The Authorization header line for raw HTTP requests as `user` (empty with authentication off)."""
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in auth_headers(user).items())


def path_user(path):
    """The user id a request path names (/api/{user_id}/...), percent-decoded; None elsewhere."""
    path = urlsplit(path).path
    if not path.startswith("/api/"):
        return None
    rest = path[len("/api/"):]
    return unquote(rest.split("/tasks", 1)[0] if "/tasks" in rest else rest.split("/", 1)[0]) or None


def with_auth(path, headers):
    """`headers` plus a token for the path's user, unless they authenticate already."""
    user = path_user(path)
    headers = dict(headers or {})
    if user is None or any(name.lower() == "authorization" for name in headers):
        return headers
    return {**auth_headers(user), **headers}


def wait_for_lock_wait(sql_conn, thread):
    """Return once a session of the test database waits for a lock, or `thread` has ended."""
    query = "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    while thread.is_alive() and sql_conn.execute(query).fetchone()["n"] == 0:
        time.sleep(0.01)


def count_calls(monkeypatch, owner, name):
    """The arguments of every call of `owner.name` from now on; the real function still runs."""
    calls, real = [], getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


def count_task_reads(monkeypatch, name):
    """The arguments of every call of `dao.name` (list_tasks, list_page) from now on that read tasks,
    not only the list version; the real function still runs."""
    calls, real = [], getattr(dao, name)

    def counting(*args, **kwargs):
        version, rows = real(*args, **kwargs)
        if rows is not None:
            calls.append(args)
        return version, rows

    monkeypatch.setattr(dao, name, counting)
    return calls


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """gunicorn serving wsgi:app with gunicorn.conf.py and `env` on a free port."""

    def __init__(self, env, port=None):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "GUNICORN_BIND": f"127.0.0.1:{self.port}", "LOG_LEVEL": "warning", **env}
        self.proc = None
        self.log_path = LOG_DIR / f"gunicorn-{self.port}.log"

    def start(self, wait=True, timeout=30):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("w+")
        self.proc = subprocess.Popen(
            [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer within {timeout}s:\n{self.output()}")

    def output(self):
        self.log.flush()
        return self.log_path.read_text()

    def url(self, path):
        return self.base + path

    def stop(self, timeout=30):
        """SIGTERM by PID; return the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.log.close()
