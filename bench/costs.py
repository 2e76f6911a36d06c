"""`python -m bench.costs`: what metrics and rate limits cost a load, in interleaved rounds.

A feature that costs a few per cent cannot be read from two neighbouring 30 s loads on a shared
2-core host: they differ by more than that on their own (docs/performance.md). So each pair, a load
with the feature and the same load without it, is measured in rounds, the pair's order alternating
from round to round (with, without; without, with; ...) so that neither side always runs first or
right after a write-heavy load. Every service instance is started once, before the first round, and
each load has its own warm-up; the cost is the median over the rounds of the ratio within a round.

Pairs: `metrics` (get and mix against METRICS_ENABLED=false, target: 95% of the req/s), `limits`
(rate limits counted in memory against off, target 90%), `limits-redis` (counted in a Redis started
here, target 90%), `limits-redis-unix` (the same Redis reached by its Unix socket, target 90%).
Results: bench/results/<time>-costs.json and a table on stdout.
"""

import argparse
import statistics
import sys
import time
from argparse import Namespace
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import data, report, scenarios, service, wrk  # noqa: E402
from bench.run import LOG_DIR, Bench, git_commit, service_env  # noqa: E402
from todo_service.migrate import migrate  # noqa: E402

# name -> (target share of req/s, [(the load with the feature, the same load without it)])
PAIRS = {
    "metrics": (0.95, [("get", "get-nometrics"), ("mix", "mix-nometrics")]),
    "limits": (0.90, [("get-limited", "get"), ("mix-limited", "mix")]),
    "limits-redis": (0.90, [("get-limited-redis", "get"), ("mix-limited-redis", "mix")]),
    "limits-redis-unix": (0.90, [("get-limited-redis-unix", "get"), ("mix-limited-redis-unix", "mix")]),
}


def add_round_options(parser, rounds, duration, warmup, order):
    """The options of a run in rounds (bench.costs, bench.floor), with that run's defaults."""
    parser.add_argument("--rounds", type=int, default=rounds, help=f"rounds, the order {order} (default {rounds})")
    parser.add_argument("--duration", type=int, default=duration,
                        help=f"seconds of each measured load (default {duration})")
    parser.add_argument("--warmup", type=int, default=warmup,
                        help=f"seconds of warm-up before each load (default {warmup})")
    parser.add_argument("--connections", type=int, default=100, help="concurrent connections (default 100)")
    parser.add_argument("--label", default="", help="a name for this run, stored in the result")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.costs", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"comma list of {','.join(PAIRS)} (default: all)")
    add_round_options(parser, rounds=4, duration=15, warmup=5, order="alternating")
    args = parser.parse_args(argv)
    args.pair_names = [name.strip() for name in args.pairs.split(",") if name.strip()]
    unknown = [name for name in args.pair_names if name not in PAIRS]
    if unknown or not args.pair_names or args.rounds < 1 or args.duration < 1:
        parser.error(f"--pairs from {', '.join(PAIRS)}; --rounds and --duration at least 1")
    return args


def judge(name, target, feature, base, rounds):
    """One pair's rounds reduced to the medians of the ratios within a round."""
    rps = [r[feature]["rps"] / r[base]["rps"] for r in rounds]
    cpu = [r[feature]["service_cpu_ms"] / r[base]["service_cpu_ms"] for r in rounds]
    share = statistics.median(rps)
    return {"pair": name, "with": feature, "without": base, "target": target,
            "rps_shares": [round(x, 3) for x in rps], "cpu_ratios": [round(x, 3) for x in cpu],
            "rps_share": round(share, 3), "cpu_ratio": round(statistics.median(cpu), 3),
            "rps_with": [r[feature]["rps"] for r in rounds], "rps_without": [r[base]["rps"] for r in rounds],
            "cpu_ms_with": [r[feature]["service_cpu_ms"] for r in rounds],
            "cpu_ms_without": [r[base]["service_cpu_ms"] for r in rounds],
            "errors": sum(r[side]["errors"] for r in rounds for side in (feature, base)),
            "passed": share >= target}


def table(rows):
    lines = ["| with (without) | req/s share per round | median | CPU ratio per round | median | target |",
             "|---|---|---:|---|---:|---|"]
    for row in rows:
        lines.append(f"| {row['with']} ({row['without']}) | {' '.join(f'{x:.0%}' for x in row['rps_shares'])} | "
                     f"{row['rps_share']:.1%} | {' '.join(f'{x:+.0%}' for x in (c - 1 for c in row['cpu_ratios']))} | "
                     f"{row['cpu_ratio'] - 1:+.1%} | {'met' if row['passed'] else 'NOT met'} "
                     f"(>= {row['target']:.0%}) |")
    return "\n".join(lines)


def rounds_bench(args):
    """(a Bench for loads of args.duration after args.warmup at args.connections, its time stamp)."""
    wrk.require_wrk()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return Bench(Namespace(connections=args.connections, threads=2, timeout=30, warmup=args.warmup,
                           duration=args.duration, profile=False, label=args.label), stamp), stamp


def write_result(kind, args, stamp, key, rows):
    """bench/results/<stamp>-<kind>[-<label>].json with the run's settings and `rows` under `key`."""
    result = {"file": f"{stamp}-{kind}{'-' + args.label if args.label else ''}.json", "label": args.label,
              "started_at": stamp, "git": git_commit(),
              "config": {"rounds": args.rounds, "duration": args.duration, "warmup": args.warmup,
                         "connections": args.connections},
              key: rows}
    return report.write_json(result, latest=False)


def main(argv=None):
    args = parse_args(argv)
    bench, stamp = rounds_bench(args)
    wanted = [(name, *PAIRS[name]) for name in args.pair_names]
    loads = sorted({load for _, _, pairs in wanted for pair in pairs for load in pair})
    database = service.make_database()
    with ExitStack() as stack:
        stack.callback(database.close)
        url = database.open()
        migrate(url)
        seeded = data.seed(url, 100, 100, 10_000)  # as make bench seeds
        monitor = service.ProcessMonitor(database).start()
        stack.callback(monitor.close)
        env, lua_env = service_env(url), seeded.lua_env()
        servers = {}
        for name in loads:
            s = scenarios.BY_NAME[name]
            if (s.auth, s.limits, s.metrics) not in servers:
                servers[s.auth, s.limits, s.metrics] = bench.serve(stack, env, lua_env, seeded, s.auth, "direct",
                                                                   s.limits, s.metrics)
        rows = []
        for name, target, pairs in wanted:
            for feature, base in pairs:
                rounds = []
                for number in range(args.rounds):
                    order = (feature, base) if number % 2 == 0 else (base, feature)
                    print(f"{name} round {number + 1}/{args.rounds}:", flush=True)
                    measured = {}
                    for load in order:
                        s = scenarios.BY_NAME[load]
                        server, load_env = servers[s.auth, s.limits, s.metrics]
                        measured[load] = bench.load(s, server.url, load_env, monitor, server.pid)["summary"]
                    rounds.append(measured)
                rows.append(judge(name, target, feature, base, rounds))
                print(table(rows[-1:]), flush=True)
    path = write_result("costs", args, stamp, "pairs", rows)
    print()
    print(table(rows))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0 if all(row["passed"] and not row["errors"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
