"""The auth server's JSON Web Key Set: fetched with PyJWT's client, kept per worker, refreshed quietly.

A request never waits for a refresh while a kept key fits its token: an old set is refreshed on a
background thread. A token whose `kid` is not in the kept set (the auth server rotated its keys)
triggers one fetch, at most one every `min_refetch` seconds per worker, so a flood of forged kids
cannot make the service hammer the auth server.
"""

import logging
import threading
import time
from urllib.parse import urlsplit

from jwt import PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWKClientError, PyJWKSetError

log = logging.getLogger(__name__)
ACCEPTED_ALGORITHMS = frozenset({"EdDSA", "ES256", "RS256"})
FETCH_TIMEOUT_SECONDS = 3.0
REFRESH_AFTER_SECONDS = 300.0
MIN_REFETCH_SECONDS = 30.0


class KeySetUnavailable(Exception):
    """The key set cannot be fetched and no kept key matches the token."""


class KeySet:
    """Signing keys by `kid`, as last fetched from `url`; thread-safe."""

    def __init__(self, url, refresh_after=REFRESH_AFTER_SECONDS, min_refetch=MIN_REFETCH_SECONDS,
                 timeout=FETCH_TIMEOUT_SECONDS):
        self.url, self.host = url, urlsplit(url).netloc
        self.refresh_after, self.min_refetch = refresh_after, min_refetch
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout,
                                   headers={"User-Agent": "todo_service", "Accept": "application/json"})
        self._keys = None  # {kid: PyJWK} once a fetch has succeeded
        self._fetched_at = float("-inf")  # last successful fetch
        self._refetched_at = float("-inf")  # last fetch asked for by an unknown kid
        self._refreshed_at = float("-inf")  # last background refresh
        self._tried = self._failed = False
        self._fetch_lock = threading.Lock()
        self._refreshing = threading.Lock()

    def key(self, kid):
        """The key for `kid`, or None when the auth server does not have it; KeySetUnavailable when unknown."""
        if self.has(kid):
            return self._keys[kid]
        with self._fetch_lock:  # one fetch at a time; the others then find its result
            if not self.has(kid, refresh=False):
                now = time.monotonic()
                if not self._tried:
                    self._fetch()
                elif now - self._refetched_at >= self.min_refetch:
                    self._refetched_at = now
                    self._fetch()
        if self.has(kid, refresh=False):
            return self._keys[kid]
        if self._keys is None or self._failed:
            raise KeySetUnavailable(f"the key set at {self.host} cannot be fetched")
        return None

    def has(self, kid, refresh=True):
        """True while `kid` is in the kept set; an old set is refreshed in the background."""
        keys = self._keys
        if refresh and keys is not None and time.monotonic() - self._fetched_at > self.refresh_after:
            self._refresh_in_background()
        return keys is not None and kid in keys

    def _fetch(self):
        """Fetch the set now and keep it on success; callers hold the fetch lock."""
        self._tried = True
        try:
            keys = self._parse(self._client.fetch_data())
        except (PyJWKClientError, ValueError) as exc:
            if not self._failed:
                log.error("auth: cannot fetch the key set from %s: %s", self.host, exc)
            self._failed = True
            return
        if self._failed:
            log.warning("auth: key set at %s reachable again", self.host)
        self._keys, self._fetched_at, self._failed = keys, time.monotonic(), False

    @staticmethod
    def _parse(document):
        """Signing keys of an accepted algorithm that have a `kid`; an empty set is a valid answer."""
        if not document.get("keys"):
            return {}
        try:
            keys = PyJWKSet.from_dict(document)
        except PyJWKSetError:
            return {}
        return {key.key_id: key for key in keys if key.key_id and key.public_key_use in ("sig", None)
                and key.algorithm_name in ACCEPTED_ALGORITHMS}

    def _refresh_in_background(self):
        """Start one refresh thread, unless one runs or the last one began under `min_refetch` seconds ago."""
        now = time.monotonic()
        if now - self._refreshed_at < self.min_refetch or not self._refreshing.acquire(blocking=False):
            return
        self._refreshed_at = now

        def refresh():
            try:
                with self._fetch_lock:
                    self._fetch()
            finally:
                self._refreshing.release()

        threading.Thread(target=refresh, name="jwks-refresh", daemon=True).start()

    def prefetch(self):
        """Fetch once now; True when the set was fetched."""
        with self._fetch_lock:
            self._fetch()
        return not self._failed
