"""Turning a run's result into the terminal table, the JSON files, docs/performance.md and its chart.

`python -m bench.report [RESULT.json]` renders the docs again from a stored result (default: latest.json).
"""

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "performance-latency.png"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
COLUMNS = ("scenario", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "service MB RSS (PSS)",
           "PostgreSQL MB RSS (PSS)", "CPU ms/req service+PG", "DB round trips/req", "of ceiling", "targets")

DOC_TEMPLATE = """# Performance

How the task API holds up under load: `make bench` (about 6 minutes: 30 s per scenario after a 5 s
warm-up) or `make bench-quick` (about 1 minute: a smoke run, every scenario but only seconds each).
Both need wrk (`sudo apt-get install wrk`) and install `requirements-bench.txt` into `.venv`.

## How it is measured

`bench/run.py` starts a fresh PostgreSQL (the embedded one in `.data/bench-postgres-<pid>`, removed
afterwards, or a new database on the server of `BENCH_DATABASE_URL`, dropped afterwards), applies
the migrations and seeds 100 users x 100 tasks plus one user with 10,000 tasks. It serves the API
as production does, `gunicorn -c gunicorn.conf.py wsgi:app` on 127.0.0.1 with the production
settings: the defaults (gunicorn's access log off, the service's one `info` log line per request).
Each scenario is driven by wrk from a separate process, 100 connections, with a Lua script from
`bench/`:

| scenario | request | target |
|---|---|---|
| get | `GET /api/{user}/tasks/{id}`, random seeded task | p99 <= 50 ms; >= 35% of the ceiling |
| list-100 | `GET /api/{user}/tasks`, random seeded user (100 tasks) | p99 <= 100 ms |
| list-poll | list-100 with `If-None-Match` of the user's previous answer: 304 | p99 <= 50 ms; >= 90% of get's req/s |
| list-10k | `GET /api/{big user}/tasks?status=pending&sort=title` (6,667 tasks) | p95 <= 500 ms |
| list-page | `GET /api/{big user}/tasks?limit=50`, the first page | >= 80% of list-100's req/s |
| list-deep | `GET /api/{big user}/tasks?…&limit=50&cursor=…`, page 101 of 200 | >= 80% of list-100's req/s |
| create | `POST /api/{user}/tasks`, JSON body (users that are never listed) | p99 <= 50 ms |
| create-idem | create with a new `Idempotency-Key` per request | p99 <= 50 ms; >= 80% of create's req/s |
| update | `PUT /api/{user}/tasks/{id}`, JSON body | p99 <= 50 ms |
| toggle | `PATCH /api/{user}/tasks/{id}/complete` | p99 <= 50 ms |
| delete | `DELETE /api/{user}/tasks/{id}` over ids seeded just before, each sent once | p99 <= 50 ms |
| mix | 60% get, 20% list-100, 10% toggle, 10% create | - |
| get-auth | get, with authentication on: each request carries its user's EdDSA token | >= 90% of get's req/s |
| mix-auth | mix, with authentication on | >= 90% of mix's req/s |
| get-nometrics, mix-nometrics | get, mix with `METRICS_ENABLED=false` | get, mix >= 95% of their req/s |
| get-limited, mix-limited | get, mix, rate limits on in memory (a limit none reaches) | >= 90% of get's, mix's req/s |
| get-limited-redis, mix-limited-redis | the same, counted in a Redis on 127.0.0.1 | >= 90% of get's, mix's req/s |
| get-limited-redis-unix, mix-limited-redis-unix | the same, by its Unix socket | >= 90% of get's, mix's req/s |

Every scenario must answer only 2xx (list-poll also 304), without socket errors: each response's status is checked in
Lua, and any failure fails the run (exit status 1). The other targets, and the service's 256 MB,
are reported but never fail it. A failed run keeps its `bench/results/<time>.json` but leaves
`latest.json` and this page alone, and so does a quick or partial run (`--quick`, `--scenarios`):
this page always shows the latest complete full run.

The ceiling is `bench/baseline_app.py`, a bare WSGI app (no framework, no database) answering get's
requests with one constant task under the same gunicorn settings; each scenario's throughput is
shown as a share of it. Before each warm-up and each measured run the runner waits until gunicorn
and PostgreSQL are idle: wrk hangs up at the end of a run, but the requests it sent are still worked
off, and that backlog must not be measured in the next run.

Memory is sampled every 0.2 s: the service is the gunicorn master plus all its workers, PostgreSQL
the postmaster plus all its children, each summed. RSS counts a shared page once in every process
that touched it (forked interpreter pages; PostgreSQL's shared buffers, in every backend), so the
table also shows PSS, which splits shared pages between the processes: the honest total. The
256 MB target is checked against the service's peak RSS, the stricter of the two. CPU ms per
request (gunicorn's processes, then PostgreSQL's, from the measured run's start until idle again,
per request sent) hardly depends on what else the machine is doing, so it is the number to compare
between tuning runs on a shared host.

Caveats: wrk, gunicorn and PostgreSQL share the machine's cores, so the client takes CPU from the
server; wrk keeps 100 requests in flight (a closed loop), so latency at this concurrency is mostly
time spent queueing, roughly connections / throughput.

Options: `.venv/bin/python -m bench.run --help` (`--duration`, `--warmup`, `--connections`, `--threads`,
`--scenarios get,mix`, `--quick`, `--label NAME`; with make: `make bench BENCH_ARGS="..."`). The
service's tuning variables (`WEB_CONCURRENCY`, `GUNICORN_WORKER_CLASS`, `GUNICORN_THREADS`,
`DB_POOL_MIN_SIZE`, `DB_POOL_MAX_SIZE`, `DB_POOL_CHECK`, `DATABASE_PREPARE_THRESHOLD`, ...) come
from the environment, e.g. `DB_POOL_CHECK=none make bench BENCH_ARGS="--label pool-check-none"`;
the settings in force and the label are stored in `bench/results/*.json`, so runs can be compared.
`.venv/bin/python -m bench.report bench/results/FILE.json` renders this page again from any stored run.

{block}

## Tuning

_To be written: what was changed for speed, and what it bought._
"""


def fmt(value, digits=1):
    """A number for a table cell; "-" when not measured."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def memory(rss, pss):
    """RSS with PSS in brackets, in whole MB."""
    return "-" if rss is None else f"{rss:,.0f} ({pss:,.0f})"


def cpu(service, database):
    """CPU ms per request of the service and of PostgreSQL."""
    if service is None:
        return "-"
    return f"{service:.2f}" + ("" if database is None else f"+{database:.2f}")


def _verdicts(row):
    failed = [check["target"] for check in row["targets"] if not check["passed"]]
    return "ok" if not failed else "MISSED: " + "; ".join(failed)


def rows(result):
    """One list of cells per measured load, the baseline first."""
    table = []
    for row in [result["baseline"], *result["scenarios"]]:
        summary = row["summary"]
        share = summary.get("fraction")
        table.append([
            row["name"], fmt(summary["rps"]), fmt(summary["p50_ms"]), fmt(summary["p95_ms"]), fmt(summary["p99_ms"]),
            str(summary["errors"]), memory(summary["service_rss_mb"], summary["service_pss_mb"]),
            memory(summary["database_rss_mb"], summary["database_pss_mb"]),
            cpu(summary.get("service_cpu_ms"), summary.get("database_cpu_ms")),
            fmt(summary.get("round_trips_per_request"), 2), "-" if share is None else f"{share:.0%}", _verdicts(row),
        ])
    return table


def text_table(result):
    """The results as an aligned plain-text table, for the terminal."""
    table = [list(COLUMNS), *rows(result)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = []
    for number, line in enumerate(table):
        cells = [cell.ljust(width) if i in (0, len(COLUMNS) - 1) else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(line, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines += ["", path_line(result), run_verdict_line(result), backlog_line(result)]
    return "\n".join(lines).rstrip()


def path_line(result):
    """Which way the service reached PostgreSQL (older results predate the choice: direct)."""
    path = result.get("path") or {"description": "direct, no proxy"}
    return (f"Database path: {path['description']}. Round trips per request are counted by the proxy, "
            "so only when it is in the path.")


def backlog_line(result):
    """Loads whose server was still busy well after wrk hung up: requests are worked off, not cancelled."""
    slow = [f"{row['name']} {row['summary']['backlog_s']} s" for row in result["scenarios"]
            if row["summary"].get("backlog_s", 0) >= 1]
    return ("Seconds the service kept working on sent requests after wrk hung up: " + ", ".join(slow) + "."
            if slow else "")


def run_verdict_line(result):
    rss = result["service_rss"]
    return (f"Whole service peak RSS: {fmt(rss['value'])} MB ({rss['target']}): {'ok' if rss['passed'] else 'MISSED'}"
            f" (peak PSS {fmt(rss['pss_mb'])} MB). Errors: {'none' if result['passed'] else 'YES, the run failed'}.")


def markdown_table(result):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 2) + ["---"]) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(result)]
    return "\n".join(lines)


def _settings_line(result):
    s = result["service_settings"]
    return (f"{s['workers']} {s['worker_class']} workers x {s['threads']} threads, pool {s['pool_min_size']}.."
            f"{s['pool_max_size']} per worker, pool check `{s['pool_check']}`, prepare threshold "
            f"{s['prepare_threshold']}, `LOG_LEVEL={s['log_level'].lower()}`")


def markdown_block(result, chart_name):
    """The generated part of docs/performance.md, markers included."""
    config, seed = result["config"], result["seed"]
    label = f", label `{result['label']}`" if result.get("label") else ""
    return "\n".join([
        BEGIN,
        f"<!-- Written by bench/report.py from bench/results/{result['file']}; edits here are overwritten. -->",
        "## Latest results",
        "",
        f"- Run {result['started_at']}{label} ({'quick smoke run' if config['quick'] else 'full run'}), "
        f"commit `{result['git']}`: {config['duration']} s per scenario after a {config['warmup']} s warm-up, "
        f"{config['connections']} connections, {config['threads']} wrk threads, wrk timeout {config['timeout']} s.",
        f"- Service: {_settings_line(result)}. PostgreSQL: {result['database']}.",
        f"- {path_line(result)}",
        f"- Data: {seed['users']} users x {seed['tasks_per_user']} tasks, plus one user with "
        f"{seed['big_tasks']:,} tasks. Host: {result['host']['cpus']} CPUs shared by wrk, gunicorn and PostgreSQL.",
        "",
        markdown_table(result),
        "",
        run_verdict_line(result),
        *(["", backlog_line(result)] if backlog_line(result) else []),
        "",
        f"![Latency percentiles per scenario]({chart_name})",
        END,
    ])


def write_doc(result, doc=DOC, chart=CHART):
    """Regenerate only the part between the markers; create the page when it does not exist."""
    block = markdown_block(result, os.path.relpath(chart, doc.parent))
    if not doc.exists():
        text = DOC_TEMPLATE.replace("{block}", block)
    else:
        text = doc.read_text(encoding="utf-8")
        marked = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
        if marked.search(text):
            text = marked.sub(lambda _: block, text, count=1)
        elif "\n## Tuning" in text:  # markers removed by hand: put the results back above Tuning
            text = text.replace("\n## Tuning", f"\n{block}\n\n## Tuning", 1)
        else:
            text = text.rstrip("\n") + f"\n\n{block}\n"
    _write_atomic(doc, text)


NETWORK_BEGIN, NETWORK_END = "<!-- bench-network:begin -->", "<!-- bench-network:end -->"
NETWORK_COLUMNS = ("scenario", "path", "req/s", "p50 ms", "p99 ms", "errors", "DB round trips/req", "of 0 ms",
                   "CPU ms/req service+PG", "proxy CPU ms/req")


def _path_label(path):
    return f"{path['latency_ms']:g} ms, {'PgBouncer' if path['pooler'] else 'direct'}"


def network_rows(results):
    """One row per scenario and path, grouped by scenario; `of 0 ms`: req/s as a share of the same
    mode's 0 ms run."""
    at_zero = {(r["path"]["pooler"], row["name"]): row["summary"]["rps"]
               for r in results if r["path"]["latency_ms"] == 0 for row in r["scenarios"]}
    table = []
    for number, scenario in enumerate(results[0]["scenarios"]):
        for result in results:
            summary, path = result["scenarios"][number]["summary"], result["path"]
            zero = at_zero.get((path["pooler"], scenario["name"]))
            table.append([
                scenario["name"], _path_label(path), fmt(summary["rps"]), fmt(summary["p50_ms"]),
                fmt(summary["p99_ms"]), str(summary["errors"]), fmt(summary.get("round_trips_per_request"), 2),
                f"{summary['rps'] / zero:.0%}" if zero else "-",
                cpu(summary.get("service_cpu_ms"), summary.get("database_cpu_ms")),
                fmt(summary.get("proxy_cpu_ms"), 2),
            ])
    return table


def network_text_table(results):
    table = [list(NETWORK_COLUMNS), *network_rows(results)]
    widths = [max(len(line[i]) for line in table) for i in range(len(NETWORK_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(line, widths, strict=True))).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join([*lines, "", *_delay_lines(results)])


def _delay_lines(results):
    lines = []
    for result in results:
        delays = [row["summary"].get("db_delay_ms") for row in result["scenarios"]]
        delays = [delay for delay in delays if delay is not None]
        if delays:
            lines.append(f"{_path_label(result['path'])}: one-way delay applied "
                         f"{min(delays):.2f}-{max(delays):.2f} ms on average per scenario")
    return lines


def network_markdown_block(results):
    first = results[0]
    config, seed = first["config"], first["seed"]
    lines = [
        NETWORK_BEGIN,
        f"<!-- Written by bench/network.py from bench/results/{first['started_at']}-*.json; "
        "edits here are overwritten. -->",
        f"- Run {first['started_at']}{', label `' + first['label'] + '`' if first.get('label') else ''}"
        f"{' (quick smoke run)' if config['quick'] else ''}, "
        f"commit `{first['git']}`: {config['duration']} s per scenario after a {config['warmup']} s warm-up, "
        f"{config['connections']} connections; {seed['users']} users x {seed['tasks_per_user']} tasks + "
        f"{seed['big_tasks']:,}; ceiling {fmt(first['baseline']['summary']['rps'])} req/s.",
        f"- Service: {_settings_line(first)} (behind PgBouncer: no prepared statements unless "
        "`DATABASE_PGBOUNCER_PREPARED=true`). Every path goes through bench/proxy.py, 0 ms too.",
        *[f"- {line}." for line in _delay_lines(results)],
        "",
        "| " + " | ".join(NETWORK_COLUMNS) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(NETWORK_COLUMNS) - 2)) + "|",
        *["| " + " | ".join(cells) + " |" for cells in network_rows(results)],
        NETWORK_END,
    ]
    return "\n".join(lines)


def write_network_doc(results, doc=DOC):
    """Replace the block between the network markers (or add it, with a heading, at the end)."""
    block = network_markdown_block(results)
    text = doc.read_text(encoding="utf-8") if doc.exists() else DOC_TEMPLATE.replace("{block}", "")
    marked = re.compile(re.escape(NETWORK_BEGIN) + ".*?" + re.escape(NETWORK_END), re.DOTALL)
    if marked.search(text):
        text = marked.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + f"\n\n## Across a network: measured\n\n{block}\n"
    _write_atomic(doc, text)


def write_chart(result, path=CHART):
    """Grouped bars of p50/p95/p99 per scenario on a log scale, each latency target as a red dash."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    loads = [result["baseline"], *result["scenarios"]]
    names = [row["name"] for row in loads]
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    for offset, (key, colour) in enumerate((("p50_ms", "#9ecae1"), ("p95_ms", "#4292c6"), ("p99_ms", "#08519c"))):
        values = [max(row["summary"][key] or 0, 0.01) for row in loads]
        ax.bar([i + (offset - 1) * 0.27 for i in range(len(loads))], values, width=0.27, color=colour,
               label=key.removesuffix("_ms"))
    for i, row in enumerate(loads):
        for check in row["targets"]:
            if check["metric"].endswith("_ms"):
                ax.hlines(check["limit"], i - 0.42, i + 0.42, colors="#d62728", linewidth=2)
    ax.plot([], [], color="#d62728", linewidth=2, label="target")
    ax.set_yscale("log")
    ax.set_xticks(range(len(loads)), names)
    ax.set_ylabel("latency, ms (log scale)")
    config = result["config"]
    ax.set_title(f"Latency per scenario at {config['connections']} connections ({result['started_at']})")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def _write_atomic(path, text):
    # Write aside and rename: an interrupted run never leaves half a file (*.tmp is git-ignored).
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(result, directory=RESULTS_DIR, latest=True):
    """The raw result as bench/results/<file>, and as latest.json when `latest`; returns the timestamped path."""
    text = json.dumps(result, indent=2) + "\n"
    path = directory / result["file"]
    _write_atomic(path, text)
    if latest:
        _write_atomic(directory / "latest.json", text)
    return path


def main(argv=None):
    """Render docs/performance.md and the chart again from a stored result."""
    argv = sys.argv[1:] if argv is None else argv
    source = Path(argv[0]) if argv else RESULTS_DIR / "latest.json"
    result = json.loads(source.read_text(encoding="utf-8"))
    write_chart(result)
    write_doc(result)
    print(text_table(result))
    print(f"rendered {DOC.relative_to(ROOT)} and {CHART.relative_to(ROOT)} from {source}")


if __name__ == "__main__":
    main()
