"""The change-feed scenarios: a delta token per seeded user (changes), and idle long-polls held while
the mix runs, with a probe that times how soon a write wakes its user's long-poll (changes-wait).

The long-polls are plain HTTP/1.1 on asyncio streams in a thread of the runner: one keep-alive
connection per waiting user, each long-poll sent again as soon as it answers. Their users are
bench-wait-N, which nothing but the probe writes to, so they stay idle.
"""

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import statistics
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import requests

from bench import data
from todo_service.queries import QUERIES

CHANGED = 5  # tasks of each user changed after its token was taken: the delta every `changes` answer holds
WAITERS = 200  # long-polls held during changes-wait
WAIT_USER_PREFIX = "bench-wait-"
WAIT_SECONDS = 25  # the longest wait the API allows
# The bench's service allows this many waiters per worker (SYNC_MAX_WAITERS, default 100): with 2
# workers the 200 would fit exactly only if the kernel spread their connections evenly.
MAX_WAITERS = 150
SAMPLES, QUICK_SAMPLES = 200, 20  # wake-up samples per kind of write
LANES = 4  # wake-up probes at a time, each on its own user
WAKE_TIMEOUT = 10  # seconds: a long-poll not answering a write by then counts as an error
# Seconds, at most, between one probe's answer and its next write: two poll intervals (SYNC_POLL_MS).
JITTER = 2 * int(os.environ.get("SYNC_POLL_MS") or 100) / 1000
HELD_FOR = 0.3  # seconds a long-poll must have been out before the probe writes to its user
GAUGE = re.compile(r"^todo_sync_waiters (\S+)$", re.M)
REFUSED = re.compile(r"^todo_sync_waits_refused_total (\S+)$", re.M)


def delta_tokens(base_url, seeded, path):
    """Write `user token` lines to `path`: each seeded user's token, taken just before CHANGED of its
    tasks were toggled; checks that the token answers exactly those."""
    with requests.Session() as session, open(path, "w") as out:
        for number in range(1, seeded.users + 1):
            user = f"{data.USER_PREFIX}{number}"
            since = _feed(session, base_url, user, limit=1000)["next"]
            first = seeded.first_id + (number - 1) * seeded.tasks_per_user
            for task_id in range(first, first + min(CHANGED, seeded.tasks_per_user)):
                session.patch(f"{base_url}/api/{user}/tasks/{task_id}/complete", timeout=30).raise_for_status()
            delta = _feed(session, base_url, user, since=since)
            if len(delta["changes"]) != min(CHANGED, seeded.tasks_per_user) or delta["has_more"]:
                raise RuntimeError(f"the delta of {user} is not its {CHANGED} changed tasks: {delta}")
            out.write(f"{user} {since}\n")
    return path


def _feed(session, base_url, user, **params):
    answer = session.get(f"{base_url}/api/{user}/tasks/changes", params=params, timeout=30)
    answer.raise_for_status()
    return answer.json()


class Connection:
    """One keep-alive HTTP/1.1 connection to the service: JSON in, (status, JSON) out."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method, path, body=None):
        """(status, decoded body); once more on a new connection when a kept-alive one was closed."""
        reused = self.writer is not None
        if not reused:
            await self._open()
        try:
            return await self._exchange(method, path, body)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close()
            if not reused:
                raise
        await self._open()
        return await self._exchange(method, path, body)

    async def _open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def _exchange(self, method, path, body):
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(payload)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("closed by the service")
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        content = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(status_line.split()[1]), json.loads(content) if content else None

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Waiters:
    """WAITERS long-polls held on the service while the block runs, each re-issued as it answers;
    `probe` times wake-ups. Counts what went wrong as errors, like wrk's loads."""

    def __init__(self, base_url, database_url, count=WAITERS):
        parts = urlsplit(base_url)
        self.base_url, self.host, self.port = base_url, parts.hostname, parts.port
        self.database_url = database_url
        self.users = [f"{WAIT_USER_PREFIX}{number}" for number in range(1, count + 1)]
        self.held = {}  # user -> when its current long-poll was sent
        self.expected = {}  # user -> (title a probe wrote, future of when the long-poll answered with it)
        self.errors, self.samples = Counter(), []
        self.answers = 0
        self.stopping = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-waiters", daemon=True)
        self.tasks = []

    def __enter__(self):
        self.thread.start()
        try:
            self._call(self._start(), timeout=60)
            self.refused_before = self._wait_until_held()
        except BaseException:  # no __exit__ will run: end the long-polls here
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self._call(self._stop(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()

    def _call(self, coroutine, timeout):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def _metrics(self):
        """GET /metrics as text, or None when it is off or needs a token."""
        with contextlib.suppress(requests.RequestException):
            answer = requests.get(f"{self.base_url}/metrics", timeout=10)
            if answer.status_code == 200:
                return answer.text
        return None

    def _wait_until_held(self, timeout=30):
        """Until the service's waiter gauge shows every long-poll; the refused-waits counter then
        (None without /metrics: then a second, ample on 127.0.0.1)."""
        deadline, held = time.monotonic() + timeout, None
        while (text := self._metrics()) is not None:
            held = _number(GAUGE, text)
            if held >= len(self.users):
                return _number(REFUSED, text)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service holds {held:g} of {len(self.users)} long-polls after {timeout}s")
            time.sleep(0.1)
        time.sleep(1)
        return None

    async def _start(self):
        """A snapshot per user (its first token), then its long-poll loop."""
        connections = [Connection(self.host, self.port) for _ in self.users]
        firsts = await asyncio.gather(*(conn.request("GET", f"/api/{user}/tasks/changes")
                                        for conn, user in zip(connections, self.users, strict=True)))
        for conn, user, (status, body) in zip(connections, self.users, firsts, strict=True):
            if status != 200:
                raise RuntimeError(f"the snapshot of {user} answered {status}: {body}")
            self.tasks.append(asyncio.create_task(self._hold(conn, user, body["next"])))

    async def _hold(self, conn, user, since):
        """Long-poll `user` until stopped, from `since` on; each answer's next is the next since."""
        while not self.stopping:
            sent = self.held[user] = time.monotonic()
            try:
                status, body = await conn.request("GET", f"/api/{user}/tasks/changes?since={since}&wait={WAIT_SECONDS}")
            except (OSError, asyncio.IncompleteReadError) as exc:
                conn.close()
                status, body = None, repr(exc)
            arrived = time.monotonic()
            self.held.pop(user, None)
            if self.stopping:
                break
            if status != 200:
                self.errors["longpoll_failed" if status is None else f"longpoll_http_{status}"] += 1
                self.samples.append(f"long-poll of {user}: {status} {str(body)[:200]}")
                await asyncio.sleep(1)
                continue
            self.answers += 1
            since = body["next"]
            if not body["changes"] and arrived - sent < WAIT_SECONDS - 1:
                # Answered at once: the worker's SYNC_MAX_WAITERS was reached. Not what was to be measured,
                # and sent again at once it would turn into a busy loop.
                self.errors["longpoll_not_held"] += 1
                self.samples.append(f"long-poll of {user}: answered empty after {arrived - sent:.1f}s")
                await asyncio.sleep(1)
            title, future = self.expected.get(user, (None, None))
            if future is not None and not future.done() and any(t["title"] == title for t in body["changes"]):
                future.set_result(arrived)
        conn.close()

    async def _stop(self):
        """Wake every long-poll with a write (so none stays held on the service), then end the loops."""
        self.stopping = True
        await asyncio.to_thread(self._write_each, self.users)
        _done, pending = await asyncio.wait(self.tasks, timeout=5) if self.tasks else ((), ())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _write_each(self, users):
        with data.connect(self.database_url) as conn:
            for user in users:
                _sql_create(conn, user, "bench/feed.py: stop waiting")

    def probe(self, row, samples):
        """Time `samples` wake-ups by an API write and as many by a SQL write; put their figures, and
        the long-polls' errors, into `row`, a load's result entry."""
        print(f"  {'':<9} wake-up probe: {samples} writes through the API, {samples} in SQL ...", end=" ", flush=True)
        timings = self._call(self._probe(["api", "sql"] * samples), timeout=samples * 2 * WAKE_TIMEOUT + 60)
        summary = row["summary"]
        summary.update(waiters=len(self.users), waiter_answers=self.answers,
                       **_percentiles("wake_api", timings["api"]), **_percentiles("wake_sql", timings["sql"]))
        summary["wake_p99_ms"] = summary["wake_api_p99_ms"]  # the target's: a client's write
        if self.refused_before is not None and (text := self._metrics()) is not None:
            summary["waits_refused"] = _number(REFUSED, text) - self.refused_before
        row["wake_ms"] = {kind: sorted(round(ms, 1) for ms in values) for kind, values in timings.items()}
        for kind, count in self.errors.items():
            summary["error_kinds"][kind] = summary["error_kinds"].get(kind, 0) + count
        summary["errors"] += sum(self.errors.values())
        summary["failure_samples"] = (summary["failure_samples"] + self.samples)[:5]
        print(f"p50/p99 {summary['wake_api_p50_ms']}/{summary['wake_api_p99_ms']} ms (API), "
              f"{summary['wake_sql_p50_ms']}/{summary['wake_sql_p99_ms']} ms (SQL); "
              f"{self.answers} long-poll answers, errors {sum(self.errors.values())}", flush=True)

    async def _probe(self, kinds):
        jobs, timings = iter(kinds), {"api": [], "sql": []}
        users = itertools.cycle(self.users)
        await asyncio.gather(*(self._lane(lane, jobs, users, timings) for lane in range(LANES)))
        return timings

    async def _lane(self, lane, jobs, users, timings):
        """Take jobs until none is left: a write for a held user, timed until its long-poll answers."""
        conn = Connection(self.host, self.port)  # one worker's: about half the users wait on the other
        database = await asyncio.to_thread(data.connect, self.database_url)
        try:
            for number, kind in enumerate(jobs):
                # A random pause first: a probe sent as soon as the last one answered would start at the
                # same phase of the poller every time (just after a poll) and always wait most of its interval.
                await asyncio.sleep(random.uniform(0, JITTER))
                user = await self._held_user(users)
                title = f"bench/feed.py probe {lane}-{number} ({kind})"
                future = self.loop.create_future()
                self.expected[user] = (title, future)
                try:
                    written = await self._write(kind, conn, database, user, title)
                    if written is not None:
                        arrived = await asyncio.wait_for(future, WAKE_TIMEOUT)
                        timings[kind].append(max(arrived - written, 0) * 1000)
                except TimeoutError:
                    self.errors["wake_timeout"] += 1
                    self.samples.append(f"{kind} write for {user}: no answer within {WAKE_TIMEOUT}s")
                except (OSError, asyncio.IncompleteReadError) as exc:
                    conn.close()
                    self.errors["probe_failed"] += 1
                    self.samples.append(f"{kind} write for {user}: {exc!r}")
                finally:
                    del self.expected[user]
        finally:
            conn.close()
            await asyncio.to_thread(database.close)

    async def _held_user(self, users):
        """The next user whose long-poll has been out HELD_FOR and whom no other lane probes."""
        while True:
            for user in itertools.islice(users, len(self.users)):
                since = self.held.get(user)
                if since is not None and time.monotonic() - since >= HELD_FOR and user not in self.expected:
                    return user
            await asyncio.sleep(0.05)

    async def _write(self, kind, conn, database, user, title):
        """Create a task for `user`: through the API (when sent) or in SQL (when committed); None on failure."""
        if kind == "sql":
            return await asyncio.to_thread(_sql_create, database, user, title)
        started = time.monotonic()
        status, body = await conn.request("POST", f"/api/{user}/tasks", {"title": title})
        if status != 201:
            self.errors[f"probe_http_{status}"] += 1
            self.samples.append(f"probe create for {user}: {status} {str(body)[:200]}")
            return None
        return started


def idle_cpu(monitor, pid, seconds):
    """(service, PostgreSQL) CPU ms per second over `seconds` without load."""
    before = monitor.cpu(pid)
    time.sleep(seconds)
    return tuple((after - start) * 1000 / seconds for after, start in zip(monitor.cpu(pid), before, strict=True))


def _sql_create(conn, user, title):
    """One task for `user` as another instance would write it; when its commit returned."""
    QUERIES.create_task.run(conn, user_id=user, title=title, description=None, completed=False,
                            max_tasks=1_000_000)
    return time.monotonic()


def _percentiles(name, values):
    """n, p50, p99 and max of `values` (ms) under keys named `name`_…; None when there is none."""
    if not values:
        return {f"{name}_samples": 0, f"{name}_p50_ms": None, f"{name}_p99_ms": None}
    cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {f"{name}_samples": len(values), f"{name}_p50_ms": round(statistics.median(values), 1),
            f"{name}_p99_ms": round(cuts[98], 1), f"{name}_max_ms": round(max(values), 1)}


def _number(pattern, text):
    found = pattern.search(text)
    return float(found.group(1)) if found else 0.0
