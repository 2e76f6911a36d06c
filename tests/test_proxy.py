"""bench/proxy.py, the network the benchmark and the round-trip tests put before PostgreSQL."""

import os
import socket
import socketserver
import threading

import psycopg
import pytest

from bench.proxy import LatencyProxy, target_of


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_bytes_pass_unchanged_both_ways_and_late_by_the_delay(echo_port):
    payload = os.urandom(2_000_000)
    with LatencyProxy(("127.0.0.1", echo_port), delay_ms=2) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        received = bytearray()
        while len(received) < len(payload):
            received += sock.recv(1 << 20)
        sender.join()
        counts = proxy.counts()
    assert bytes(received) == payload
    assert counts.client_bytes == counts.server_bytes == len(payload)
    assert counts.mean_delay_ms >= 2


@pytest.fixture
def proxied(database_url):
    """A psycopg connection to the test database through the proxy, and the proxy."""
    with LatencyProxy(target_of(database_url), delay_ms=1) as proxy, \
            psycopg.connect(proxy.conninfo(database_url), autocommit=True, prepare_threshold=2) as conn:
        yield conn, proxy


def trips(proxy, action):
    before = proxy.counts()
    action()
    return (proxy.counts() - before).round_trips


def test_round_trips_are_the_exchanges_the_client_waited_for(proxied):
    conn, proxy = proxied
    assert proxy.counts().setup_round_trips >= 1 and proxy.counts().round_trips == 0  # the start is apart
    assert trips(proxy, lambda: conn.execute("SELECT 1")) == 1  # simple or extended: one each
    params = [trips(proxy, lambda: conn.execute("SELECT %s::int", [1])) for _ in range(4)]
    assert params == [1, 1, 2, 1]  # psycopg prepares on the third run: Parse and Sync, then Bind/Execute

    def pipeline():
        with conn.pipeline():
            for number in range(3):
                conn.execute("SELECT %s::int + 1", [number])

    assert trips(proxy, pipeline) == 1

    def copy():
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS copied (n int)")
        with conn.cursor().copy("COPY copied (n) FROM STDIN") as copy:
            copy.write_row([1])

    assert trips(proxy, copy) == 1 + 2  # the CREATE; the COPY waits for CopyInResponse, then for the end
    assert trips(proxy, conn.close) == 0  # Terminate expects no answer
