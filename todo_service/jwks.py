"""The auth server's JSON Web Key Set: fetched with PyJWT's client, kept per worker, refreshed quietly.

A request never waits for a refresh while a kept key fits its token: an old set is refreshed on a
background thread. A token whose `kid` is not in the kept set (the auth server rotated its keys)
triggers one fetch, at most one every `min_refetch` seconds per worker, so a flood of forged kids
cannot make the service hammer the auth server. A fetch gives up after `timeout` seconds in all,
and an answer without usable keys counts as a failed fetch: the kept keys stay in force.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FetchTimeout
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


class UnusableKeySet(ValueError):
    """The auth server answered, but with no key this service can verify with."""


def parse(document):
    """{kid: PyJWK} of the signing keys of an accepted algorithm; UnusableKeySet when there are none."""
    try:
        keys = PyJWKSet.from_dict(document) if isinstance(document.get("keys"), list) else ()
    except PyJWKSetError:
        keys = ()
    usable = {key.key_id: key for key in keys if isinstance(key.key_id, str) and key.key_id
              and key.public_key_use in ("sig", None) and key.algorithm_name in ACCEPTED_ALGORITHMS}
    if not usable:
        raise UnusableKeySet("the key set holds no EdDSA, ES256 or RS256 signing key with a kid")
    return usable


class KeySet:
    """Signing keys by `kid`, as last fetched from `url`; thread-safe."""

    def __init__(self, url, refresh_after=REFRESH_AFTER_SECONDS, min_refetch=MIN_REFETCH_SECONDS,
                 timeout=FETCH_TIMEOUT_SECONDS):
        self.url, self.host, self.timeout = url, urlsplit(url).netloc, timeout
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
        # urllib's timeout bounds each read, not the whole answer: the fetch runs here, and is
        # given up on after `timeout` seconds in all.
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jwks-fetch")

    def key(self, kid):
        """The key for `kid`, or None when the auth server does not have it; KeySetUnavailable when unknown."""
        if (key := self.get(kid)) is not None:
            return key
        # With keys kept, never queue behind a running fetch; with none yet, wait for it (bounded).
        if self._fetch_lock.acquire(timeout=self.timeout + 1 if self._keys is None else 0):
            try:
                now = time.monotonic()
                if self.get(kid, refresh=False) is None:
                    if not self._tried:
                        self._fetch()
                    elif now - self._refetched_at >= self.min_refetch:
                        self._refetched_at = now
                        self._fetch()
            finally:
                self._fetch_lock.release()
        if (key := self.get(kid, refresh=False)) is not None:
            return key
        if self._keys is None or self._failed:
            raise KeySetUnavailable(f"the key set at {self.host} cannot be fetched")
        return None

    def get(self, kid, refresh=True):
        """The kept key for `kid` or None, no fetch; an old set is refreshed in the background."""
        keys = self._keys
        if refresh and keys is not None and time.monotonic() - self._fetched_at > self.refresh_after:
            self._refresh_in_background()
        return None if keys is None else keys.get(kid)

    def _fetch(self):
        """Fetch the set now and keep it if usable; callers hold the fetch lock."""
        self._tried = True
        try:
            keys = parse(self._fetcher.submit(self._client.fetch_data).result(timeout=self.timeout))
        except (PyJWKClientError, ValueError, FetchTimeout) as exc:
            if not self._failed:
                reason = str(exc) or f"no answer within {self.timeout:g} s"
                log.error("auth: cannot fetch the key set from %s: %s; tokens whose key is not kept answer "
                          "503 AUTH_UNAVAILABLE until it can", self.host, reason)
            self._failed = True
            return
        if self._failed:
            log.warning("auth: key set at %s reachable again", self.host)
        self._keys, self._fetched_at, self._failed = keys, time.monotonic(), False

    def _refresh_in_background(self):
        """Start one refresh thread, unless one runs or the last one began under `min_refetch` seconds ago."""
        now = time.monotonic()
        if now - self._refreshed_at < self.min_refetch or not self._refreshing.acquire(blocking=False):
            return
        self._refreshed_at = now
        threading.Thread(target=self._refresh, name="jwks-refresh", daemon=True).start()

    def _refresh(self):
        try:
            with self._fetch_lock:
                self._fetch()
        finally:
            self._refreshing.release()

    def prefetch(self):
        """Fetch the set on a thread now, before the first request needs it."""
        self._refreshing.acquire()
        threading.Thread(target=self._refresh, name="jwks-prefetch", daemon=True).start()
