"""`python -m bench.wsgi_cost`: CPU per request of the app itself, called in-process as gunicorn calls it.

No gunicorn, no wrk, no other thread: each request is the WSGI call alone on one thread, so its CPU
time (`time.thread_time`) hardly moves when other work shares the host, and a change of a few
microseconds shows. Complements `make bench`, which measures the whole server under load. With
authentication on (a key set served here, each request carrying its user's token), ETags, the list
cache and idempotency as in production; PostgreSQL is a fresh one, as `make bench` makes it.
`--profile NAME` prints cProfile's top functions for that request kind.
"""

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from werkzeug.test import EnvironBuilder

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import service, tokens  # noqa: E402
from todo_service import create_app, db  # noqa: E402
from todo_service.config import load_settings  # noqa: E402
from todo_service.migrate import migrate  # noqa: E402

USER = "cost-user"
WRITER = "cost-writer"  # creates go to a user never listed, as in bench/create.lua


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.wsgi_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per kind and round (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, kinds interleaved; the median is shown")
    parser.add_argument("--profile", metavar="KIND", help="cProfile one round of this kind instead")
    parser.add_argument("--profile-out", metavar="FILE", help="with --profile: also write the profile here (pstats)")
    parser.add_argument("--kinds", help="only these request kinds, comma-separated (default: all)")
    parser.add_argument("--sort", default="tottime", help="the profile's order: tottime (default), cumulative, ...")
    return parser.parse_args(argv)


def requests_for(app, tokens_by_user):
    """{kind: a function making a fresh WSGI environ}: the requests of bench/'s scenarios."""
    client = app.test_client()
    auth = {"Authorization": f"Bearer {tokens_by_user[USER]}"}
    writer = {"Authorization": f"Bearer {tokens_by_user[WRITER]}"}
    base = f"/api/{USER}/tasks"
    for number in range(100):
        assert client.post(base, json={"title": f"task {number}"}, headers=auth).status_code == 201
    task = client.post(base, json={"title": "the one"}, headers=auth).get_json()
    one = f"{base}/{task['id']}"
    body = orjson.dumps({"title": "bench task", "description": "created by bench", "completed": False})
    kinds = {
        "get": EnvironBuilder(path=one, headers=auth),
        "list-100": EnvironBuilder(path=base, headers=auth),
        "list-page": EnvironBuilder(path=base + "?limit=50", headers=auth),
        "create": EnvironBuilder(path=f"/api/{WRITER}/tasks", method="POST", headers=writer, data=body,
                                 content_type="application/json"),
        "toggle": EnvironBuilder(path=one + "/complete", method="PATCH", headers=auth),
    }
    environs = {kind: builder.get_environ() for kind, builder in kinds.items()}

    def fresh(kind):
        environ = dict(environs[kind])
        environ["wsgi.input"] = io.BytesIO(body if kind == "create" else b"")
        return environ

    return fresh, list(kinds)


def call(app, environ):
    """One request through the WSGI interface, its body consumed as a server would."""
    status = []
    for _ in app(environ, lambda s, h, e=None: status.append(s)):
        pass
    return status[0]


def measure(app, fresh, kind, count):
    """CPU microseconds per request of `kind`, over `count` requests."""
    environs = [fresh(kind) for _ in range(count)]
    started = time.thread_time()
    for environ in environs:
        call(app, environ)
    return (time.thread_time() - started) / count * 1e6


def main(argv=None):
    args = parse_args(argv)
    database = service.make_database()
    try:
        url = database.open()
        migrate(url)
        with tokens.key_set() as (jwks_url, private), tempfile.TemporaryDirectory() as scratch:
            lines = tokens.write_tokens(Path(scratch) / "t", private, [USER, WRITER]).read_text().splitlines()
            env = {"DATABASE_URL": url, "AUTH_JWKS_URL": jwks_url, "MIGRATE_ON_START": "false",
                   "MAX_TASKS_PER_USER": "10000000", "RATE_LIMIT": "off", "RATE_LIMIT_WRITES": "off"}
            app = create_app({"SETTINGS": load_settings(env)})
            try:
                run(app, *requests_for(app, dict(line.split() for line in lines)), args)
            finally:
                db.close_pool(app)
    finally:
        database.close()


def run(app, fresh, kinds, args):
    """Warm up, then measure (or profile) each kind."""
    for kind in kinds:
        status = call(app, fresh(kind))
        assert status.startswith("20"), (kind, status)
        measure(app, fresh, kind, 200)
    if args.profile:
        environs = [fresh(args.profile) for _ in range(args.requests)]
        profiler = cProfile.Profile(time.thread_time)  # CPU, not the waits for PostgreSQL
        profiler.enable()
        for environ in environs:
            call(app, environ)
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats(args.sort)
        stats.print_stats(45)
        if args.profile_out:
            stats.dump_stats(args.profile_out)
        return
    if args.kinds:
        wanted = set(args.kinds.split(","))
        if unknown := wanted - set(kinds):
            raise SystemExit(f"unknown kinds {sorted(unknown)}; known: {', '.join(kinds)}")
        kinds = [kind for kind in kinds if kind in wanted]
    results = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            results[kind].append(measure(app, fresh, kind, args.requests))
    for kind in kinds:
        values = results[kind]
        print(f"{kind:<10} {statistics.median(values):7.1f} µs/request (min {min(values):.1f}, max {max(values):.1f})")


if __name__ == "__main__":
    sys.exit(main())
