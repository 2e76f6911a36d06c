"""Rate limits on /api/ with Flask-Limiter: per verified user, or per client address without one.

Every /api/ request spends one unit of the "default" policy (RATE_LIMIT), a write one more of the
"writes" policy (RATE_LIMIT_WRITES); past either the answer is 429 RATE_LIMITED with Retry-After.
The limit is checked before authentication, so requests with a missing or bad token spend their
address's budget and a flood of them is refused too. Each /api/ answer carries RateLimit-Policy and
RateLimit as draft-ietf-httpapi-ratelimit-headers-12 writes them: `"default";q=600;w=60` and
`"default";a=599;w=42` (available quota, seconds until the window starts again).

The counters live in RATE_LIMIT_STORAGE_URL: Redis, one budget across workers and instances, or
memory:// (the default), which counts in each worker process alone. When the store fails, each
worker counts in its own memory until the store answers again (Flask-Limiter's fallback, probed
with backoff): the service keeps serving, logs the outage once and counts it in `store_outages()`.
"""

import logging
import math
import threading
import time
from urllib.parse import urlsplit

from flask import current_app, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits import parse

from . import auth
from .errors import error_response

log = logging.getLogger(__name__)
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
ALL, WRITES = "default", "writes"  # the policy names the headers carry
STORE_TIMEOUT_SECONDS = 0.25  # a Redis that does not answer within this counts as down for the request
HEADERS = ("RateLimit-Policy", "RateLimit")
# Flask-Limiter's own log line when it falls back to memory (once per outage); see _OutageCounter.
FALLBACK_MESSAGE = "Rate limit storage unreachable"

_outages = 0
_outages_lock = threading.Lock()


def store_outages():
    """How many times this process lost the rate-limit store and fell back to counting in memory."""
    return _outages


class _OutageCounter(logging.Filter):
    """Counts Flask-Limiter's fallback warnings (it logs one per outage); lets every record through."""

    def filter(self, record):
        global _outages
        if record.getMessage().startswith(FALLBACK_MESSAGE):
            with _outages_lock:
                _outages += 1
        return True


def partition():
    """Whose budget a request spends: its verified user's, or without one, its client address's."""
    user = auth.verified_user() if "todo_auth" in current_app.extensions else None
    return f"user:{user}" if user is not None else f"address:{request.remote_addr}"


def _exempt():
    """Only /api/ is limited; CORS preflights carry no credentials and cost next to nothing."""
    if not request.path.startswith("/api/"):
        return True
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _seconds_left(request_limit, now):
    """Whole seconds until the limit's window starts again (at least 1 while it is spent)."""
    return max(0, math.ceil(request_limit.window[0] - now))


def _policies(settings):
    """(name, rate, methods or None) of each policy in force."""
    return [(name, rate, methods) for name, rate, methods in ((ALL, settings.rate_limit, None),
                                                               (WRITES, settings.rate_limit_writes, WRITE_METHODS))
            if rate]


def _policy_header(policies):
    """RateLimit-Policy: each policy's quota and window in seconds, the same on every answer."""
    return ", ".join(f'"{name}";q={parse(rate).amount};w={parse(rate).get_expiry()}' for name, rate, _ in policies)


def too_many_requests(exc):
    """429 RATE_LIMITED with Retry-After: the seconds until the spent policy's window starts again."""
    spent = current_app.extensions["todo_ratelimit"].current_limit
    name = spent.request_args[-1] if spent is not None else ALL
    retry = max(1, _seconds_left(spent, time.time())) if spent is not None else exc.limit.limit.get_expiry()
    kind = "write requests" if name == WRITES else "requests"
    detail = f"Too many {kind}: the limit is {exc.limit.limit}. Retry in {retry} s."
    return error_response(429, "RATE_LIMITED", detail, headers={"Retry-After": str(retry)})


def add_headers(response):
    """RateLimit-Policy and RateLimit on every limited answer, successes and errors alike."""
    limiter = current_app.extensions["todo_ratelimit"]
    spent = limiter.current_limits
    if not spent:
        return response
    try:
        now = time.time()
        items = [f'"{limit.request_args[-1]}";a={limit.remaining};w={_seconds_left(limit, now)}' for limit in spent]
    except Exception:  # the store went away after the check: the answer goes out without the headers
        log.debug("rate limit headers left out", exc_info=True)
        return response
    response.headers["RateLimit-Policy"] = current_app.extensions["todo_ratelimit_policy"]
    response.headers["RateLimit"] = ", ".join(items)
    return response


def describe(settings):
    """The limits and the store in force, for the startup log; never the store's password."""
    if not (settings.rate_limit or settings.rate_limit_writes):
        return "rate limits off (RATE_LIMIT=off, RATE_LIMIT_WRITES=off)"
    parts = urlsplit(settings.rate_limit_storage_url)
    if parts.scheme == "memory":
        store = "in-process memory (memory://): each worker counts alone; set RATE_LIMIT_STORAGE_URL=redis://... " \
                "to share one budget across workers and instances"
    else:
        store = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}, " \
                "shared by every worker and instance using it"
    rates = ", ".join(f"{name} {rate}" for name, rate in ((ALL, settings.rate_limit),
                                                            (WRITES, settings.rate_limit_writes)) if rate)
    return f"rate limits on /api/ per user (per address without a valid token): {rates}; store {store}"


def init_app(app):
    """Limit /api/ when RATE_LIMIT or RATE_LIMIT_WRITES is set; before authentication, so 401s count."""
    settings = app.config["SETTINGS"]
    policies = _policies(settings)
    if not policies:
        return
    limits = [ApplicationLimit(rate, scope=name, methods=methods) for name, rate, methods in policies]
    memory = settings.rate_limit_storage_url.startswith("memory:")
    limiter = Limiter(
        partition, application_limits=limits, in_memory_fallback=limits, in_memory_fallback_enabled=True,
        storage_uri=settings.rate_limit_storage_url, strategy="fixed-window", headers_enabled=False,
        storage_options={} if memory else {"socket_timeout": STORE_TIMEOUT_SECONDS,
                                           "socket_connect_timeout": STORE_TIMEOUT_SECONDS},
        request_identifier=lambda: "api",  # one budget for all of /api/, unknown paths (404) included
        key_prefix="todo",
    )
    limiter.request_filter(_exempt)
    limiter.init_app(app)
    if not any(isinstance(f, _OutageCounter) for f in limiter.logger.filters):
        limiter.logger.addFilter(_OutageCounter())
    app.extensions["todo_ratelimit"] = limiter
    app.extensions["todo_ratelimit_policy"] = _policy_header(policies)
    app.register_error_handler(RateLimitExceeded, too_many_requests)
    app.after_request(add_headers)
