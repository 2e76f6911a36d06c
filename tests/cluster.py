"""Several service instances behind a real HAProxy, on one PostgreSQL through one PgBouncer.

HAProxy comes from Debian (`make test` installs it), listens on 127.0.0.1 only, checks each
instance's /readyz and is driven through its runtime API (a Unix socket in the run's directory), as
an operator would drain and re-enable a server. Every process is stopped by PID.
"""

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support import LOG_DIR, ROOT, LiveServer, free_port

BACKEND = "service"


def children(pid):
    """The PIDs of the processes whose parent is `pid` (a gunicorn master's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_gone(pid, timeout):
    """True once process `pid` has exited (or is a zombie) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


class Instance(LiveServer):
    """One service instance: a gunicorn master with its workers, and a pid file as in production."""

    def __init__(self, name, env, port=None):
        super().__init__(env, port)
        self.name = name
        self.pidfile = LOG_DIR / f"gunicorn-{self.port}.pid"
        self.env["GUNICORN_PIDFILE"] = str(self.pidfile)

    def master(self):
        """The PID of the master now serving: the pid file's, as gunicorn keeps it across a re-exec."""
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return self.proc.pid

    def workers(self):
        return children(self.master())

    def kill(self):
        """SIGKILL the master and every worker at once, as a machine that dies would."""
        for pid in [self.master(), *self.workers()]:
            os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self, timeout=30):
        """SIGTERM to the master by PID; its exit code (0 for a re-executed master that exited in time)."""
        master = self.master()
        if master == self.proc.pid:
            return super().stop(timeout)
        os.kill(master, signal.SIGTERM)
        if not wait_gone(master, timeout):
            os.kill(master, signal.SIGKILL)
            return -signal.SIGKILL
        return 0

    def reexec(self):
        """USR2 to the master: a new master (new code, new Python) starts on the same sockets; once it
        runs its workers, SIGTERM lets the old master and its workers finish and stop."""
        old = self.master()
        os.kill(old, signal.SIGUSR2)
        following = Path(f"{self.pidfile}.2")
        deadline = time.monotonic() + 60
        while not (following.exists() and len(children(int(following.read_text() or 0)))
                   >= int(self.env["WEB_CONCURRENCY"])):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no new master for {self.name} within 60 s")
            time.sleep(0.05)
        new = int(following.read_text())
        time.sleep(1)  # the new workers import the app and start accepting
        os.kill(old, signal.SIGTERM)
        if old == self.proc.pid:
            self.proc.wait(60)
        while self.master() != new:  # the new master takes the pid file once the old one is gone
            if time.monotonic() > deadline:
                raise RuntimeError(f"the new master of {self.name} did not take over within 60 s")
            time.sleep(0.05)

    def reload(self):
        """`make reload`: HUP to the master named by the pid file; the workers it replaces."""
        old = set(self.workers())
        os.kill(int(self.pidfile.read_text()), signal.SIGHUP)
        return old

    def wait_replaced(self, old, timeout=60):
        """Return once none of the workers `old` is left and a full set of new ones runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = set(self.workers())
            if not now & old and len(now) >= int(self.env["WEB_CONCURRENCY"]):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the workers of {self.name} were not replaced within {timeout} s")


class HAProxy:
    """HAProxy in front of the instances `servers` ({name: port}), health-checking /readyz."""

    def __init__(self, servers, name="haproxy"):
        self.binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(self.binary).exists():
            raise RuntimeError("haproxy is not installed: `sudo apt-get install haproxy` (Debian/Ubuntu)")
        self.servers = servers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = ROOT / ".data" / "clusters" / f"{name}-{os.getpid()}-{self.port}"
        self.admin = self.dir / "admin.sock"
        self.proc = None

    def url(self, path):
        return self.base + path

    def config(self):
        """haproxy.cfg: round robin over the instances; why each setting is there is in docs/scaling.md."""
        servers = "\n".join(f"    server {name} 127.0.0.1:{port} check" for name, port in self.servers.items())
        return f"""global
    maxconn 4096
    stats socket {self.admin} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 5s
    timeout queue 5s
    retries 3
    option redispatch 1
    option http-server-close

frontend api
    bind 127.0.0.1:{self.port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2
{servers}
"""

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        (self.dir / "haproxy.cfg").write_text(self.config())
        self.log = (self.dir / "haproxy.log").open("w")
        # -db: stay in the foreground, so that the PID is HAProxy's own.
        self.proc = subprocess.Popen([self.binary, "-db", "-f", str(self.dir / "haproxy.cfg")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_status(dict.fromkeys(self.servers, "UP"))
        return self

    def command(self, line):
        """One command on the runtime API; its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.admin))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self):
        """{server: status} as HAProxy sees it now: UP, DOWN, MAINT, DRAIN, 'UP 1/2', ..."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        return {row["svname"]: row["status"] for row in rows if row["pxname"] == BACKEND
                and row["svname"] in self.servers}

    def sessions(self, server):
        """Requests in flight to `server` right now (its current sessions)."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        return next(int(row["scur"]) for row in rows if row["pxname"] == BACKEND and row["svname"] == server)

    def wait_status(self, wanted, timeout=30):
        """Return once every server in `wanted` ({server: status}) has that status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {(self.dir / 'haproxy.log').read_text()}")
            try:
                seen = self.status()
                if all(seen.get(name) == status for name, status in wanted.items()):
                    return seen
            except OSError:
                pass  # the socket is not there yet
            time.sleep(0.05)
        raise RuntimeError(f"haproxy did not see {wanted} within {timeout} s: {self.status()}")

    def set_state(self, server, state):
        """ready, drain or maint, as `set server` on the runtime API."""
        answer = self.command(f"set server {BACKEND}/{server} state {state}")
        assert answer.strip() == "", answer

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Balanced:
    """Two instances (a, b) of WEB_CONCURRENCY=2 on `database_url`, behind HAProxy; quacks like a LiveServer."""

    def __init__(self, database_url, env=None):
        common = {"DATABASE_URL": database_url, "WEB_CONCURRENCY": "2", "MIGRATE_ON_START": "false", **(env or {})}
        self.instances = {name: Instance(name, common) for name in ("a", "b")}
        self.haproxy = HAProxy({name: inst.port for name, inst in self.instances.items()})
        self.port, self.base = self.haproxy.port, self.haproxy.base

    def start(self):
        for instance in self.instances.values():
            instance.start()
        self.haproxy.start()
        return self

    def url(self, path):
        return self.haproxy.url(path)

    def restart(self, name):
        """Start instance `name` again on its port after a kill or a stop; return it once it answers."""
        old = self.instances[name]
        self.instances[name] = Instance(name, old.env, port=old.port).start()
        return self.instances[name]

    def stop(self):
        self.haproxy.stop()
        for instance in self.instances.values():
            instance.stop()

