"""gunicorn settings for production; every value comes from the environment (see .env.example)."""

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile

# The workers' shared metrics files (todo_service/metrics.py): prometheus_client picks files or memory
# when it is imported, so the directory is named before todo_service is. Without a configured one, a
# private one (mode 0700) of this master's, removed at its exit: a reload (HUP) keeps it, and a new
# master started by USR2 makes its own rather than take over the old master's.
# Every request writes to those files and every worker touches its heartbeat file each second: they
# go to memory (/dev/shm, as gunicorn's docs advise for worker_tmp_dir) unless TMPDIR names a place.
# On a disk-backed /tmp the kernel writes the dirty pages back, and a write to a page under writeback
# may wait for it (docs/performance.md, "The cost of metrics and rate limits").
_RAM_DIR = None if os.environ.get("TMPDIR") or not os.access("/dev/shm", os.W_OK | os.X_OK) else "/dev/shm"
worker_tmp_dir = _RAM_DIR
_METRICS_OWNER = "TODO_SERVICE_METRICS_MASTER"  # the pid of the master that made the directory
_owner = os.environ.get(_METRICS_OWNER)
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ or _owner not in (None, str(os.getpid())):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="todo_service-metrics-", dir=_RAM_DIR)
    os.environ[_METRICS_OWNER] = str(os.getpid())


def _remove_own_metrics_dir():
    if os.environ.get(_METRICS_OWNER) == str(os.getpid()):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


from todo_service import embedded, listeners, logs, metrics  # noqa: E402
from todo_service.config import ConfigError, load_settings  # noqa: E402

try:
    _settings = load_settings()
except ConfigError as _exc:
    sys.stderr.write(f"todo_service: configuration: {_exc}\n")
    _remove_own_metrics_dir()
    sys.exit(1)

logs.configure(_settings.log_level, _settings.log_format)
_cores = multiprocessing.cpu_count()

bind = os.environ.get("GUNICORN_BIND") or f"{_settings.api_host}:{_settings.api_port}"
# Measured on 2 cores (docs/performance.md): one gthread worker per core serves as much as two per
# core with 40% less memory; 8 threads rather than 4 keep more commits in flight (+32% creates);
# sync and gevent were slower or had a worse p99.
workers = _settings.web_concurrency or _cores
worker_class = _settings.worker_class
# Threads taking requests; the pool of each worker holds as many connections (config.py). A long-poll
# of the change feed waits on a thread of its own beyond them (longpoll.WorkPool, post_worker_init).
threads = _settings.threads
# One listening socket per worker (SO_REUSEPORT): the kernel spreads new connections evenly. With
# a shared socket the first worker to wake takes most of a burst of keep-alive connections, and the
# clients on the busier worker wait about twice as long (docs/performance.md). The master opens and
# holds them (todo_service/listeners.py), so a reload or a dead worker loses no queued connection;
# gunicorn's own reuse_port would open them in the workers. Only for TCP binds the service opens
# itself: not for unix sockets, systemd socket activation or a USR2 re-exec, which hand over the
# master's sockets as they are.
_inherited = os.environ.get("LISTEN_FDS") or os.environ.get("GUNICORN_FD")
_per_worker_sockets = _settings.reuse_port and not _inherited and not bind.startswith(("unix:", "fd://"))
reuse_port = False
keepalive = 5
timeout = 30
# SIGTERM: workers stop accepting and finish their requests within this many seconds, then exit.
graceful_timeout = 20
# `make reload` sends HUP to the master named here (docs/scaling.md).
pidfile = os.environ.get("GUNICORN_PIDFILE") or None
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
max_requests = 0
# Room above the service's own bound (8 KiB per header value, todo_service/middleware.py), so that it, not
# gunicorn's plain-text page without JSON or CORS headers, answers headers a little too large with 431;
# 8190 is the longest request line gunicorn reads (its default is 4094).
limit_request_field_size = 32768
limit_request_line = 8190


def on_starting(server):
    """Before any worker exists: pick the database, check it, migrate, listen. Exit 1 with one line on failure."""
    from todo_service.startup import StartupError, check_free, prepare_service

    per_worker = _per_worker_sockets and listeners.usable(server.cfg.address)
    metrics.prepare_directory(os.environ["PROMETHEUS_MULTIPROC_DIR"])  # no samples of an earlier run
    try:
        if per_worker:
            check_free(server.cfg.address)  # SO_REUSEPORT would quietly share the port with another server
        prepare_service(server.cfg.address)
        if per_worker:
            listeners.open_slots(server)
    except (StartupError, OSError) as exc:
        logging.getLogger("todo_service.startup").critical("startup failed: %s", exc)
        embedded.stop()
        _remove_own_metrics_dir()
        sys.exit(1)


def pre_fork(server, worker):
    """In the master: the per-worker socket the next worker listens on."""
    listeners.assign(server, worker)


def post_fork(server, worker):
    """In the new worker: listen on its own socket only."""
    listeners.adopt(worker)


def post_worker_init(worker):
    """In the new worker: GUNICORN_THREADS threads take requests, a long-poll waiting on a thread of its
    own (longpoll.WorkPool); after gunicorn's own signal handlers, SIGTERM (shutdown, reload) first
    answers every long-poll of the change feed at once, so draining does not wait for them."""
    from todo_service import longpoll

    longpoll.serve_with_work_pool(worker)
    drain = signal.getsignal(signal.SIGTERM)

    def release_then_drain(signum, frame):
        longpoll.release_all()
        if callable(drain):
            drain(signum, frame)

    signal.signal(signal.SIGTERM, release_then_drain)


def on_reload(server):
    """HUP, before the new workers: as many per-worker sockets as the (re-read) WEB_CONCURRENCY."""
    listeners.resize(server)


def when_ready(server):
    """Workers are starting: say in one line where the service listens and where its docs are."""
    from todo_service.startup import announce

    announce(server.cfg.address, _settings.docs_enabled)


def child_exit(server, worker):
    """A worker has exited: its gauges (in-flight requests, pool) leave the sums."""
    metrics.mark_dead(worker.pid)


def on_exit(server):
    """After the last worker: stop the embedded PostgreSQL if this process started it; remove our metrics files."""
    embedded.stop()
    _remove_own_metrics_dir()
