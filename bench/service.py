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
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from todo_service import embedded
from todo_service.scratch import create_database, drop_database

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
        self.name = self.url = None

    def open(self):
        self.name, self.url = create_database(self.server_url, "todo_bench")
        return self.url

    def server_pid(self):
        """Not measurable: the server may be on another host."""
        return None

    def close(self):
        if self.name is not None:
            drop_database(self.server_url, self.name)


def make_database():
    """BENCH_DATABASE_URL's server when set, else the embedded one."""
    server_url = os.environ.get("BENCH_DATABASE_URL", "").strip()
    return ExternalDatabase(server_url) if server_url else EmbeddedDatabase()


class DatabasePath:
    """How the service reaches PostgreSQL: directly, across a network (the latency proxy), through
    PgBouncer in transaction mode, or both. With both, the proxy stands before PgBouncer, as with
    Neon, whose pooler runs beside the database: service -> network -> PgBouncer -> PostgreSQL.

    The proxy counts round trips whenever it is in the path (also at 0 ms).
    """

    def __init__(self, latency_ms=None, pooler=False):
        self.latency_ms, self.pooler = latency_ms, pooler
        self.proxy = self.bouncer = None

    @property
    def name(self):
        """Short and file-name safe: direct, 1ms, pgbouncer, 1ms-pgbouncer."""
        parts = ([] if self.latency_ms is None else [f"{self.latency_ms:g}ms"]) + (["pgbouncer"] if self.pooler else [])
        return "-".join(parts) or "direct"

    def describe(self):
        network = "no proxy" if self.latency_ms is None else f"{self.latency_ms:g} ms each way (bench/proxy.py)"
        return f"{'PgBouncer in transaction mode' if self.pooler else 'direct'}, {network}"

    def open(self, url):
        """Start what the path needs in front of the database at `url`; return (service URL, service env)."""
        from psycopg.conninfo import conninfo_to_dict

        from bench.proxy import ProxyProcess, target_of
        from tests.pgservers import PgBouncer  # the one the tests run: transaction mode, on 127.0.0.1

        target, env = target_of(url), {}
        if self.pooler:
            self.bouncer = PgBouncer(target[1], name="bench-bouncer", target_host=target[0]).start()
            target = ("127.0.0.1", self.bouncer.port)
            url = self.bouncer.url(conninfo_to_dict(url).get("dbname", "postgres"))
            env["DATABASE_PGBOUNCER"] = "true"
        if self.latency_ms is not None:
            self.proxy = ProxyProcess(target, self.latency_ms).start()
            url = self.proxy.conninfo(url)
        return url, env

    def counts(self):
        """The proxy's counters, or None without a proxy."""
        return self.proxy.counts() if self.proxy else None

    def close(self):
        if self.proxy is not None:
            self.proxy.stop()
        if self.bouncer is not None:
            self.bouncer.stop()
        self.proxy = self.bouncer = None


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

    program = "gunicorn"

    def argv(self):
        return [str(GUNICORN), "-c", "gunicorn.conf.py", self.app]

    def start(self, timeout=60):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # A session of its own: Ctrl-C reaches only the runner, which then stops gunicorn by PID.
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:  # not ready, or Ctrl-C meanwhile: no __exit__ will run, so stop it here
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.program} ({self.app}) exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.program} ({self.app}) did not answer within {timeout}s; see {self.log_path}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        code = self.stop()
        if code:  # graceful shutdown failed: worth a look, though the numbers already stand
            print(f"warning: {self.program} ({self.app}) exited with {code}; see {self.log_path}", file=sys.stderr)

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


class Uvicorn(Gunicorn):
    """`uvicorn APP --workers N` on 127.0.0.1:PORT (an ASGI comparison build), started and stopped alike."""

    program = "uvicorn"

    def __init__(self, app, env, log_path, workers):
        super().__init__(app, env, log_path)
        self.workers = workers

    def argv(self):
        return [str(GUNICORN.parent / "uvicorn"), self.app, "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers)]


def _tree(pid):
    """`pid` and all its descendants; [] when it is gone."""
    if not pid:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_memory(pid):
    """(RSS, PSS) in bytes of `pid` and all its descendants, summed; (0, 0) when it is gone.

    RSS counts a shared page (forked code, PostgreSQL's shared buffers) once per process that
    touched it; PSS splits it between them, so it is the honest total of a process tree.
    """
    rss = pss = 0
    for process in _tree(pid):
        with suppress(psutil.Error):  # a process that ended between listing and reading
            info = process.memory_full_info()
            rss, pss = rss + info.rss, pss + info.pss
    return rss, pss


def tree_cpu(pid):
    """CPU seconds (user + system) used so far by `pid` and its descendants; 0 when it is gone.

    Unlike throughput, CPU per request hardly moves when other work shares the machine.
    """
    total = 0.0
    for process in _tree(pid):
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


@dataclass
class Peaks:
    """Highest memory seen in one window, in MB (None: not measured)."""

    service_mb: float | None = None
    service_pss_mb: float | None = None
    database_mb: float | None = None
    database_pss_mb: float | None = None


class ProcessMonitor:
    """Watches the service's and PostgreSQL's process trees: memory every `interval` seconds in a
    thread, CPU on demand, and waiting until both are idle."""

    def __init__(self, database, interval=0.2):
        self.database, self.interval = database, interval
        self.service_pid = None
        self._peaks = [0, 0, 0, 0]  # service RSS, service PSS, database RSS, database PSS
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-monitor", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        self._thread.join()

    def cpu(self, service_pid):
        """(service, database) CPU seconds so far, for a before/after difference."""
        return tree_cpu(service_pid), tree_cpu(self.database.server_pid())

    def wait_idle(self, service_pid, busy_share=0.1, step=0.25, timeout=120):
        """Wait until service and PostgreSQL together use under `busy_share` of one core for a `step`;
        return for how many seconds they were still busy.

        wrk hangs up at the end of a run, but the requests it had sent are still worked off (WSGI
        cannot cancel them); without this wait that backlog would be measured in the next run.
        """
        started = busy_until = time.monotonic()
        before = sum(self.cpu(service_pid))
        while busy_until - started < timeout:
            time.sleep(step)
            now = sum(self.cpu(service_pid))
            if now - before < busy_share * step:
                break
            before, busy_until = now, time.monotonic()
        return round(busy_until - started, 1)

    def _sample(self):
        service = tree_memory(self.service_pid) if self.service_pid else (0, 0)
        db_pid = self.database.server_pid()
        database = tree_memory(db_pid) if db_pid else (0, 0)
        with self._lock:
            self._peaks = [max(peak, now) for peak, now in zip(self._peaks, (*service, *database), strict=True)]

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    @contextmanager
    def window(self, service_pid):
        """Track `service_pid`'s tree; the yielded Peaks is filled when the block ends."""
        peaks = Peaks()
        with self._lock:
            self.service_pid, self._peaks = service_pid, [0, 0, 0, 0]
        self._sample()
        try:
            yield peaks
        finally:
            self._sample()
            with self._lock:
                service_rss, service_pss, db_rss, db_pss = (round(value / MB, 1) for value in self._peaks)
            peaks.service_mb, peaks.service_pss_mb = service_rss, service_pss
            if self.database.server_pid():
                peaks.database_mb, peaks.database_pss_mb = db_rss, db_pss


@contextmanager
def redis_server(unix_socket=False):
    """A Redis of its own on 127.0.0.1 (and a Unix socket) for the rate-limit scenarios; yields the URL of
    the one asked for, stops it by PID."""
    from tests.redisserver import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        raise SystemExit("redis-server is not installed; install it with: sudo apt-get install redis-server")
    server = RedisServer(unix_socket=unix_socket).start()
    try:
        yield server.url
    finally:
        server.stop()
