"""The scenarios, their Lua scripts and the targets each is held to."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One goal: `metric` of a result at most (or at least) `limit`."""

    metric: str  # a key of the summary: p50_ms, p95_ms, p99_ms, errors, fraction, relative, compared_share, ...
    limit: float
    at_least: bool = False
    unit: str = ""

    def describe(self):
        if self.metric == "errors":
            return "no errors"
        label = {"fraction": "share of ceiling", "service_rss_mb": "service RSS",
                 "relative": "req/s as a share of its compared scenario's",
                 "compared_share": "compared scenario's req/s as a share of this one's"}.get(self.metric, self.metric)
        label = label.removesuffix("_ms")
        shares = ("fraction", "relative", "compared_share")
        limit = f"{self.limit:.0%}" if self.metric in shares else f"{self.limit:g}{self.unit}"
        return f"{label} {'>=' if self.at_least else '<='} {limit}"

    def check(self, summary):
        """{target, value, passed} for this goal against a result's summary."""
        value = summary.get(self.metric)
        passed = value is not None and (value >= self.limit if self.at_least else value <= self.limit)
        return {"target": self.describe(), "metric": self.metric, "limit": self.limit, "value": value,
                "passed": passed}


ZERO_ERRORS = Target("errors", 0)
WITH_AUTH = Target("relative", 0.9, at_least=True)  # req/s of the same load without authentication
WITH_LIMITS = Target("relative", 0.9, at_least=True)  # req/s of the same load with rate limits off
# On a -nometrics scenario: the same load with metrics on (its compared scenario) keeps 95% of its req/s.
METRICS_COST = Target("compared_share", 0.95, at_least=True)
NEAR_LIST_100 = Target("relative", 0.8, at_least=True)  # req/s of list-100
AS_FAST_AS_GET = Target("relative", 0.9, at_least=True)  # req/s of get
NEAR_CREATE = Target("relative", 0.8, at_least=True)  # req/s of create
NEAR_GET = Target("relative", 0.8, at_least=True)  # req/s of get
WITH_WAITERS = Target("relative", 0.9, at_least=True)  # req/s of the same load without idle long-polls
PROMPT_WAKE = Target("wake_p99_ms", 250, unit=" ms")  # a write to a waiting user, until its long-poll answers


def p99(ms):
    return Target("p99_ms", ms, unit=" ms")


@dataclass(frozen=True)
class Scenario:
    """One load: a Lua script under bench/ and the targets its result is held to."""

    name: str
    script: str
    title: str
    targets: tuple[Target, ...] = ()
    uses_delete_pool: bool = False
    auth: bool = False  # served with authentication on: EdDSA bearer tokens checked against a key set
    limits: str = ""  # served with rate limits on (nothing is refused), counted in "memory", "redis" or "redis-unix"
    metrics: bool = True  # served with METRICS_ENABLED (the default); False: the -nometrics scenarios
    relative_to: str = ""  # the scenario whose req/s this one is compared with (`relative` metric)
    uses_deep_page: bool = False  # needs BENCH_DEEP_PAGE: a page from the middle of the big user's list
    feed: str = ""  # bench/feed.py: "delta" (a since token per user), "waiters" (idle long-polls held meanwhile)

    def evaluate(self, summary):
        """Every target's verdict; zero errors is always one of them."""
        return [target.check(summary) for target in (ZERO_ERRORS, *self.targets)]


# The HTTP ceiling: bench/baseline_app.py answers get.lua's requests with one constant task.
BASELINE = Scenario("baseline", "get.lua", "Baseline: bare WSGI app, same gunicorn (the ceiling)")

# In run order: reads first, then writes; creates go to other users, so the lists stay at 100 tasks.
SCENARIOS = (
    Scenario("get", "get.lua", "GET one task", (p99(50), Target("fraction", 0.35, at_least=True))),
    # Authentication on, every request with its user's EdDSA token (bench/tokens.py): at most 10% slower.
    Scenario("get-auth", "get.lua", "GET one task, with authentication", (WITH_AUTH,), auth=True,
             relative_to="get"),
    # Metrics off (METRICS_ENABLED=false): what every other scenario, metrics on, pays for them; at most 5%.
    Scenario("get-nometrics", "get.lua", "GET one task, metrics off", (METRICS_COST,), metrics=False,
             relative_to="get"),
    # Rate limits on, every request counted (bench/run.py sets a limit nothing reaches): at most 10% slower.
    Scenario("get-limited", "get.lua", "GET one task, rate limits in memory", (WITH_LIMITS,), limits="memory",
             relative_to="get"),
    Scenario("get-limited-redis", "get.lua", "GET one task, rate limits in Redis", (WITH_LIMITS,), limits="redis",
             relative_to="get"),
    # The same Redis reached through its Unix socket, as a Redis on the service's own host may be.
    Scenario("get-limited-redis-unix", "get.lua", "GET one task, rate limits in Redis by its Unix socket",
             (WITH_LIMITS,), limits="redis-unix", relative_to="get"),
    Scenario("list-100", "list.lua", "GET a user's 100 tasks", (p99(100),)),
    # A poll of an unchanged list (304) should cost about what a get does.
    Scenario("list-poll", "list_poll.lua", "GET a user's 100 tasks with If-None-Match: 304",
             (p99(50), AS_FAST_AS_GET), relative_to="get"),
    # A 5-task delta of the change feed since a token: about what a get costs.
    Scenario("changes", "changes.lua", "GET the changes since a token: 5 tasks", (p99(50), NEAR_GET),
             relative_to="get", feed="delta"),
    Scenario("list-10k", "list_big.lua", "GET 10,000-task user, pending by title",
             (Target("p95_ms", 500, unit=" ms"),)),
    Scenario("list-page", "list_page.lua", "GET 10,000-task user, first page of 50", (NEAR_LIST_100,),
             relative_to="list-100"),
    Scenario("list-deep", "list_deep.lua", "GET 10,000-task user, page 101 of 200 (cursor)", (NEAR_LIST_100,),
             uses_deep_page=True, relative_to="list-100"),
    Scenario("create", "create.lua", "POST a task", (p99(50),)),
    # Keys may not cost a create more than 20%.
    Scenario("create-idem", "create_idem.lua", "POST a task with an Idempotency-Key", (p99(50), NEAR_CREATE),
             relative_to="create"),
    Scenario("update", "update.lua", "PUT a task", (p99(50),)),
    Scenario("toggle", "toggle.lua", "PATCH a task's completed flag", (p99(50),)),
    Scenario("delete", "delete.lua", "DELETE a task", (p99(50),), uses_delete_pool=True),
    Scenario("mix", "mix.lua", "Mix: 60% get, 20% list, 10% toggle, 10% create"),
    Scenario("mix-nometrics", "mix.lua", "Mix, metrics off", (METRICS_COST,), metrics=False, relative_to="mix"),
    # 200 idle long-polls of the change feed held meanwhile may not slow the mix more than 10%.
    Scenario("changes-wait", "mix.lua", "Mix, with 200 idle long-polls of the change feed",
             (WITH_WAITERS, PROMPT_WAKE), relative_to="mix", feed="waiters"),
    Scenario("mix-auth", "mix.lua", "Mix, with authentication", (WITH_AUTH,), auth=True, relative_to="mix"),
    Scenario("mix-limited", "mix.lua", "Mix, rate limits in memory", (WITH_LIMITS,), limits="memory",
             relative_to="mix"),
    Scenario("mix-limited-redis", "mix.lua", "Mix, rate limits in Redis", (WITH_LIMITS,), limits="redis",
             relative_to="mix"),
    Scenario("mix-limited-redis-unix", "mix.lua", "Mix, rate limits in Redis by its Unix socket", (WITH_LIMITS,),
             limits="redis-unix", relative_to="mix"),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}

# Whole service (gunicorn master + workers), highest RSS seen over every scenario.
SERVICE_RSS = Target("service_rss_mb", 256, unit=" MB")


def select(names):
    """The scenarios named in `names` (comma list, or None for all), always in run order."""
    if not names:
        return SCENARIOS
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    if not wanted:
        raise ValueError("--scenarios names no scenario")
    unknown = [name for name in wanted if name not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    return tuple(scenario for scenario in SCENARIOS if scenario.name in wanted)
