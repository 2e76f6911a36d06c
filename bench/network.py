"""`make bench-network`: every scenario at several one-way delays, directly and through PgBouncer; one table.

    python -m bench.network --latencies 0,1,5 --duration 10 --warmup 2

Any option of `python -m bench.run` passes through (`--scenarios`, `--connections`, `--label`, ...),
except `--db-latency-ms` and `--pooler`, which this driver sets for each path. One fresh database,
seed and ceiling serve every path; each path gets its own gunicorn, proxy and PgBouncer. Every
path goes through the proxy, 0 ms included, so the proxy's own CPU is in every row alike. The
table goes into docs/performance.md between its bench-network markers, each path's result into
bench/results/.
"""

import argparse
import signal
import sys
import time

from bench import report, run, service, wrk

MODES = {"direct": False, "pgbouncer": True}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.network", description=__doc__.splitlines()[0],
                                     epilog="Other options pass through to python -m bench.run (see its --help), "
                                            "e.g. --duration 10 --warmup 2 --scenarios get,mix --label NAME.")
    parser.add_argument("--latencies", default="0,1,5", help="one-way delays in ms, comma list (default 0,1,5)")
    parser.add_argument("--modes", default="direct,pgbouncer", help="direct, pgbouncer or both (default both)")
    args, rest = parser.parse_known_args(argv)
    if any(option.startswith(("--db-latency-ms", "--pooler")) for option in rest):
        parser.error("--db-latency-ms and --pooler are set per path; use --latencies and --modes")
    try:
        latencies = [float(value) for value in args.latencies.split(",") if value.strip()]
    except ValueError:
        parser.error(f"--latencies {args.latencies!r} is not a comma list of numbers")
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not latencies or not modes or any(mode not in MODES for mode in modes) or min(latencies) < 0:
        parser.error("--latencies needs delays >= 0 and --modes direct and/or pgbouncer")
    paths = [service.DatabasePath(latency, MODES[mode]) for mode in modes for latency in latencies]
    return run.parse_args(rest), paths


def main(argv=None):
    args, paths = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        wrk.require_wrk()
    except wrk.WrkError as exc:
        print(exc, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, run._terminate)  # unwinds like Ctrl-C: everything started is stopped
    run.LOG_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    print(f"paths: {', '.join(path.describe() for path in paths)}", flush=True)
    try:
        results = run.Bench(args, stamp).run_paths(paths)
    except KeyboardInterrupt:
        print("\ninterrupted; gunicorn, the proxy, PgBouncer and PostgreSQL stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:
        print(f"\nbenchmark could not run: {exc}", file=sys.stderr)
        return 2
    for result in results:
        report.write_json(result, latest=False)
    print()
    print(report.network_text_table(results))
    failed = [result for result in results if not result["passed"]]
    for result in failed:
        run.report_failures(result)
    if failed:  # as with bench.run: a run with failed requests leaves the docs on the last good one
        print(f"\nresults: bench/results/{stamp}-*.json (docs/performance.md left as it was)")
        return 1
    report.write_network_doc(results)
    print(f"\nresults: bench/results/{stamp}-*.json; table: docs/performance.md (section \"Across a network\")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
