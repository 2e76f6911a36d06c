"""`python -m bench.floor`: the service's CPU per request beside the floor of its own stack, in rounds.

Each load is get.lua's requests (one random seeded task each), served with the service's
gunicorn.conf.py by, from the bottom up:

- `baseline`: a bare WSGI app answering a constant task (bench/baseline_app.py), gunicorn's own cost;
- `flask`: the same constant task from a route of a bare Flask app (bench/floor_app.py);
- `flask-pg`: that route reading the task with the service's statement through a psycopg pool;
- `get` and `get-auth`: the service itself, as configured, and with authentication on.

The loads run in rounds, the order rotating from round to round, every server started once before
the first. Each row's step over the row before it is what that layer costs per request. Results:
bench/results/<time>-floor.json and a table on stdout.
"""

import argparse
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import data, scenarios, service  # noqa: E402
from bench.costs import add_round_options, rounds_bench, write_result  # noqa: E402
from bench.run import LOG_DIR, service_env  # noqa: E402
from todo_service.migrate import migrate  # noqa: E402

# load name -> (gunicorn app or None for the service, what the step over the row before it is)
FLOORS = {
    "baseline": ("bench.baseline_app:app", "gunicorn's gthread worker and a bare WSGI app"),
    "flask": ("bench.floor_app:flask_app", "Flask: routing, request context, response"),
    "flask-pg": ("bench.floor_app:pg_app", "one pooled psycopg read and orjson"),
    "get": (None, "the service's own code: hooks, log line, metrics, ETag, checks"),
    "get-auth": (None, "authentication (a remembered token)"),
}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    add_round_options(parser, rounds=3, duration=12, warmup=4, order="rotating")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration at least 1")
    return args


def summarize(rounds):
    """Per load: the medians over the rounds, and the step in CPU per request over the row before."""
    rows, below = [], None
    for name, (_, step) in FLOORS.items():
        cpu = statistics.median(r[name]["service_cpu_ms"] for r in rounds)
        rows.append({"load": name, "step": step, "rps": round(statistics.median(r[name]["rps"] for r in rounds)),
                     "cpu_ms": round(cpu, 3), "cpu_ms_rounds": [r[name]["service_cpu_ms"] for r in rounds],
                     "step_ms": None if below is None else round(cpu - below, 3),
                     "errors": sum(r[name]["errors"] for r in rounds)})
        below = cpu
    return rows


def table(rows):
    lines = ["| load | req/s | service CPU ms/request (per round) | step | what the step is |",
             "|---|---:|---:|---:|---|"]
    for row in rows:
        step = "" if row["step_ms"] is None else f"{row['step_ms']:+.3f}"
        rounds = " ".join(f"{x:.2f}" for x in row["cpu_ms_rounds"])
        lines.append(f"| {row['load']} | {row['rps']:,} | {row['cpu_ms']:.3f} ({rounds}) | {step} | {row['step']} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    bench, stamp = rounds_bench(args)
    loads = {name: scenarios.Scenario(name, "get.lua", step) for name, (_, step) in FLOORS.items()}
    database = service.make_database()
    with ExitStack() as stack:
        stack.callback(database.close)
        url = database.open()
        migrate(url)
        seeded = data.seed(url, 100, 100, 0)  # get.lua's users and tasks, as make bench seeds them; no big list
        monitor = service.ProcessMonitor(database).start()
        stack.callback(monitor.close)
        env, lua_env = service_env(url), seeded.lua_env()
        servers = {}
        for name, (app, _) in FLOORS.items():
            if app is None:
                servers[name] = bench.serve(stack, env, lua_env, seeded, name == "get-auth", "direct")
            else:
                log = LOG_DIR / f"{stamp}-gunicorn-floor-{name}.log"
                gunicorn = service.Gunicorn(app, {**env, "MIGRATE_ON_START": "false"}, log)
                servers[name] = stack.enter_context(gunicorn), lua_env
        rounds, names = [], list(FLOORS)
        for number in range(args.rounds):
            print(f"round {number + 1}/{args.rounds}:", flush=True)
            order = names[number % len(names):] + names[:number % len(names)]
            measured = {}
            for name in order:
                server, load_env = servers[name]
                measured[name] = bench.load(loads[name], server.url, load_env, monitor, server.pid)["summary"]
            rounds.append(measured)
    rows = summarize(rounds)
    path = write_result("floor", args, stamp, "loads", rows)
    print()
    print(table(rows))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0 if not any(row["errors"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
