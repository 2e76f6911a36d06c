"""What the benchmark runs against: a fresh PostgreSQL, gunicorn as production starts it, RSS sampling."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from todo_service import embedded

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
MB = 1024 * 1024


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedDatabase:
    """The embedded PostgreSQL in a data dir of its own, stopped and removed on close."""

    kind = "embedded"

    def __init__(self):
        self.data_dir = ROOT / ".data" / f"bench-postgres-{os.getpid()}"
        self.url = None

    def open(self):
        if self.data_dir.exists():  # left by a killed run with the same pid: start from nothing
            shutil.rmtree(self.data_dir)
        self.url = embedded.start(self.data_dir)
        return self.url

    def server_pid(self):
        """The postmaster's pid (first line of postmaster.pid), or None once it has stopped."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def close(self):
        embedded.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class ExternalDatabase:
    """A fresh database created on the server of BENCH_DATABASE_URL, dropped on close."""

    kind = "external"

    def __init__(self, server_url):
        self.server_url = server_url
        self.name = f"todo_bench_{os.getpid()}_{int(time.time())}"
        self.url = None

    def open(self):
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = make_conninfo(self.server_url, dbname=self.name)
        return self.url

    def server_pid(self):
        """Not measurable: the server may be on another host."""
        return None

    def close(self):
        if self.url is None:
            return
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            # FORCE: a worker killed mid-request may leave a session behind.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


def make_database():
    """BENCH_DATABASE_URL's server when set, else the embedded one."""
    server_url = os.environ.get("BENCH_DATABASE_URL", "").strip()
    return ExternalDatabase(server_url) if server_url else EmbeddedDatabase()


class Gunicorn:
    """`gunicorn -c gunicorn.conf.py APP` on 127.0.0.1:PORT, output to a log file, stopped by PID."""

    def __init__(self, app, env, log_path):
        self.app, self.log_path = app, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "GUNICORN_BIND": f"127.0.0.1:{self.port}"}
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=60):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # A session of its own: Ctrl-C reaches only the runner, which then stops gunicorn by PID.
            self.proc = subprocess.Popen(
                [str(GUNICORN), "-c", "gunicorn.conf.py", self.app],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn ({self.app}) exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn ({self.app}) did not answer within {timeout}s; see {self.log_path}")

    def stop(self, timeout=30):
        """SIGTERM by PID (graceful shutdown), SIGKILL if it outlives `timeout`; return the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def tree_rss(pid):
    """Resident memory of `pid` and all its descendants, in bytes (0 when it is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:  # a process that ended between listing and reading
            pass
    return total


@dataclass
class Peaks:
    """Highest resident memory seen in one window, in MB (None: not measured)."""

    service_mb: float | None = None
    database_mb: float | None = None


class RssSampler:
    """Samples the service's and PostgreSQL's process trees every `interval` seconds in a thread."""

    def __init__(self, database, interval=0.2):
        self.database, self.interval = database, interval
        self.service_pid = None
        self._peak_service = self._peak_db = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        service = tree_rss(self.service_pid) if self.service_pid else 0
        db_pid = self.database.server_pid()
        database = tree_rss(db_pid) if db_pid else 0
        with self._lock:
            self._peak_service = max(self._peak_service, service)
            self._peak_db = max(self._peak_db, database)

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    @contextmanager
    def window(self, service_pid):
        """Track `service_pid`'s tree; the yielded Peaks is filled when the block ends."""
        peaks = Peaks()
        with self._lock:
            self.service_pid, self._peak_service, self._peak_db = service_pid, 0, 0
        self._sample()
        try:
            yield peaks
        finally:
            self._sample()
            with self._lock:
                peaks.service_mb = round(self._peak_service / MB, 1)
                peaks.database_mb = round(self._peak_db / MB, 1) if self.database.server_pid() else None
