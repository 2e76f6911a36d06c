"""A real Redis for the rate-limit tests: Debian's redis-server on 127.0.0.1, stopped by PID."""

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support import LOG_DIR, free_port


def redis_server_binary():
    """The redis-server program (`make test` installs Debian's package), or None."""
    return shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if shutil.which(path)), None)


class RedisServer:
    """redis-server on 127.0.0.1:port, in memory only (no dump, no append-only file), to stop and start at will.

    With `unix_socket`, it listens on a socket of its own too (owner only), and `url` names that socket.
    """

    def __init__(self, port=None, unix_socket=False):
        self.port = port or free_port()
        # A short directory of its own: a socket's path may not pass 107 bytes.
        self.socket = Path(tempfile.mkdtemp(prefix="redis-")) / "redis.sock" if unix_socket else None
        self.url = f"redis+unix://{self.socket}?db=0" if unix_socket else f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self, timeout=10):
        """Start and wait until it answers PING."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        if self.socket is not None:
            self.socket.parent.mkdir(exist_ok=True)  # stop removed it
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--protected-mode", "yes", "--logfile", str(LOG_DIR / f"redis-{self.port}.log"),
             *(["--unixsocket", str(self.socket), "--unixsocketperm", "700"] if self.socket else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        where = {"unix_socket_path": str(self.socket)} if self.socket else {"port": self.port}
        client = redis.Redis(**where, socket_timeout=1, socket_connect_timeout=1)
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
        if self.socket is not None:
            shutil.rmtree(self.socket.parent, ignore_errors=True)
