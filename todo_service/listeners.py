"""Per-worker listening sockets (SO_REUSEPORT) that the gunicorn master opens and keeps.

Each worker accepts from a socket of its own, so the kernel spreads new connections evenly over the
workers (docs/performance.md). A socket a worker opened itself would die with it: the connections
waiting in its queue when it closes (a HUP reload, a crash) are reset. So the master opens one socket
per worker slot before the first fork and holds them all; a worker listens on its slot's socket only,
and the next worker of that slot (the new one of a reload starts before the old one stops) accepts
what is queued there. No connection is lost and none waits for a worker that is gone.
"""

import types
from collections import Counter

from gunicorn.sock import BaseSocket, _sock_type


def usable(address):
    """True when per-worker sockets apply: exactly one TCP bind."""
    return len(address) == 1 and isinstance(address[0], tuple)


def _open(server, count):
    """`count` new SO_REUSEPORT sockets on the one TCP bind, marked as per-worker."""
    address = server.cfg.address[0]
    conf = types.SimpleNamespace(reuse_port=True, backlog=server.cfg.backlog, is_ssl=server.cfg.is_ssl)
    # Named "<socket fd>" in gunicorn's log: the service announces its URL itself (startup.announce).
    kind = type("PerWorkerSocket", (_sock_type(address),), {"__str__": BaseSocket.__str__})
    opened = [kind(address, conf, server.log) for _ in range(count)]
    for listener in opened:
        listener.per_worker = True
    return opened


def open_slots(server):
    """In the master, before it would open a shared socket: one SO_REUSEPORT socket per worker."""
    server.LISTENERS = _open(server, server.cfg.workers)


def resize(server):
    """In the master, on a HUP that changed WEB_CONCURRENCY: one socket per worker again.

    A dropped socket lives on in its old worker until that worker exits, so connections queued on it
    then are reset: lowering the worker count costs those, raising it costs nothing.
    """
    count, wanted = _slots(server), server.cfg.workers
    if count and wanted > count:
        server.LISTENERS = server.LISTENERS + _open(server, wanted - count)
    elif count and wanted < count:
        for listener in server.LISTENERS[wanted:]:
            listener.close()
        server.LISTENERS = server.LISTENERS[:wanted]


def _slots(server):
    """The number of per-worker sockets the master holds (0 once a reload to another bind replaced them)."""
    return len(server.LISTENERS) if all(getattr(lnr, "per_worker", False) for lnr in server.LISTENERS) else 0


def assign(server, worker):
    """In the master, before a fork: give `worker` the slot that the fewest live workers hold."""
    held = Counter(getattr(other, "slot", None) for other in server.WORKERS.values())
    worker.slot = min(range(_slots(server)), key=lambda slot: held[slot], default=None)


def adopt(worker):
    """In the worker, after the fork: keep its slot's socket, close its copies of the others."""
    if getattr(worker, "slot", None) is None:
        return
    mine = worker.sockets[worker.slot]
    for other in worker.sockets:
        if other is not mine:
            other.close()
    worker.sockets = [mine]
