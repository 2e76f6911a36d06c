"""`make bench`: fresh database, seed, ceiling, every scenario under wrk, then the report.

Exit status: 0 when every load answered only 2xx without socket errors, 1 when any did not
(speed and memory targets are reported, never enforced), 2 when the benchmark itself could not run.
"""

import argparse
import math
import multiprocessing
import os
import platform
import re
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/, not the project root, on sys.path
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from dotenv import dotenv_values  # noqa: E402

from bench import data, feed, profile, report, scenarios, service, tokens, wrk  # noqa: E402
from todo_service.config import load_settings  # noqa: E402
from todo_service.migrate import migrate  # noqa: E402

LOG_DIR = ROOT / ".data" / "bench-logs"  # git-ignored; gunicorn's and wrk's output of every run
QUICK = {"duration": 3, "warmup": 1}
FULL = {"duration": 30, "warmup": 5}
LIMIT_NOTHING_REACHES = "1000000000/hour"  # the -limited scenarios: every request counted, none refused


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, help="seconds per scenario (default 30; 3 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up before each (default 5; 1 with --quick)")
    parser.add_argument("--connections", type=int, default=100, help="concurrent connections (default 100)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--timeout", type=int, default=30,
                        help="seconds before wrk counts a request as timed out (default 30, gunicorn's own timeout)")
    parser.add_argument("--scenarios", help=f"comma list of {','.join(scenarios.BY_NAME)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="about one minute in all: short scenarios, all of them")
    parser.add_argument("--label", default="", help="a name for this run, stored in the result (e.g. pool-max-8)")
    parser.add_argument("--users", type=int, default=100, help="seeded users (default 100)")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per seeded user (default 100)")
    parser.add_argument("--big-tasks", type=int, default=10_000, help="tasks of the one big user (default 10000)")
    parser.add_argument("--db-latency-ms", type=float,
                        help="connect the service through bench/proxy.py, which adds this one-way delay each way "
                             "and counts round trips per request (0: no delay, still counted)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy flame graph of one worker during each measured run, as docs/profiles/<scenario>"
                             "[-<label>].svg (the run's own numbers are then not for comparison)")
    parser.add_argument("--pooler", action="store_true",
                        help="connect the service through a real PgBouncer in transaction mode "
                             "(DATABASE_PGBOUNCER=true); combines with --db-latency-ms")
    args = parser.parse_args(argv)
    if args.db_latency_ms is not None and not 0 <= args.db_latency_ms <= 1000:
        parser.error("--db-latency-ms must be within 0..1000")
    defaults = QUICK if args.quick else FULL
    args.duration = args.duration or defaults["duration"]
    args.warmup = defaults["warmup"] if args.warmup is None else args.warmup
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk gives each thread connections/threads)")
    try:
        args.selected = scenarios.select(args.scenarios)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def service_env(database_url):
    """The inherited environment (tuning variables pass through) with the bench database."""
    env = dict(os.environ, DATABASE_URL=database_url)
    env.pop("DATABASE_URL_DIRECT", None)  # would send migrations elsewhere
    # wrk is one address (and a handful of users) at thousands of requests a second, which any real limit
    # refuses: limits are off but in the -limited scenarios, which set one that nothing reaches.
    env.update(RATE_LIMIT="off", RATE_LIMIT_WRITES="off")
    env.setdefault("SYNC_MAX_WAITERS", str(feed.MAX_WAITERS))  # changes-wait's 200 long-polls, with room
    return env  # production settings: one INFO log line per request is part of what is measured


def settings_in_force(env):
    """The service's settings as gunicorn will read them (.env under the environment), for the record."""
    dotenv = {key: value for key, value in dotenv_values(ROOT / ".env").items() if value is not None}
    settings = load_settings({**dotenv, **env})
    return {
        "workers": settings.web_concurrency or multiprocessing.cpu_count(),  # as gunicorn.conf.py
        "worker_class": settings.worker_class,
        "threads": settings.threads,
        "pool_min_size": settings.pool_min_size,
        "pool_max_size": settings.pool_max_size,
        "pool_check": settings.pool_check,
        "prepare_threshold": settings.prepare_threshold,
        "pgbouncer": settings.pgbouncer,
        "pgbouncer_prepared": settings.pgbouncer_prepared,
        "statement_timeout_ms": settings.statement_timeout_ms,
        "log_level": settings.log_level,
        "rate_limit": settings.rate_limit,
        "sync_max_waiters": settings.sync_max_waiters,
    }


def summarize(loads, peaks, ceiling_rps, cpu_used):
    """The numbers a load is judged by: the measured run's speed, errors of warm-up and run together."""
    measured = loads[-1]
    per_request = 1000 / max(measured["issued"], 1)  # sent, answered or not: the server did them all
    problems = {}
    for load in loads:
        for kind, count in load["errors"].items():
            if kind != "wrk_status":  # wrk's count of >= 400, already inside non2xx
                problems[kind] = problems.get(kind, 0) + count
        if load["exhausted"]:
            problems["ids_exhausted"] = problems.get("ids_exhausted", 0) + 1
        if load["requests"] == 0:  # nothing answered within the run: no number here means anything
            problems["no_responses"] = problems.get("no_responses", 0) + 1
    statuses = {}
    for load in loads:
        for status, count in load["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    latency = measured["latency_ms"]
    return {
        "rps": round(measured["rps"], 1),
        "requests": measured["requests"],
        "p50_ms": round(latency["p50"], 2),
        "p95_ms": round(latency["p95"], 2),
        "p99_ms": round(latency["p99"], 2),
        "max_ms": round(latency["max"], 2),
        "errors": sum(problems.values()),
        "error_kinds": {kind: count for kind, count in problems.items() if count},
        "statuses": statuses,
        "failure_samples": [sample for load in loads for sample in load["failure_samples"]][:5],
        "service_rss_mb": peaks.service_mb,
        "service_pss_mb": peaks.service_pss_mb,
        "database_rss_mb": peaks.database_mb,
        "database_pss_mb": peaks.database_pss_mb,
        "fraction": round(measured["rps"] / ceiling_rps, 4) if ceiling_rps else None,
        # CPU ms per request sent in the measured run: comparable across runs even on a busy machine.
        "service_cpu_ms": round(cpu_used[0] * per_request, 3),
        "database_cpu_ms": round(cpu_used[1] * per_request, 3) if peaks.database_mb is not None else None,
    }


class Bench:
    """One benchmark run: its options, its log files, and how to measure one load."""

    def __init__(self, args, stamp):
        self.args = args
        self.stamp = stamp
        self.wrk_log = (LOG_DIR / f"{stamp}-wrk.log").open("a")

    def load(self, scenario, url, lua_env, monitor, service_pid, ceiling_rps=None, path=None):
        """Warm up, then measure `scenario`; returns its result entry. With a proxy in `path`, also
        the round trips to PostgreSQL per request of the measured run."""
        args = self.args
        options = {"connections": args.connections, "threads": args.threads, "timeout": args.timeout,
                   "log": self.wrk_log}
        print(f"  {scenario.name:<9} {args.warmup}s warm-up + {args.duration}s ...", end=" ", flush=True)
        with monitor.window(service_pid) as peaks:
            loads, backlog = [], []
            monitor.wait_idle(service_pid)  # workers still booting, or the previous scenario's backlog
            if args.warmup:
                loads.append(wrk.run(scenario.script, url, duration=args.warmup, env=lua_env, **options))
                if scenario.uses_delete_pool:  # the measured run continues after the ids warm-up sent
                    lua_env = {**lua_env, "BENCH_DELETE_FIRST": str(loads[-1]["cursor"] + 1)}
                backlog.append(monitor.wait_idle(service_pid))
            cpu_before = monitor.cpu(service_pid)
            wire_before = path.counts() if path else None
            recorders = (profile.start(service_pid, scenario.name, args.duration, args.label, LOG_DIR)
                         if args.profile else [])
            loads.append(wrk.run(scenario.script, url, duration=args.duration, env=lua_env, **options))
            profile.finish(recorders)
            backlog.append(monitor.wait_idle(service_pid))
            # From an idle start to idle again: the CPU of exactly the requests this run sent.
            cpu_used = [after - before for after, before in zip(monitor.cpu(service_pid), cpu_before, strict=True)]
            wire = path.counts() - wire_before if wire_before is not None else None
        summary = summarize(loads, peaks, ceiling_rps, cpu_used)
        summary["backlog_s"] = max(backlog)
        if wire is not None:  # per request sent, like the CPU: the server did them all
            summary["round_trips_per_request"] = round(wire.round_trips / max(loads[-1]["issued"], 1), 3)
            summary["db_delay_ms"] = None if wire.mean_delay_ms is None else round(wire.mean_delay_ms, 2)
            summary["proxy_cpu_ms"] = round(wire.cpu_s * 1000 / max(loads[-1]["issued"], 1), 3)
        trips = f", {summary['round_trips_per_request']:g} round trips/request" if wire is not None else ""
        print(f"{summary['rps']:,.0f} req/s, p99 {summary['p99_ms']:,.1f} ms, errors {summary['errors']}, "
              f"{summary['backlog_s']}s to idle{trips}", flush=True)
        return {"name": scenario.name, "title": scenario.title, "script": scenario.script,
                "summary": summary, "targets": scenario.evaluate(summary), "raw": loads}

    def serve(self, stack, env, lua_env, seeded, auth, path_name, limits="", metrics=True):
        """(gunicorn, wrk environment) for the service; with `auth`, a key set to verify and tokens to send;
        with `limits`, rate limits on in that store ("memory"; "redis" or "redis-unix", a Redis started here
        and reached by TCP on 127.0.0.1 or by its Unix socket); without
        `metrics`, METRICS_ENABLED=false."""
        if auth:
            jwks_url, private = stack.enter_context(tokens.key_set())
            path = tokens.write_tokens(LOG_DIR / f"{self.stamp}-tokens.txt", private, seeded.user_ids())
            env, lua_env = {**env, "AUTH_JWKS_URL": jwks_url}, {**lua_env, "BENCH_TOKENS": str(path)}
        if limits:
            store = "memory://" if limits == "memory" else stack.enter_context(
                service.redis_server(unix_socket=limits == "redis-unix"))
            env = {**env, "RATE_LIMIT": LIMIT_NOTHING_REACHES, "RATE_LIMIT_WRITES": LIMIT_NOTHING_REACHES,
                   "RATE_LIMIT_STORAGE_URL": store}
        if not metrics:
            env = {**env, "METRICS_ENABLED": "false"}
        variant = "".join(("-auth" if auth else "", f"-limited-{limits}" if limits else "",
                           "" if metrics else "-nometrics"))
        log = LOG_DIR / f"{self.stamp}-gunicorn-service-{path_name}{variant}.log"
        print(f"service: gunicorn wsgi:app{' with authentication' if auth else ''}"
              f"{f', rate limits in {limits}' if limits else ''}{'' if metrics else ', metrics off'} "
              f"(log {log.relative_to(ROOT)})", flush=True)
        return stack.enter_context(service.Gunicorn("wsgi:app", env, log)), lua_env

    def load_feed(self, scenario, server, lua_env, monitor, ceiling, path, database_url, seeded):
        """A change-feed scenario (bench/feed.py): with a since token per user that answers a small delta,
        or with idle long-polls held on the service during the load and the wake-up probe after it."""
        if scenario.feed == "delta":
            since = feed.delta_tokens(server.url, seeded, LOG_DIR / f"{self.stamp}-since.txt")
            lua_env = {**lua_env, "BENCH_SINCE_TOKENS": str(since)}
            return self.load(scenario, server.url, lua_env, monitor, server.pid, ceiling, path)
        # What holding them costs when nothing else runs, over a whole cycle of their timeouts (steadier
        # than the req/s of two loads on a shared host): CPU per second with them, less without.
        quiet = feed.idle_cpu(monitor, server.pid, 2 if self.args.quick else 5)
        with feed.Waiters(server.url, database_url) as waiters:
            held = feed.idle_cpu(monitor, server.pid, 2 if self.args.quick else feed.WAIT_SECONDS)
            row = self.load(scenario, server.url, lua_env, monitor, server.pid, ceiling, path)
            waiters.probe(row, feed.QUICK_SAMPLES if self.args.quick else feed.SAMPLES)
        row["summary"]["waiters_cpu_ms_per_s"] = [round(h - q, 2) for h, q in zip(held, quiet, strict=True)]
        row["targets"] = scenario.evaluate(row["summary"])
        return row

    def delete_pool_env(self, database_url, ceiling_rps):
        """Seed fresh tasks for warm-up plus run. Sized by the ceiling, which no scenario can outrun
        (deletes reach about a fifth of it), since a scenario's own rate is unknown beforehand."""
        count = math.ceil(ceiling_rps * (self.args.warmup + self.args.duration)) + 1000
        first, last = data.seed_delete_pool(database_url, count)
        return {"BENCH_DELETE_USER": data.DELETE_USER, "BENCH_DELETE_FIRST": str(first),
                "BENCH_DELETE_LAST": str(last)}

    def run(self):
        """Everything from a fresh database to the result dict, on the path the options ask for."""
        return self.run_paths([service.DatabasePath(self.args.db_latency_ms, self.args.pooler)])[0]

    def run_paths(self, paths):
        """One fresh database, seed and ceiling, then every scenario on each of `paths` in turn; a result
        dict per path. Always stops what it started."""
        args = self.args
        database = service.make_database()
        monitor = None
        try:
            print(f"database: fresh {database.kind} PostgreSQL ...", flush=True)
            url = database.open()
            migrate(url)
            started = time.monotonic()
            seeded = data.seed(url, args.users, args.tasks, args.big_tasks)
            print(f"seeded {args.users} users x {args.tasks} tasks + 1 x {args.big_tasks} tasks "
                  f"in {time.monotonic() - started:.1f}s", flush=True)
            monitor = service.ProcessMonitor(database).start()
            env = service_env(url)
            lua_env = seeded.lua_env()

            # The baseline app needs no migrations; on_starting still checks DATABASE_URL, which is up.
            baseline_env = {**env, "MIGRATE_ON_START": "false"}
            log = LOG_DIR / f"{self.stamp}-gunicorn-baseline.log"
            print(f"ceiling: gunicorn bench.baseline_app:app (log {log.relative_to(ROOT)})", flush=True)
            with service.Gunicorn("bench.baseline_app:app", baseline_env, log) as server:
                baseline = self.load(scenarios.BASELINE, server.url, lua_env, monitor, server.pid)
            return [self.measure_path(path, url, baseline, seeded, lua_env, monitor, database.kind)
                    for path in paths]
        finally:
            if monitor is not None:
                monitor.close()
            database.close()
            self.wrk_log.close()

    def measure_path(self, path, url, baseline, seeded, lua_env, monitor, database_kind):
        """Every selected scenario against a gunicorn that reaches the database at `url` through `path`."""
        ceiling = baseline["summary"]["rps"]
        try:
            service_url, path_env = path.open(url)
            env = {**service_env(service_url), **path_env}
            print(f"database path: {path.describe()}", flush=True)
            results = []
            with ExitStack() as stack:  # the service as configured and, for the auth scenarios, with auth on
                variants = sorted({(s.auth, s.limits, s.metrics) for s in self.args.selected})
                servers = {(auth, limits, metrics): self.serve(stack, env, lua_env, seeded, auth, path.name,
                                                               limits, metrics)
                           for auth, limits, metrics in variants}
                for scenario in self.args.selected:  # in run order: each variant right after its plain one
                    server, scenario_env = servers[scenario.auth, scenario.limits, scenario.metrics]
                    if scenario.uses_delete_pool:
                        scenario_env = {**scenario_env, **self.delete_pool_env(url, ceiling)}
                    if scenario.uses_deep_page:
                        deep = data.middle_page(server.url, data.BIG_USER, seeded.big_tasks, scenario_env)
                        scenario_env = {**scenario_env, "BENCH_DEEP_PAGE": deep}
                    if scenario.feed:
                        results.append(self.load_feed(scenario, server, scenario_env, monitor, ceiling, path, url,
                                                      seeded))
                    else:
                        results.append(self.load(scenario, server.url, scenario_env, monitor, server.pid, ceiling,
                                                 path))
            compare(results)
        finally:
            path.close()
        result = self.result(baseline, results, seeded, settings_in_force(env), database_kind)
        result["path"] = {"name": path.name, "latency_ms": path.latency_ms, "pooler": path.pooler,
                          "description": path.describe()}
        if path.name != "direct":
            result["file"] = result["file"].replace(".json", f"-{path.name}.json")
        return result

    def result(self, baseline, results, seeded, settings, database_kind):
        args = self.args
        peak = max((r["summary"]["service_rss_mb"] or 0 for r in results), default=None)
        rss = scenarios.SERVICE_RSS.check({"service_rss_mb": peak})
        rss["pss_mb"] = max((r["summary"]["service_pss_mb"] or 0 for r in results), default=None)
        label = re.sub(r"[^A-Za-z0-9._-]+", "-", args.label).strip("-")
        return {
            "file": f"{self.stamp}{'-' + label if label else ''}.json",
            "label": args.label,
            "started_at": self.stamp,
            "git": git_commit(),
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "config": {"duration": args.duration, "warmup": args.warmup, "connections": args.connections,
                       "threads": args.threads, "timeout": args.timeout, "quick": args.quick},
            "seed": {"users": seeded.users, "tasks_per_user": seeded.tasks_per_user, "big_tasks": seeded.big_tasks},
            "database": database_kind,
            "service_settings": settings,
            "baseline": baseline,
            "scenarios": results,
            "service_rss": rss,
            "passed": all(r["summary"]["errors"] == 0 for r in [baseline, *results]),
        }


def compare(results):
    """Each scenario with `relative_to`: its req/s and CPU ms per request as shares of that scenario's
    (and that one's req/s as a share of its own), judged again."""
    by_name = {row["name"]: row["summary"] for row in results}
    for row in results:
        scenario = scenarios.BY_NAME[row["name"]]
        other = by_name.get(scenario.relative_to)
        if other is not None:
            summary = row["summary"]
            summary["relative"] = _share(summary["rps"], other["rps"])
            summary["compared_share"] = _share(other["rps"], summary["rps"])
            summary["cpu_relative"] = _share(summary["service_cpu_ms"], other["service_cpu_ms"])
            row["targets"] = scenario.evaluate(summary)


def _share(part, whole):
    return round(part / whole, 3) if whole else None


def git_commit():
    """Short commit id, with -dirty when the work tree has changes (what was measured)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report_failures(result):
    """Say loudly, on stderr, which loads had errors and what they were."""
    failed = [r for r in [result["baseline"], *result["scenarios"]] if r["summary"]["errors"]]
    lines = ["", "=" * 78, "BENCHMARK FAILED: requests went wrong", "=" * 78]
    for row in failed:
        summary = row["summary"]
        kinds = ", ".join(f"{kind} {count}" for kind, count in summary["error_kinds"].items())
        statuses = ", ".join(f"HTTP {status} x{count}" for status, count in summary["statuses"].items())
        lines.append(f"{row['name']}: {kinds}" + (f" ({statuses})" if statuses else ""))
        lines += [f"    e.g. {sample}" for sample in summary["failure_samples"][:2]]
        if "ids_exhausted" in summary["error_kinds"]:
            lines.append("    the delete scenario ran out of seeded ids: a benchmark sizing problem, not the service's")
    lines.append(f"gunicorn and wrk output: {LOG_DIR.relative_to(ROOT)}/{result['started_at']}-*.log")
    print("\n".join(lines), file=sys.stderr)


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C, so gunicorn and PostgreSQL are stopped


def main(argv=None):
    args = parse_args(argv)
    try:
        wrk.require_wrk()
    except wrk.WrkError as exc:
        print(exc, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        result = Bench(args, stamp).run()
    except KeyboardInterrupt:
        print("\ninterrupted; gunicorn and PostgreSQL stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, psycopg.Error) as exc:  # WrkError is a RuntimeError
        print(f"\nbenchmark could not run: {exc}", file=sys.stderr)
        return 2
    # A run with failed requests measured something else than the API: keep its file as evidence,
    # but leave latest.json and the docs on the last good run. So do quick and partial runs, and runs
    # through the proxy or PgBouncer: the main table holds the latest complete full run, direct.
    complete = (result["passed"] and not args.quick and not args.profile and args.scenarios is None
                and result["path"]["name"] == "direct")
    path = report.write_json(result, latest=complete)
    print()
    print(report.text_table(result))
    if not result["passed"]:
        print(f"\nresults: {path.relative_to(ROOT)} (latest.json and docs/performance.md left as they were)")
        report_failures(result)
        return 1
    if not complete:
        print(f"\nresults: {path.relative_to(ROOT)} (a quick, partial or proxied run: latest.json and the main "
              "table unchanged; python -m bench.network writes the network table)")
        return 0
    report.write_chart(result)
    report.write_doc(result)
    print(f"\nresults: {path.relative_to(ROOT)} and latest.json; report: docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
