"""Long-poll of the change feed: requests waiting for a user's next change, one registry per worker.

A waiting request holds a worker thread but no database connection. It is woken

- at once by a write of the same worker (`changed`, after every successful write request);
- within SYNC_POLL_MS by a write anywhere else (another worker or instance): while anyone waits,
  one poller thread per worker asks in one statement (get_change_heads) which of its waiting users'
  seqs moved past what their waiters last saw, and wakes those;
- at once by shutdown (`release_all`, on SIGTERM from gunicorn.conf.py), so a draining worker
  answers its waiters instead of holding them until the graceful timeout.

No LISTEN/NOTIFY: its commit-time global lock would serialise every writer of the database, and a
transaction-mode pooler (PgBouncer, Neon's pooled endpoint) cannot hold a LISTEN session.

At most SYNC_MAX_WAITERS requests wait per worker; past the bound a request is answered at once,
as with wait=0, rather than queued. A waiting request holds its thread but no connection: under
gunicorn, WorkPool replaces the thread for the wait's length, so GUNICORN_THREADS threads keep
taking other requests; elsewhere (flask run, the test client) a request holds one of GUNICORN_THREADS
work slots and gives it back while it waits. A `sync` worker cannot wait at all.
"""

import logging
import queue
import threading
import time
import weakref
from concurrent.futures import Future
from contextlib import contextmanager

import psycopg
from flask import current_app

from . import dao, metrics
from .db import DatabaseUnavailable

log = logging.getLogger(__name__)
IDLE_EXIT_SECONDS = 30.0  # a poller with no waiter for this long ends; the next waiter starts one
_REGISTRIES = weakref.WeakSet()  # every registry of this process, for release_all
_SHUTDOWN = threading.Event()


class Waiter:
    """One waiting request: its user, the seq its answer was read at, and what wakes it."""

    __slots__ = ("event", "seen", "user_id")

    def __init__(self, user_id, seen):
        self.user_id, self.seen, self.event = user_id, seen, threading.Event()


class Registry:
    """The waiters of one app in one process, and the poller that watches their users' seqs."""

    def __init__(self, app, max_waiters, poll_seconds, working):
        self.app, self.max_waiters, self.poll_seconds = app, max_waiters, poll_seconds
        self.slots = threading.BoundedSemaphore(working)  # requests doing work at once
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._by_user = {}  # user id -> set of Waiters
        self._count = 0
        self._poller = None

    def enter(self, user_id, seen):
        """A Waiter for `user_id` at `seen`, or None when the bound is reached or the worker stops."""
        with self._lock:
            if _SHUTDOWN.is_set():
                return None
            if self._count >= self.max_waiters:
                metrics.count(metrics.SYNC_WAITS_REFUSED)
                return None
            waiter = Waiter(user_id, seen)
            self._by_user.setdefault(user_id, set()).add(waiter)
            self._count += 1
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, name="todo_service-longpoll", daemon=True)
                self._poller.start()
            self._arrived.notify()
        metrics.sync_waiters(1)
        return waiter

    def leave(self, waiter):
        """The request stops waiting (answered, timed out or woken)."""
        with self._lock:
            waiters = self._by_user.get(waiter.user_id)
            if waiters is None or waiter not in waiters:
                return
            waiters.discard(waiter)
            if not waiters:
                del self._by_user[waiter.user_id]
            self._count -= 1
        metrics.sync_waiters(-1)

    def wake(self, user_id, seq=None):
        """Wake the user's waiters that have not seen `seq` yet (every one when seq is None)."""
        with self._lock:
            for waiter in self._by_user.get(user_id, ()):
                if seq is None or seq > waiter.seen:
                    waiter.event.set()

    def wake_all(self):
        with self._lock:
            for waiters in self._by_user.values():
                for waiter in waiters:
                    waiter.event.set()

    def _watched(self):
        """{user id: lowest seq seen} of the waiting users; waits for one while there is none.
        None when the poller has been idle too long and has ended."""
        with self._lock:
            idle_since = time.monotonic()
            while not self._by_user:
                left = IDLE_EXIT_SECONDS - (time.monotonic() - idle_since)
                if left <= 0:
                    self._poller = None
                    return None
                self._arrived.wait(left)
            return {user: min(w.seen for w in waiters) for user, waiters in self._by_user.items()}

    def _poll(self):
        """The poller: every poll interval, one read of the waiting users' seqs; wake whom it concerns."""
        failing = False
        while (watched := self._watched()) is not None:
            try:
                with self.app.app_context():
                    heads = dao.change_heads(watched)
                failing = False
            except (DatabaseUnavailable, psycopg.Error) as exc:
                if not failing:  # once per outage, not every poll
                    log.warning("long-poll: reading the waiting users' changes failed: %s", exc)
                failing, heads = True, ()
            except Exception:  # never let the poller die: the waiters would only time out from then on
                log.exception("long-poll: the poller failed")
                heads = ()
            for row in heads:  # only users whose seq moved
                self.wake(row["user_id"], row["seq"])
            time.sleep(self.poll_seconds)


def wait(user_id, seen, seconds):
    """Block up to `seconds` until a change for `user_id` past `seen` may have committed.

    True when woken (read again), False on timeout; None when the request may not wait (bound
    reached or shutting down): answer at once.
    """
    registry = current_app.extensions["todo_longpoll"]
    waiter = registry.enter(user_id, seen)
    if waiter is None:
        return None
    pool = getattr(_thread, "pool", None)
    try:
        if pool is not None:
            with pool.waiting():
                woken = waiter.event.wait(seconds)
        else:
            registry.slots.release()  # another request may work meanwhile
            try:
                woken = waiter.event.wait(seconds)
            finally:
                registry.slots.acquire()
    finally:
        registry.leave(waiter)
    return woken and not _SHUTDOWN.is_set()


def changed(user_id):
    """A write for `user_id` committed in this process: its waiters read again now."""
    current_app.extensions["todo_longpoll"].wake(user_id)


def release_all():
    """Shutdown: every waiter of this process answers now, and no request waits from here on."""
    _SHUTDOWN.set()
    for registry in list(_REGISTRIES):
        registry.wake_all()


_thread = threading.local()  # .pool: the WorkPool this thread serves requests for


class WorkSlots:
    """WSGI middleware: each request holds one of the registry's work slots while the app runs it
    (under gunicorn, WorkPool bounds the working threads instead)."""

    def __init__(self, wsgi_app, registry):
        self.wsgi_app, self.registry = wsgi_app, registry

    def __call__(self, environ, start_response):
        if getattr(_thread, "pool", None) is not None:
            return self.wsgi_app(environ, start_response)
        slots = self.registry.slots
        slots.acquire()
        try:
            return self.wsgi_app(environ, start_response)  # bodies are bytes: nothing runs after this
        finally:
            slots.release()


class WorkPool:
    """gunicorn's gthread pool, replaced (post_worker_init): GUNICORN_THREADS threads take requests from
    one queue, as ThreadPoolExecutor's do, and a thread whose request waits in a long-poll is replaced
    for the length of the wait, so that GUNICORN_THREADS keep working. More threads taking requests at
    once cost a quarter of the throughput here (docs/performance.md); waiting ones cost nothing."""

    def __init__(self, size):
        self.size = size
        self._tasks = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._working = 0  # threads not waiting in a long-poll
        self._threads = 0
        with self._lock:
            for _ in range(size):
                self._start()

    def _start(self):
        self._working += 1
        self._threads += 1
        threading.Thread(target=self._work, name="todo_service-request", daemon=True).start()

    def submit(self, fn, *args, **kwargs):
        future = Future()
        self._tasks.put((future, fn, args, kwargs))
        return future

    def _work(self):
        _thread.pool = self
        while (task := self._tasks.get()) is not None:
            future, fn, args, kwargs = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # the future carries it to gunicorn
                    future.set_exception(exc)
            with self._lock:
                if self._working > self.size:  # a waiter came back meanwhile: one thread too many
                    self._working -= 1
                    self._threads -= 1
                    return

    @contextmanager
    def waiting(self):
        """Around a long-poll's wait: another thread takes requests meanwhile."""
        with self._lock:
            self._working -= 1
            if self._working < self.size:
                self._start()
        try:
            yield
        finally:
            with self._lock:
                self._working += 1

    def shutdown(self, wait=True, cancel_futures=False):
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._tasks.put(None)


def serve_with_work_pool(worker):
    """In a gthread worker (post_worker_init): its requests go to a WorkPool of as many threads."""
    if getattr(worker, "tpool", None) is not None:
        worker.tpool.shutdown(wait=False)  # gunicorn's own, which has started no thread yet
        worker.tpool = WorkPool(worker.cfg.threads)


def init_app(app):
    """The worker's waiter registry (SYNC_MAX_WAITERS, SYNC_POLL_MS) and its GUNICORN_THREADS work slots."""
    settings = app.config["SETTINGS"]
    waiters = 0 if settings.worker_class == "sync" else settings.sync_max_waiters
    registry = Registry(app, waiters, settings.sync_poll_ms / 1000, settings.threads)
    app.extensions["todo_longpoll"] = registry
    _REGISTRIES.add(registry)
    app.wsgi_app = WorkSlots(app.wsgi_app, registry)
