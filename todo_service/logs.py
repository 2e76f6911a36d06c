"""Logging setup: readable text or one JSON object per line, each record tagged with its request id."""

import json
import logging
import sys
import time

from flask import g, has_request_context

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record ("-" outside a request)."""

    def filter(self, record):
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, the time in UTC; the date and time to the second formatted once per second, not per record."""

    converter = time.gmtime
    _second = (None, "")  # (whole second, its text): one attribute, so threads never see half an update

    def formatTime(self, record, datefmt=None):
        second, text = self._second
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request fields when the record has them."""

    EXTRA = ("request_id", "method", "path", "status", "duration_ms", "user")

    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: getattr(record, key) for key in self.EXTRA if hasattr(record, key)})
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level="INFO", fmt="text"):
    """Send all logs to stderr in the chosen format; safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    # No format here names the caller's file, line or function: skip the frame walk that finds them
    # for every record (the logging HOWTO's "Optimization"; gunicorn's formats name none either).
    logging._srcfile = None
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # psycopg's pool narrates every checkout at INFO: noise in the logs and CPU on every request.
    logging.getLogger("psycopg.pool").setLevel(max(logging.WARNING, root.level))
