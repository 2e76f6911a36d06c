"""A real Redis for the rate-limit tests: Debian's redis-server on 127.0.0.1, stopped by PID."""

import shutil
import signal
import subprocess
import time

import redis

from tests.support import LOG_DIR, free_port


def redis_server_binary():
    """The redis-server program (`make test` installs Debian's package), or None."""
    return shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if shutil.which(path)), None)


class RedisServer:
    """redis-server on 127.0.0.1:port, in memory only (no dump, no append-only file), to stop and start at will."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self, timeout=10):
        """Start and wait until it answers PING."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--protected-mode", "yes", "--logfile", str(LOG_DIR / f"redis-{self.port}.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self, timeout=10):
        """SIGTERM by PID, and wait for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
