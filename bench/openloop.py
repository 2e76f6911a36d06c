"""`python -m bench.openloop`: latency at a fixed offered rate (open loop), coordinated omission corrected.

wrk keeps N requests in flight and sends the next only when one returns (a closed loop): when the
service stalls, wrk stops sending, so the stall shows in few samples ("coordinated omission") and the
latency mostly measures queueing at N in flight. Here requests are due at a constant rate, one every
1/rate seconds whatever the answers do (as wrk2 does; wrk2 is not packaged for Debian), and each
request's latency runs from the moment it was due, not from the moment a connection was free to send
it: a stall counts for every request that should have gone out meanwhile.

For each scenario: its peak (wrk, closed loop, as `make bench`), then the open loop at 50% and 80% of
that peak, reporting p50/p99/p99.9 and the rate actually achieved. The generator is asyncio on uvloop
with a fixed set of keep-alive connections on the same host as the service, so it takes CPU from it
as wrk does. Results: bench/results/<time>-openloop.json.
"""

import argparse
import asyncio
import json
import random
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import data, service, wrk  # noqa: E402
from bench.run import LOG_DIR, service_env  # noqa: E402
from todo_service.migrate import migrate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
UPDATE_BODY = b'{"title": "Renamed by the benchmark", "description": "Updated by bench/openloop.py"}'
CREATE_BODY = b'{"title": "Benchmark task", "description": "Created by bench/openloop.py"}'
SCENARIOS = {  # name -> the wrk script that measures its peak (request_maker makes the same requests)
    "get": "get.lua", "create": "create.lua", "update": "update.lua", "toggle": "toggle.lua",
    "list-page": "list_page.lua",
}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of each open-loop run (default 15)")
    parser.add_argument("--peak-duration", type=int, default=8, help="seconds of each peak (wrk) run (default 8)")
    parser.add_argument("--loads", default="0.5,0.8", help="shares of the peak to offer (default 0.5,0.8)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections of the generator")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma list of {','.join(SCENARIOS)}")
    parser.add_argument("--label", default="", help="a name for this run, stored in the result")
    args = parser.parse_args(argv)
    args.loads = [float(share) for share in args.loads.split(",")]
    args.scenarios = args.scenarios.split(",")
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    return args


def request_maker(name, seeded):
    """A function returning the next request's bytes for scenario `name`, as its wrk script makes them."""
    def random_task():
        number = random.randint(1, seeded.users)
        return f"{data.USER_PREFIX}{number}", seeded.first_id + (number - 1) * seeded.tasks_per_user + \
            random.randrange(seeded.tasks_per_user)

    def http(method, path, body=b""):
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return head.encode() + b"\r\n" + body

    if name == "get":
        return lambda: http("GET", "/api/{}/tasks/{}".format(*random_task()))
    if name == "update":
        return lambda: http("PUT", "/api/{}/tasks/{}".format(*random_task()), UPDATE_BODY)
    if name == "toggle":
        return lambda: http("PATCH", "/api/{}/tasks/{}/complete".format(*random_task()))
    if name == "create":
        return lambda: http("POST", f"/api/{data.NEW_USER_PREFIX}{random.randint(1, seeded.users)}/tasks", CREATE_BODY)
    return lambda: http("GET", f"/api/{data.BIG_USER}/tasks?limit=50")


async def _exchange(reader, writer, payload):
    """Send one request, read its answer whole; the status code."""
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def open_loop(port, make_request, rate, duration, connections):
    """Offer `rate` requests a second for `duration` seconds; (latencies in seconds, errors, achieved rate)."""
    idle = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies, errors, pending = [], [0], set()

    async def one(due, payload):
        reader, writer = await idle.get()  # waiting for a free connection counts: it is the service's backlog
        try:
            status = await _exchange(reader, writer, payload)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors[0] += 1
            writer.close()
            idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
            return
        latencies.append(time.perf_counter() - due)
        if status >= 300:
            errors[0] += 1
        idle.put_nowait((reader, writer))

    interval, start = 1.0 / rate, time.perf_counter()
    total = int(rate * duration)
    for number in range(total):
        due = start + number * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due, make_request()))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait()[1].close()
    return latencies, errors[0], len(latencies) / elapsed


def percentile(sorted_values, share):
    """The value below which `share` of `sorted_values` lie (nearest rank)."""
    index = min(len(sorted_values) - 1, max(0, round(share * len(sorted_values)) - 1))
    return sorted_values[index]


def main(argv=None):
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    database = service.make_database()
    rows = []
    with ExitStack() as stack, (LOG_DIR / f"{stamp}-openloop-wrk.log").open("a") as wrk_log:
        stack.callback(database.close)
        url = database.open()
        migrate(url)
        seeded = data.seed(url, 100, 100, 10_000)
        log = LOG_DIR / f"{stamp}-openloop-gunicorn.log"
        server = stack.enter_context(service.Gunicorn("wsgi:app", service_env(url), log))
        monitor = service.ProcessMonitor(database).start()
        stack.callback(monitor.close)
        for name in args.scenarios:
            monitor.wait_idle(server.pid)
            peak = wrk.run(SCENARIOS[name], server.url, duration=args.peak_duration, connections=100, threads=2,
                           timeout=30, env=seeded.lua_env(), log=wrk_log)["rps"]
            for share in args.loads:
                monitor.wait_idle(server.pid)  # what wrk left in flight is worked off before the clock starts
                latencies, errors, achieved = uvloop.run(open_loop(
                    server.port, request_maker(name, seeded), peak * share, args.duration, args.connections))
                latencies.sort()
                row = {"scenario": name, "peak_rps": round(peak, 1), "share": share,
                       "offered_rps": round(peak * share, 1), "achieved_rps": round(achieved, 1), "errors": errors,
                       **{key: round(percentile(latencies, q) * 1000, 2) for key, q in
                          (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999))}}
                rows.append(row)
                print(f"{name:<10} {share:>4.0%} of {peak:>7,.0f} req/s: achieved {achieved:>7,.0f}, "
                      f"p50 {row['p50_ms']:>7.2f} ms, p99 {row['p99_ms']:>8.2f} ms, p99.9 {row['p999_ms']:>8.2f} ms, "
                      f"errors {errors}", flush=True)
    path = RESULTS / f"{stamp}-openloop{f'-{args.label}' if args.label else ''}.json"
    path.write_text(json.dumps({"stamp": stamp, "label": args.label, "duration": args.duration,
                                "connections": args.connections, "rows": rows}, indent=1) + "\n")
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
