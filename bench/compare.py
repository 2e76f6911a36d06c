"""`python -m bench.compare`: p50/p99 against offered rate, the service against a FastAPI + SQLModel build.

Both builds run at once on one fresh PostgreSQL with the same seeded data: the service under its own
gunicorn.conf.py, bench/fastapi_app.py under uvicorn with as many workers. For each scenario the
service's peak is measured first (wrk, closed loop, as `make bench`), then each build in turn is
offered the same fixed rates, shares of that peak, by the open-loop generator of bench/openloop.py
(coordinated omission corrected), with both builds idle before each run, up to the first rate a
build falls behind (it achieves under 95% of it, or its median passes a second). Each build's own wrk peak is
recorded beside. Results: bench/results/<time>-compare.json and the plot docs/performance-compare.png.
"""

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import data, service, wrk  # noqa: E402
from bench.openloop import SCENARIOS, open_loop, percentile, request_maker  # noqa: E402
from bench.run import LOG_DIR, service_env  # noqa: E402
from todo_service.migrate import migrate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PLOT = ROOT / "docs" / "performance-compare.png"
BUILDS = ("service", "fastapi")
DEFAULT_SHARES = "0.05,0.1,0.15,0.2,0.25,0.3,0.35,0.4,0.5,0.6,0.7,0.8,0.9"
# A build that achieves under this share of the offered rate, or whose median is past this, is behind:
# its backlog grows for the whole run, and it is offered no higher rate.
SATURATED, SATURATED_P50_MS = 0.95, 1000


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="get,create", help=f"comma list of {','.join(SCENARIOS)}")
    parser.add_argument("--shares", default=DEFAULT_SHARES, help="offered rates as shares of the service's peak")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each open-loop run (default 10)")
    parser.add_argument("--peak-duration", type=int, default=8, help="seconds of each peak (wrk) run (default 8)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections of the generator")
    parser.add_argument("--label", default="", help="a name for this run, stored in the result")
    args = parser.parse_args(argv)
    args.scenarios = args.scenarios.split(",")
    args.shares = [float(share) for share in args.shares.split(",")]
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    return args


def plot(result, path=PLOT):
    """One panel per scenario: p50 and p99 (log scale) against the offered rate, one colour per build."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(row["scenario"] for row in result["rows"]))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.5 * len(scenarios), 4.4), dpi=110, squeeze=False)
    colours = {"service": "#1f77b4", "fastapi": "#ff7f0e"}
    names = {"service": "this service (Flask, gunicorn)", "fastapi": "FastAPI + SQLModel (uvicorn)"}
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        for build in BUILDS:
            rows = [r for r in result["rows"] if r["scenario"] == scenario and r["build"] == build]
            rates = [r["offered_rps"] for r in rows]
            ax.plot(rates, [r["p50_ms"] for r in rows], "--o", color=colours[build], markersize=3,
                    label=f"{names[build]} p50")
            ax.plot(rates, [r["p99_ms"] for r in rows], "-o", color=colours[build], markersize=3,
                    label=f"{names[build]} p99")
        ax.set_yscale("log")
        ax.set_title(f"{scenario}: latency at a fixed offered rate")
        ax.set_xlabel("offered req/s (open loop)")
        ax.set_ylabel("ms from when the request was due")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"bench/results/{result['file']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    database = service.make_database()
    rows, peaks = [], {}
    with ExitStack() as stack, (LOG_DIR / f"{stamp}-compare-wrk.log").open("a") as wrk_log:
        stack.callback(database.close)
        url = database.open()
        migrate(url)
        seeded = data.seed(url, 100, 100, 10_000)
        env = service_env(url)
        servers = {
            "service": stack.enter_context(service.Gunicorn("wsgi:app", env,
                                                            LOG_DIR / f"{stamp}-compare-gunicorn.log")),
            "fastapi": stack.enter_context(service.Uvicorn("bench.fastapi_app:app", env,
                                                           LOG_DIR / f"{stamp}-compare-uvicorn.log",
                                                           workers=os.cpu_count())),
        }
        monitor = service.ProcessMonitor(database).start()
        stack.callback(monitor.close)

        def idle():
            for server in servers.values():
                monitor.wait_idle(server.pid)

        for name in args.scenarios:
            for build, server in servers.items():
                idle()
                peaks[name, build] = wrk.run(SCENARIOS[name], server.url, duration=args.peak_duration,
                                             connections=100, threads=2, timeout=30, env=seeded.lua_env(),
                                             log=wrk_log)["rps"]
                print(f"{name:<10} {build:<8} peak {peaks[name, build]:>7,.0f} req/s (wrk, 100 connections)",
                      flush=True)
            saturated = set()  # builds that fell behind an offered rate: a higher one only queues longer
            for share in args.shares:
                rate = peaks[name, "service"] * share
                for build, server in servers.items():
                    if build in saturated:
                        continue
                    idle()
                    latencies, errors, achieved = uvloop.run(open_loop(
                        server.port, request_maker(name, seeded), rate, args.duration, args.connections))
                    latencies.sort()
                    row = {"scenario": name, "build": build, "share": share, "offered_rps": round(rate, 1),
                           "achieved_rps": round(achieved, 1), "errors": errors,
                           **{key: round(percentile(latencies, q) * 1000, 2) for key, q in
                              (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999))}}
                    rows.append(row)
                    if achieved < SATURATED * rate or row["p50_ms"] > SATURATED_P50_MS:
                        saturated.add(build)
                    print(f"{name:<10} {build:<8} {rate:>7,.0f} req/s offered: achieved {achieved:>7,.0f}, "
                          f"p50 {row['p50_ms']:>8.2f} ms, p99 {row['p99_ms']:>9.2f} ms, errors {errors}", flush=True)
    name = f"{stamp}-compare{f'-{args.label}' if args.label else ''}.json"
    result = {"file": name, "stamp": stamp, "label": args.label, "duration": args.duration,
              "connections": args.connections, "workers": os.cpu_count(),
              "peaks": [{"scenario": s, "build": b, "rps": round(r, 1)} for (s, b), r in peaks.items()],
              "rows": rows}
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    plot(result)
    print(f"results: bench/results/{name}; plot: {PLOT.relative_to(ROOT)}")
    # The FastAPI build may fail when overloaded; the service may not.
    return 1 if any(row["errors"] for row in rows if row["build"] == "service") else 0


if __name__ == "__main__":
    sys.exit(main())
