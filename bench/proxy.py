"""A TCP proxy between the service and PostgreSQL: a one-way delay each way, and a count of round trips.

It stands for the network between an application and a managed database: every byte is passed on
unchanged, `delay_ms` later, in each direction, so a round trip costs twice the delay. It also reads
the PostgreSQL protocol's message framing (a type byte and a length) as the bytes go by and counts
round trips: the times the client had to wait for the server.

A round trip opens when the client sends a message while none is open, and closes when the client
has been answered everything it asked for: the server's ReadyForQuery for every Sync and Query it
sent (or, after a bare Flush, the first answer). So an extended-protocol exchange (Parse, Bind,
Describe, Execute, Sync) is one, a pipeline of several statements and one Sync is one, and a
statement that psycopg prepares first (Parse, Sync; then Bind, Execute, Sync) is two. What a
client sends before it has seen an answer belongs to the open round trip: it did not wait for it.
A COPY's CopyInResponse closes one too (the client waits for it before it sends the data). The
connection's start (TLS request, startup, authentication) is counted apart, and a Terminate is not
counted. The proxy sees the order of events as the client does: client bytes when they arrive,
server bytes when they are handed to the client.

    python -m bench.proxy --target 127.0.0.1:5432 --delay-ms 5     # or --target /path/to/socket/dir:5432

`LatencyProxy` runs the proxy on an event loop in a thread of the caller (the tests), which reads
`counts()` whenever it likes; `ProxyProcess` runs it in a process of its own (the benchmark).
"""

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
TERMINATE, SYNC, QUERY, FUNCTION_CALL, FLUSH = b"X"[0], b"S"[0], b"Q"[0], b"F"[0], b"H"[0]
READY_FOR_QUERY = b"Z"[0]
COPY_IN, COPY_BOTH = b"G"[0], b"W"[0]
# Messages the server may send on its own at any time: they answer nothing.
ASYNCHRONOUS = {b"N"[0], b"A"[0], b"S"[0]}
CHUNK = 256 * 1024


@dataclass
class Counts:
    """What the proxy has seen so far; subtract two of them for what happened in between."""

    connections: int = 0
    round_trips: int = 0  # exchanges after the connection was ready: what requests cost
    setup_round_trips: int = 0  # TLS request, startup and authentication
    opaque_connections: int = 0  # TLS inside: bytes passed on, round trips not countable
    client_bytes: int = 0
    server_bytes: int = 0
    delayed_chunks: int = 0
    delay_s: float = 0.0  # sum of the delays really applied (the event loop adds a little)
    cpu_s: float = 0.0  # CPU time of the proxy's thread: what emulating the network took from the machine

    def __sub__(self, other):
        return Counts(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    @property
    def mean_delay_ms(self):
        """The one-way delay really applied, on average; None before any byte went through."""
        return self.delay_s * 1000 / self.delayed_chunks if self.delayed_chunks else None


class Framer:
    """Splits one direction's bytes into protocol messages and returns each message's type.

    `untyped` messages (the client's first ones: SSLRequest, StartupMessage, CancelRequest) carry no
    type byte; their request code stands in for it. Message bodies are skipped, never copied.
    """

    def __init__(self, untyped=False):
        self.untyped = untyped
        self.header = b""
        self.skip = 0

    def feed(self, data):
        kinds = []
        pos, end = min(self.skip, len(data)), len(data)
        self.skip -= pos
        while pos < end:
            size = 8 if self.untyped else 5
            if self.header or end - pos < size:
                take = size - len(self.header)
                self.header += data[pos:pos + take]
                pos += take
                if len(self.header) < size:
                    break
                header, self.header = self.header, b""
            else:
                header = data[pos:pos + size]
                pos += size
            if self.untyped:
                length, kind = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")
                body = max(length - 8, 0)  # a broken length must not send the parser backwards
            else:
                kind, body = header[0], max(int.from_bytes(header[1:], "big") - 4, 0)
            kinds.append(kind)
            step = min(body, end - pos)
            pos += step
            self.skip = body - step
        return kinds


class Wire:
    """One proxied connection's protocol state and round-trip bookkeeping."""

    def __init__(self, counts, lock):
        self.counts, self.lock = counts, lock
        self.client = Framer(untyped=True)
        self.server = Framer()
        self.one_byte_answers = 0  # to SSLRequest / GSSENCRequest: a single byte, no framing
        self.opaque = False
        self.ready = False  # the first ReadyForQuery has reached the client
        self.open = False  # a round trip is in progress
        self.setup = False  # ... and it is part of the connection's start
        self.outstanding = 0  # Syncs and Queries the server has not yet answered with ReadyForQuery
        self.flush_only = False  # the open round trip asked for answers with Flush alone

    def from_client(self, data):
        """Client bytes as they arrive."""
        if self.opaque:
            return
        for kind in self.client.feed(data):
            if self.client.untyped:
                if kind in (SSL_REQUEST, GSSENC_REQUEST):
                    self.one_byte_answers += 1
                elif kind == CANCEL_REQUEST:
                    continue  # a connection of its own, answered by none
                else:
                    self.client.untyped = False  # StartupMessage: typed messages from now on
                self._client_message(count_as_wait=True)
            elif kind != TERMINATE:
                self._client_message(count_as_wait=kind in (SYNC, QUERY, FUNCTION_CALL) or not self.ready)
                if kind == FLUSH and self.outstanding == 0:
                    self.flush_only = True

    def _client_message(self, count_as_wait):
        if not self.open:
            self.open, self.setup, self.flush_only = True, not self.ready, False
        if count_as_wait:
            self.outstanding += 1

    def server_kinds(self, data):
        """Parse server bytes as they arrive; the result goes to `to_client` once they are delivered."""
        if self.opaque:
            return ()
        kinds = []
        while self.one_byte_answers and data:
            self.one_byte_answers -= 1
            kinds.append(("one-byte", data[0]))
            if data[:1] in (b"S", b"G"):  # TLS or GSS encryption from here on: nothing to read
                self.opaque = True
                return kinds
            data = data[1:]
        return kinds + [("message", kind) for kind in self.server.feed(data)]

    def to_client(self, kinds):
        """Server messages just handed to the client."""
        for form, kind in kinds:
            if form == "one-byte":
                if kind in (b"S"[0], b"G"[0]):
                    with self.lock:
                        self.counts.opaque_connections += 1
                self._close()
            elif not self.ready:
                # Startup: an authentication request or the first ReadyForQuery answers the client.
                self.ready = kind == READY_FOR_QUERY
                if kind in (READY_FOR_QUERY, b"R"[0]):
                    self._close()
            elif kind == READY_FOR_QUERY:
                self.outstanding = max(self.outstanding - 1, 0)
                if self.outstanding == 0:
                    self._close()
            elif kind in (COPY_IN, COPY_BOTH) or (self.flush_only and not self.outstanding
                                                  and kind not in ASYNCHRONOUS):
                self._close()

    def _close(self):
        """The client has its answer: the open round trip, if any, is over."""
        if not self.open:
            return
        self.open = False
        with self.lock:
            if self.setup:
                self.outstanding = 0
                self.counts.setup_round_trips += 1
            else:
                self.counts.round_trips += 1


def _new_event_loop():
    """uvloop's event loop where installed (requirements-bench.txt): about half the CPU per relayed
    message of asyncio's own (30 instead of 59 µs per exchange), and a little closer to the delay asked."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LatencyProxy:
    """Listens on `host`:`port` (0: any free port) and relays to `target`, delaying each direction.

    `target` is (host, port) for TCP, or (socket directory, port) for PostgreSQL's Unix socket.
    """

    def __init__(self, target, delay_ms=0.0, host="127.0.0.1", port=0):
        self.target = (str(target[0]), int(target[1]))
        self.delay = delay_ms / 1000
        self.host, self.port = host, port
        self._counts = Counts()
        self._lock = threading.Lock()
        self._loop = self._server = self._thread = None

    # --- control, from any thread -------------------------------------------------------------
    def start(self):
        """Listen, with the event loop in a daemon thread; returns self once the port is open."""
        started = threading.Event()
        failure = []

        def serve():
            self._loop = _new_event_loop()
            try:
                self._server = self._loop.run_until_complete(self._listen())
            except OSError as exc:
                failure.append(exc)
                started.set()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="latency-proxy", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self):
        """Close the listener and every relayed connection; wait for the thread."""
        if self._thread is not None and self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def counts(self):
        """A snapshot of the counters."""
        with self._lock:
            counts = Counts(**vars(self._counts))
        if self._thread is not None and self._thread.is_alive():
            counts.cpu_s = time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))
        return counts

    def conninfo(self, url):
        """`url` with its host and port replaced by this proxy's."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(url, host=self.host, port=str(self.port))

    # --- the event loop's side ------------------------------------------------------------------
    async def _listen(self):
        return await asyncio.start_server(self._relay, self.host, self.port)

    async def _shutdown(self):
        self._server.close()
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _connect_upstream(self):
        host, port = self.target
        if host.startswith("/"):
            return await asyncio.open_unix_connection(str(Path(host) / f".s.PGSQL.{port}"))
        return await asyncio.open_connection(host, port)

    async def _relay(self, client_reader, client_writer):
        try:
            server_reader, server_writer = await self._connect_upstream()
        except OSError:
            client_writer.close()
            return
        with self._lock:
            self._counts.connections += 1
        wire = Wire(self._counts, self._lock)
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer, wire.from_client, None, "client_bytes"),
                self._pump(server_reader, client_writer, wire.server_kinds, wire.to_client, "server_bytes"),
            )
        except (OSError, asyncio.CancelledError):
            pass  # a side hung up, or the proxy is stopping: this connection's task ends here
        finally:
            for writer in (client_writer, server_writer):
                writer.close()

    async def _pump(self, reader, writer, on_read, on_delivered, counter):
        """Copy `reader` to `writer`, each chunk `delay` seconds after it arrived, in order."""
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()

        async def deliver():
            while True:
                due, data, note = await queue.get()
                if data is None:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if on_delivered is not None:  # before the write: the client may act on it at once
                    on_delivered(note)
                with self._lock:
                    self._counts.delayed_chunks += 1
                    self._counts.delay_s += loop.time() - due + self.delay
                writer.write(data)
                await writer.drain()
            with contextlib.suppress(OSError):
                writer.write_eof()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(CHUNK):
                note = on_read(data)
                with self._lock:
                    setattr(self._counts, counter, getattr(self._counts, counter) + len(data))
                queue.put_nowait((loop.time() + self.delay, data, note))
        except BaseException:  # the other side failed, or the proxy is stopping: drop what is queued
            sender.cancel()
            raise
        queue.put_nowait((0, None, None))  # end of stream: deliver what is queued, then pass the EOF on
        await sender


class ProxyProcess:
    """A LatencyProxy in a process of its own, with the same face: `start`, `stop`, `counts`, `conninfo`.

    The benchmark runs it this way, so that nothing in the runner's process (the memory sampler
    holds the GIL for milliseconds at a time) delays the bytes beyond what was asked for, and at a
    higher priority where allowed. `counts().mean_delay_ms` says how close it came.
    """

    def __init__(self, target, delay_ms=0.0, host="127.0.0.1"):
        self.target, self.delay_ms, self.host = target, delay_ms, host
        self.port = None
        self._pipe = self._process = None

    def start(self):
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited threads or locks
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self.target, self.delay_ms, self.host),
                                        name="latency-proxy", daemon=True)
        self._process.start()
        if not self._pipe.poll(30):
            self.stop()
            raise RuntimeError("the latency proxy did not start within 30 s")
        answer = self._pipe.recv()
        if isinstance(answer, str):
            self.stop()
            raise RuntimeError(f"the latency proxy could not listen: {answer}")
        self.port = answer
        return self

    def counts(self):
        self._pipe.send("counts")
        return Counts(**self._pipe.recv())

    def conninfo(self, url):
        return LatencyProxy.conninfo(self, url)

    def stop(self):
        if self._process is not None and self._process.is_alive():
            with contextlib.suppress(OSError):
                self._pipe.send("stop")
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _serve(pipe, target, delay_ms, host):
    """The proxy process: listen, report the port, answer `counts` until told to `stop`."""
    # A network takes no CPU from the host: where allowed (root), run ahead of the service and the
    # database when the cores are saturated, so the delays stay close to the ones asked for.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    try:
        proxy = LatencyProxy(target, delay_ms, host).start()
    except OSError as exc:
        pipe.send(str(exc))
        return
    pipe.send(proxy.port)
    try:
        while pipe.recv() == "counts":
            pipe.send(vars(proxy.counts()))
    except EOFError:  # the parent went away
        pass
    proxy.stop()


def target_of(url):
    """(host or socket directory, port) of the PostgreSQL a connection URL points at."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    return info.get("host") or "127.0.0.1", int(info.get("port") or 5432)


def parse_target(text):
    """HOST:PORT or /socket/dir:PORT."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT or /socket/dir:PORT")
    return host, int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=parse_target, required=True, help="PostgreSQL: HOST:PORT or /socket/dir:PORT")
    parser.add_argument("--delay-ms", type=float, default=1.0, help="one-way delay in each direction (default 1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on, 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    proxy = LatencyProxy(args.target, args.delay_ms, port=args.port).start()
    print(f"listening on 127.0.0.1:{proxy.port}, {args.delay_ms:g} ms each way to {args.target[0]}:{args.target[1]};"
          " Ctrl-C prints the counts", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    proxy.stop()
    counts = proxy.counts()
    print(", ".join(f"{f.name} {getattr(counts, f.name)}" for f in fields(counts)), file=sys.stderr)


if __name__ == "__main__":
    main()
