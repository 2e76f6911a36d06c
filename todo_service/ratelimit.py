"""Rate limits on /api/: per verified user, or per client address without one, in fixed windows.

Every /api/ request spends one unit of the "default" policy (RATE_LIMIT), a write one more of the
"writes" policy (RATE_LIMIT_WRITES); past either the answer is 429 RATE_LIMITED with Retry-After.
The limit is checked before authentication, so requests with a missing or bad token spend their
address's budget and a flood of them is refused too. Each /api/ answer carries RateLimit-Policy and
RateLimit as draft-ietf-httpapi-ratelimit-headers-12 writes them: `"default";q=600;w=60` and
`"default";a=599;w=42` (available quota, seconds until the window starts again).

Windows are fixed and start at a budget's first request: the counter holds every request of the
window, and the whole budget is back when it ends. The policies are checked in order and a request
refused by one spends none of the next. The counters live in RATE_LIMIT_STORAGE_URL: memory:// (the
default) counts in each worker process alone; Redis holds one budget for every worker and instance,
counted by one script call per request (all its policies, their counts and windows). When Redis
fails, each worker counts in its own memory until Redis answers again (probed with backoff): the
service keeps serving, logs the outage once and counts it (`todo_rate_limit_store_outages_total`).

The `limits` library parses the rates and opens the Redis client (redis, rediss, redis+unix, sentinel
and cluster URLs); the counting is here, because Flask-Limiter and limits' own strategies cost more
per request than all the rest of a cached read (a lookup per policy and window, header objects).
"""

import logging
import math
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, g, request
from limits import parse
from limits.storage import storage_from_string
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from . import auth, metrics
from .errors import ApiError

log = logging.getLogger(__name__)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALL, WRITES = "default", "writes"  # the policy names the headers carry
STORE_TIMEOUT_SECONDS = 0.25  # a Redis that does not answer within this counts as down for the request
HEADERS = ("RateLimit-Policy", "RateLimit")
FALLBACK_MESSAGE = "Rate limit storage unreachable"  # logged once per outage
RECOVERED_MESSAGE = "Rate limit storage recovered"
FIRST_PROBE_SECONDS, LAST_PROBE_SECONDS = 1.0, 8.0  # backoff between attempts to reach a lost store
SWEEP_SECONDS = 60.0  # how often the memory counter forgets windows that have ended

_outages = 0
_outages_lock = threading.Lock()


def store_outages():
    """How many times this process lost the rate-limit store and fell back to counting in memory."""
    return _outages


@dataclass(frozen=True)
class Policy:
    """One budget: its name in the headers, quota per window, and what the answers say of it."""

    name: str
    quota: int
    seconds: int
    text: str  # "600 per 1 minute", for the 429's detail
    kind: str  # "requests" or "write requests"

    @classmethod
    def of(cls, name, rate):
        item = parse(rate)
        return cls(name, item.amount, item.get_expiry(), str(item), "write requests" if name == WRITES else "requests")


class MemoryCounter:
    """Fixed windows in this process: (partition, policy) -> [count, end]; one lock, swept now and then."""

    def __init__(self):
        self._windows = {}
        self._lock = threading.Lock()
        self._next_sweep = time.time() + SWEEP_SECONDS

    def hit(self, partition, policies, now):
        """One more request in each policy's window, up to the first one past its quota: [(count, end)]."""
        spent = []
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            for policy in policies:
                window = self._windows.get((partition, policy.name))
                if window is None or window[1] <= now:
                    window = self._windows[partition, policy.name] = [0, now + policy.seconds]
                window[0] += 1
                spent.append((window[0], window[1]))
                if window[0] > policy.quota:
                    break
        return spent

    def _sweep(self, now):
        """Forget ended windows, so a stream of new addresses does not grow the worker without bound."""
        self._windows = {key: window for key, window in self._windows.items() if window[1] > now}
        self._next_sweep = now + SWEEP_SECONDS


# KEYS: one counter per policy, ARGV: each one's quota then its window in milliseconds. Returns count and
# milliseconds left of each counter in turn, up to the first one past its quota (the next are not spent).
HIT_SCRIPT = """
local answer = {}
for i, key in ipairs(KEYS) do
    local count = redis.call("INCR", key)
    local left = redis.call("PTTL", key)
    if count == 1 or left < 0 then
        left = tonumber(ARGV[2 * i])
        redis.call("PEXPIRE", key, left)
    end
    answer[#answer + 1] = count
    answer[#answer + 1] = left
    if count > tonumber(ARGV[2 * i - 1]) then
        break
    end
end
return answer
"""


class RedisCounter:
    """Fixed windows in Redis, shared by every worker and instance: one script call per request.

    Each thread keeps one connection of the client's pool and sends EVALSHA on it itself: redis-py's
    command path (a pool checkout and return, its retry wrapper, the script object's own fallback) is
    three times the cost of the call on the wire (25 of 37 us of CPU, docs/performance.md). A cluster
    client has no single pool and goes through the script object.
    """

    def __init__(self, url):
        storage = storage_from_string(url, socket_timeout=STORE_TIMEOUT_SECONDS,
                                      socket_connect_timeout=STORE_TIMEOUT_SECONDS)
        self.errors = storage.base_exceptions
        client = storage.get_connection()
        self._script = client.register_script(HIT_SCRIPT)
        self._pool = getattr(client, "connection_pool", None)  # None for a cluster client
        self._local = threading.local()  # .connection: this thread's own
        self._arguments = {}  # policies -> the script's ARGV, the same on every call

    def hit(self, partition, policies, now):
        """As MemoryCounter.hit; raises self.errors when Redis fails."""
        arguments = self._arguments.get(policies)
        if arguments is None:
            arguments = self._arguments[policies] = [n for p in policies for n in (p.quota, p.seconds * 1000)]
        # One hash tag per partition: a Redis Cluster keeps a request's counters on one node, as a script needs.
        keys = [f"todo:{{{partition}}}:{policy.name}" for policy in policies]
        answer = self._call(keys, arguments) if self._pool is not None else self._script(keys=keys, args=arguments)
        return [(answer[i], now + answer[i + 1] / 1000) for i in range(0, len(answer), 2)]

    def _call(self, keys, arguments):
        """EVALSHA on this thread's own connection."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._pool.get_connection()
        command = connection.pack_command("EVALSHA", self._script.sha, len(keys), *keys, *arguments)
        try:
            try:
                return _send(connection, command)
            except RedisConnectionError:  # a kept connection the server closed (a restart): once more, afresh
                connection.disconnect()
                return _send(connection, command)
        except self.errors:
            connection.disconnect()  # a half-read answer must not be read by the next call
            raise


def _send(connection, command):
    """One packed command and its answer; the script is loaded again if the server lost it (a restart)."""
    try:
        connection.send_packed_command(command, check_health=False)
        return connection.read_response()
    except NoScriptError:
        connection.send_command("SCRIPT", "LOAD", HIT_SCRIPT)
        connection.read_response()
        connection.send_packed_command(command, check_health=False)
        return connection.read_response()


class FailOpen:
    """The shared counter while it answers; each worker's own memory while it does not."""

    def __init__(self, store):
        self.store, self.memory = store, MemoryCounter()
        self._lock = threading.Lock()
        self._retry_at = None  # None while the store answers; else when to try it again
        self._backoff = FIRST_PROBE_SECONDS

    def hit(self, partition, policies, now):
        """The store's counts, or this worker's while the store is down."""
        probing = self._retry_at is not None
        if not probing or self._claim_probe(now):
            try:
                spent = self.store.hit(partition, policies, now)
            except self.store.errors as exc:
                self._lost(now, exc, probing)
            else:
                if self._retry_at is not None:
                    self._recovered()
                return spent
        return self.memory.hit(partition, policies, now)

    def _claim_probe(self, now):
        """True for the one request that tries the lost store again once its backoff has passed."""
        with self._lock:
            if self._retry_at is None or now < self._retry_at:
                return self._retry_at is None
            self._retry_at = now + self._backoff  # the other requests meanwhile keep counting in memory
            return True

    def _lost(self, now, exc, probing):
        """The first failure starts an outage; a failed probe doubles the wait before the next one."""
        global _outages
        with self._lock:
            if self._retry_at is None:
                log.warning("%s - counting in this worker's memory until it answers: %s", FALLBACK_MESSAGE, exc)
                with _outages_lock:
                    _outages += 1
                metrics.count(metrics.RATE_LIMIT_STORE_OUTAGES)
                self._backoff = FIRST_PROBE_SECONDS
            elif probing:
                self._backoff = min(self._backoff * 2, LAST_PROBE_SECONDS)
            else:  # a request already under way when the outage began: it changes nothing
                return
            self._retry_at = now + self._backoff

    def _recovered(self):
        with self._lock:
            if self._retry_at is not None:
                self._retry_at = None
                self.memory = MemoryCounter()  # the next outage starts counting afresh
                log.info("%s", RECOVERED_MESSAGE)


class Limits:
    """The policies in force, their counter and the headers' fixed parts, built once; its two hooks."""

    def __init__(self, settings):
        self.default = tuple(Policy.of(name, rate) for name, rate in ((ALL, settings.rate_limit),) if rate)
        self.writes = self.default + tuple(Policy.of(WRITES, rate) for rate in (settings.rate_limit_writes,) if rate)
        url = settings.rate_limit_storage_url
        self.counter = MemoryCounter() if url.startswith("memory:") else FailOpen(RedisCounter(url))
        self.policy_header = ", ".join(f'"{p.name}";q={p.quota};w={p.seconds}' for p in self.writes)
        self._auth = None  # whether the app verifies tokens: known at the first request (auth starts later)

    def partition(self, req):
        """Whose budget a request spends: its verified user's, or without one, its client address's."""
        if self._auth is None:
            self._auth = "todo_auth" in current_app.extensions
        user = auth.verified_user() if self._auth else None
        return f"user:{user}" if user is not None else f"address:{req.remote_addr}"

    def check(self):
        """Spend the request's units; 429 RATE_LIMITED with Retry-After past a policy's quota."""
        req = request._get_current_object()  # one context lookup for the several reads below
        if _exempt(req):
            return
        policies = self.writes if req.method in WRITE_METHODS else self.default
        if not policies:
            return  # only writes are limited
        now = time.time()
        spent = self.counter.hit(self.partition(req), policies, now)
        g.rate_limits = (policies, spent)
        count, end = spent[-1]
        policy = policies[len(spent) - 1]
        if count > policy.quota:
            retry = max(1, math.ceil(end - now))
            detail = f"Too many {policy.kind}: the limit is {policy.text}. Retry in {retry} s."
            raise ApiError(429, "RATE_LIMITED", detail, headers={"Retry-After": str(retry)})

    def add_headers(self, response):
        """RateLimit-Policy and RateLimit on every limited answer, successes and errors alike."""
        state = g.get("rate_limits")
        if state is None:
            return response
        policies, spent = state
        now = time.time()
        left = ", ".join(f'"{policy.name}";a={max(0, policy.quota - count)};w={max(0, math.ceil(end - now))}'
                         for policy, (count, end) in zip(policies, spent, strict=False))  # spent stops at a refusal
        headers = response.headers  # neither is set by anything else: add, without set's search for an old one
        headers.add("RateLimit-Policy", self.policy_header)
        headers.add("RateLimit", left)
        return response


def _exempt(req):
    """Only /api/ is limited; CORS preflights carry no credentials and cost next to nothing."""
    if not req.path.startswith("/api/"):
        return True
    return req.method == "OPTIONS" and "Access-Control-Request-Method" in req.headers


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
    if not (settings.rate_limit or settings.rate_limit_writes):
        return
    limits = Limits(settings)
    app.extensions["todo_ratelimit"] = limits
    app.extensions["todo_ratelimit_policy"] = limits.policy_header
    app.before_request(limits.check)
    app.after_request(limits.add_headers)
