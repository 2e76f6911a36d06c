"""Prometheus metrics at GET /metrics, summed over every gunicorn worker.

Names and labels follow OpenTelemetry's semantic conventions for HTTP servers and database clients
in their Prometheus form; the service's own series start with `todo_`. Under gunicorn each worker
writes its samples to memory-mapped files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode, set up by gunicorn.conf.py) and a scrape, whichever worker answers it, reads them
all. Without that directory (`flask run`, the test client) the process's own registry is served.

Adding a series is one line below, e.g. `THINGS = Counter("todo_things", "What it counts.", ["kind"])`,
and one call where it happens: `metrics.count(metrics.THINGS, "kind")`.
"""

import glob
import hmac
import os
import re
import threading
import time
from functools import wraps
from time import perf_counter

from flask import Blueprint, Response, current_app, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, NotFound, Unauthorized

bp = Blueprint("metrics", __name__)
# prometheus_client chose memory or files when it was imported, by this variable: so do we.
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
POOL_SAMPLE_SECONDS = 5.0  # how old another worker's pool gauges may be at a scrape
STARTED = "todo_service.metrics.started"  # the environ key of the request's perf_counter() at its start
UNMATCHED = "unmatched"  # the route of a request that matched none: a 404 or 405 by routing
# OpenTelemetry's known methods; any other is "_OTHER", so a client cannot mint series.
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
# The error codes of auth.py, and UNAUTHORIZED: a scrape of /metrics without METRICS_TOKEN.
AUTH_FAILURES_BY_CODE = {"AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN", "HEADER_TOO_LARGE", "UNAUTHORIZED"}
# Requests take 0.5-50 ms here; OpenTelemetry's default buckets start at 5 ms, so two are added below.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

disable_created_metrics()  # no *_created series: multiprocess mode has none, so neither has a single process
HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds", "Duration of HTTP server requests.",
    ["http_request_method", "http_route", "http_response_status_code"], buckets=HTTP_BUCKETS)
HTTP_ACTIVE = Gauge("http_server_active_requests", "Number of active HTTP server requests.",
                    multiprocess_mode="livesum")
DB_DURATION = Histogram(
    "db_client_operation_duration_seconds", "Duration of database statements, by their name in sql/queries/.",
    ["db_query_summary"], buckets=DB_BUCKETS)
POOL_CONNECTIONS = Gauge("db_client_connection_count", "Pool connections, idle or used.",
                         ["db_client_connection_state"], multiprocess_mode="livesum")
POOL_MAX = Gauge("db_client_connection_max", "The most connections the pools may open.", multiprocess_mode="livesum")
POOL_WAITING = Gauge("db_client_connection_pending_requests", "Requests waiting for a pool connection.",
                     multiprocess_mode="livesum")
POOL_TIMEOUTS = Counter("db_client_connection_timeouts", "Requests that got no pool connection in time.")
CONNECTION_ERRORS = Counter("db_client_connection_errors", "Failed connection attempts (connect) and "
                            "connections found broken (lost).", ["error_type"])
OUTAGES = Counter("todo_outages", "503 answers, by cause (their error_code).", ["cause"])
AUTH_FAILURES = Counter("todo_auth_failures", "Requests refused by authentication, by reason (their error_code).",
                        ["reason"])
IDEMPOTENT_REPLAYS = Counter("todo_idempotent_replays", "Keyed writes answered with the stored answer of "
                             "an earlier request.")
LIST_CACHE = Counter("todo_list_cache_lookups", "Lookups in the per-worker list cache, by result.", ["result"])
RATE_LIMIT_STORE_OUTAGES = Counter("todo_rate_limit_store_outages", "Times a worker lost the rate-limit store "
                                   "(Redis) and counted in its own memory until it answered again.")
SYNC_WAITERS = Gauge("todo_sync_waiters", "Change-feed requests waiting for a change (long-poll).",
                     multiprocess_mode="livesum")
SYNC_WAITS_REFUSED = Counter("todo_sync_waits_refused", "Long-polls answered at once: SYNC_MAX_WAITERS were "
                             "waiting in their worker already.")

_recording = True  # METRICS_ENABLED of this process's app
_children = {}  # (metric, label values) -> child: skips prometheus_client's locked lookup on every request
_routes = {}  # Werkzeug rule text -> OpenTelemetry route template
_pool_lock = threading.Lock()
_pools = []  # this process's pool, sampled at each scrape


def _child(metric, values):
    child = _children.get((metric, values))
    if child is None:
        child = _children[(metric, values)] = metric.labels(*values)
    return child


def count(metric, *labels):
    """Add one to the counter `metric` (with these label values)."""
    if _recording:
        (_child(metric, labels) if labels else metric).inc()


def timed(run):
    """Decorate PooledConnection.run: each statement's duration under its name."""

    @wraps(run)
    def timed_run(conn, query, **params):
        if not _recording:
            return run(conn, query, **params)
        started = perf_counter()
        try:
            return run(conn, query, **params)
        finally:
            _child(DB_DURATION, (query.name,)).observe(perf_counter() - started)

    return timed_run


def error_answered(status, error_code):
    """An error answer: a 503 is an outage by its cause; an authentication refusal counts by reason."""
    if status == 503:
        count(OUTAGES, error_code)
    elif error_code in AUTH_FAILURES_BY_CODE:
        count(AUTH_FAILURES, error_code)


def list_cache_lookup(found):
    """A lookup in the list cache, found or not."""
    count(LIST_CACHE, "hit" if found else "miss")


def watch_pool(pool):
    """Sample this process's new pool now, at each scrape and every POOL_SAMPLE_SECONDS until it closes."""
    if _recording:
        _pools[:] = [pool]
        threading.Thread(target=_sample_until_closed, args=(pool,), name="metrics-pool", daemon=True).start()


def _sample_until_closed(pool):
    while not pool.closed:
        _sample(pool)
        time.sleep(POOL_SAMPLE_SECONDS)


def _sample(pool):
    """The pool's gauges now, and its error counts since the last sample."""
    with _pool_lock:
        stats = pool.pop_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        _child(POOL_CONNECTIONS, ("idle",)).set(idle)
        _child(POOL_CONNECTIONS, ("used",)).set(size - idle)
        POOL_MAX.set(stats.get("pool_max", 0))
        POOL_WAITING.set(stats.get("requests_waiting", 0))
        POOL_TIMEOUTS.inc(stats.get("requests_errors", 0))
        _child(CONNECTION_ERRORS, ("connect",)).inc(stats.get("connections_errors", 0))
        _child(CONNECTION_ERRORS, ("lost",)).inc(stats.get("connections_lost", 0) + stats.get("returns_bad", 0))


def _route():
    rule = request.url_rule
    if rule is None:
        return UNMATCHED
    route = _routes.get(rule.rule)
    if route is None:  # /api/<user:user_id>/tasks/<task_id> -> /api/{user_id}/tasks/{task_id}
        route = _routes[rule.rule] = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
    return route


class _Timed:
    """WSGI wrapper around the app: the request's clock and the in-flight gauge, outside every hook.

    Cheaper per request than a before_request and a teardown_request hook, and it times the whole
    of Flask's work; the after_request hook `_end` reads the clock from the environ.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        environ[STARTED] = perf_counter()
        HTTP_ACTIVE.inc()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            HTTP_ACTIVE.dec()


def _end(response):
    environ = request.environ
    started = environ.get(STARTED)
    if started is not None:  # None only for a request context made without the WSGI app, as some tests do
        method = environ.get("REQUEST_METHOD", "GET")
        labels = (method if method in METHODS else "_OTHER", _route(), response.status_code)
        _child(HTTP_DURATION, labels).observe(perf_counter() - started)
    return response


def _authorize(settings):
    """With METRICS_TOKEN, only its bearer may scrape; without it, nobody while authentication is on."""
    if settings.metrics_token:
        credentials = request.authorization
        given = credentials.token if credentials is not None and credentials.type == "bearer" else None
        if not given or not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
            raise Unauthorized("Scrape /metrics with 'Authorization: Bearer <METRICS_TOKEN>'.",
                               www_authenticate=WWWAuthenticate("bearer", {"realm": "metrics"}))
    elif settings.auth_enabled:
        raise Forbidden("Authentication is on: set METRICS_TOKEN to scrape /metrics.")


def _registry():
    """Every worker's files in multiprocess mode, else this process's own registry."""
    if not MULTIPROCESS:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


@bp.get("/metrics")
def scrape():
    """Every worker's samples in the Prometheus text format (OpenMetrics when the scraper asks for it)."""
    settings = current_app.config["SETTINGS"]
    if not settings.metrics_enabled:
        raise NotFound()
    _authorize(settings)
    for pool in _pools:
        if not pool.closed:
            _sample(pool)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(_registry()), content_type=content_type)


def prepare_directory(path):
    """At the gunicorn master's start: the shared directory exists and holds no samples of an earlier run."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def mark_dead(pid):
    """A worker has exited: its gauges leave the sums; its counters stay, as counters must."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid)


def init_app(app):
    """Time every request and serve /metrics; METRICS_ENABLED=false records nothing and answers 404 there."""
    global _recording
    _recording = app.config["SETTINGS"].metrics_enabled
    app.register_blueprint(bp)
    if _recording:
        app.wsgi_app = _Timed(app.wsgi_app)
        app.after_request(_end)


def sync_waiters(delta):
    """A change-feed request starts (+1) or stops (-1) waiting."""
    if _recording:
        SYNC_WAITERS.inc(delta)
