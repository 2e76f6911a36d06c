"""Bearer-token authentication for /api/: the frontend's JWT must name the path's user.

Runs before anything else looks at the request (path, query, body, database). The algorithm comes
from the configured key, never from the token alone: HS256 only with AUTH_JWT_SECRET, and EdDSA,
ES256 or RS256 only with the key of that `kid` in the AUTH_JWKS_URL set, whose type fixes it.
"""

import logging
import threading
import time
from urllib.parse import urlsplit

import jwt
from cachetools import LRUCache
from flask import current_app, g, request

from .errors import ApiError
from .jwks import ACCEPTED_ALGORITHMS, KeySet, KeySetUnavailable

log = logging.getLogger(__name__)
REALM = 'Bearer realm="todo_service"'
RETRY_AFTER_SECONDS = "5"
VERIFIED_TOKENS = 4096  # per worker: a signed-in user's token is verified once, then looked up

# PyJWT's errors as the short reason the WWW-Authenticate header carries (no quotes or backslashes).
REASONS = [
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidIssuerError, "the token has the wrong issuer"),
    (jwt.InvalidAudienceError, "the token has the wrong audience"),
    (jwt.InvalidSignatureError, "the token signature is invalid"),
    (jwt.InvalidAlgorithmError, "the token algorithm is not accepted"),
    (jwt.DecodeError, "the token is malformed"),
]


class InvalidToken(Exception):
    """The token cannot be trusted; the message is the short reason."""


def auth_required():
    """401 AUTH_REQUIRED: no bearer token at all."""
    return ApiError(401, "AUTH_REQUIRED", "Sign in: send 'Authorization: Bearer <token>'.",
                    headers={"WWW-Authenticate": REALM})


def invalid_token(reason):
    """401 INVALID_TOKEN with RFC 6750's error attributes."""
    challenge = f'{REALM}, error="invalid_token", error_description="{reason}"'
    return ApiError(401, "INVALID_TOKEN", f"The access token is not accepted: {reason}. Sign in again.",
                    headers={"WWW-Authenticate": challenge})


class Verifier:
    """Checks tokens against the configured secret and key set; remembers the ones it accepted."""

    def __init__(self, settings, keyset=None):
        self.secret = settings.auth_jwt_secret
        self.keyset = keyset
        self.claim = settings.auth_user_claim
        self.leeway = settings.auth_leeway_seconds
        self.decode_args = {
            "issuer": settings.auth_issuer,
            "audience": settings.auth_audience,
            "leeway": self.leeway,
            "options": {"require": ["exp"], "verify_aud": settings.auth_audience is not None, "verify_sub": False},
        }
        self._verified = LRUCache(VERIFIED_TOKENS)
        self._lock = threading.Lock()

    def _key(self, header):
        """The key and the one algorithm it allows, chosen by the configuration."""
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise InvalidToken("the token algorithm is not accepted")
        if alg == "HS256" and self.secret:
            return self.secret, "HS256"
        if alg in ACCEPTED_ALGORITHMS and self.keyset is not None:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise InvalidToken("the token names no signing key")
            key = self.keyset.key(kid)
            if key is None:
                raise InvalidToken("the token signing key is unknown")
            if key.algorithm_name != alg:
                raise InvalidToken("the token algorithm does not match its key")
            return key, alg
        raise InvalidToken("the token algorithm is not accepted")

    def user_of(self, token):
        """The user id the token names; InvalidToken or KeySetUnavailable otherwise.

        A token verified before is looked up instead (an EdDSA check costs about 90 µs, a tenth of a
        request): it stays good until its `exp` and while the very key that verified it is kept.
        """
        with self._lock:
            remembered = self._verified.get(token)
        if remembered is not None:
            user, expires, kid, key = remembered
            if time.time() < expires + self.leeway and (kid is None or self.keyset.get(kid) is key):
                return user
            with self._lock:
                self._verified.pop(token, None)
        user, expires, kid, key = self._check(token)
        with self._lock:
            self._verified[token] = (user, expires, kid, key)
        return user

    def _check(self, token):
        """Verify the token in full: (user, exp, and the kid and key of a key-set key, or None, None)."""
        try:
            header = jwt.get_unverified_header(token)
            key, alg = self._key(header)
            claims = jwt.decode(token, key, algorithms=[alg], **self.decode_args)
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            reason = next((text for kind, text in REASONS if isinstance(exc, kind)), "the token is invalid")
            raise InvalidToken(reason) from None
        user = claims.get(self.claim)
        if not isinstance(user, str) or not user:
            raise InvalidToken(f"the {self.claim} claim is not a non-empty string")
        if alg == "HS256":
            return user, int(claims["exp"]), None, None
        return user, int(claims["exp"]), header["kid"], key


def _path_user():
    """The user id the path names: as routing read it, or the first segment after /api/."""
    user = g.get("path_user_id")
    if user is None:
        user = request.path[len("/api/"):].split("/", 1)[0] or None
    return user


def verified_user():
    """The user the request's bearer token names, verified once per request; None without a good token.

    The rate limiter asks first (a verified user spends their own budget, anyone else their address's),
    then `authenticate` answers the failure this remembers.
    """
    if "token_user" not in g:
        try:
            g.token_user = _token_user()
        except ApiError as exc:
            g.token_user, g.token_error = None, exc
    return g.token_user


def _token_user():
    """The verified user of the Authorization header; ApiError (401, 503) otherwise."""
    credentials = request.authorization
    if credentials is None or credentials.type != "bearer":
        raise auth_required()
    if not credentials.token:
        raise invalid_token("the token is malformed")
    return _verify(current_app.extensions["todo_auth"], credentials.token)


def authenticate():
    """Before any other work on /api/: 401 without a valid token, 403 for another user's path."""
    if not request.path.startswith("/api/"):
        return
    if request.method == "OPTIONS" and "Origin" in request.headers \
            and "Access-Control-Request-Method" in request.headers:
        return  # a CORS preflight carries no credentials by design
    user = verified_user()
    if user is None:
        raise g.token_error
    g.auth_user = user
    path_user = _path_user()
    if path_user is not None and path_user != user:
        raise ApiError(403, "FORBIDDEN", "This token does not give access to another user's tasks.")


def _verify(verifier, token):
    try:
        return verifier.user_of(token)
    except InvalidToken as exc:
        raise invalid_token(str(exc)) from None
    except KeySetUnavailable:
        raise ApiError(503, "AUTH_UNAVAILABLE", "Sign-in cannot be checked right now; retry in a few seconds.",
                       headers={"Retry-After": RETRY_AFTER_SECONDS}) from None


def describe(settings):
    """The mode in force, for the startup log; never the secret."""
    jwks = urlsplit(settings.auth_jwks_url).netloc if settings.auth_jwks_url else "none"
    return (f"authentication on: JWKS host {jwks}, HS256 secret {'yes' if settings.auth_jwt_secret else 'no'}, "
            f"issuer {settings.auth_issuer or 'any'}, audience {settings.auth_audience or 'any'}, "
            f"user claim {settings.auth_user_claim}")


def mint(settings, user, seconds=3600):
    """A token for `user` signed with AUTH_JWT_SECRET, carrying the configured issuer and audience."""
    now = int(time.time())
    claims = {settings.auth_user_claim: user, "iat": now, "exp": now + seconds}
    if settings.auth_issuer:
        claims["iss"] = settings.auth_issuer
    if settings.auth_audience:
        claims["aud"] = settings.auth_audience
    return jwt.encode(claims, settings.auth_jwt_secret, algorithm="HS256")


def init_app(app):
    """Check tokens on every /api/ request when AUTH_JWKS_URL or AUTH_JWT_SECRET is set."""
    settings = app.config["SETTINGS"]
    if not settings.auth_enabled:
        return
    keyset = KeySet(settings.auth_jwks_url, **app.config.get("AUTH_KEYSET_TIMINGS", {})) \
        if settings.auth_jwks_url else None
    if keyset is not None:
        keyset.prefetch()  # this worker's keys, before its first request needs them
    app.extensions["todo_auth"] = Verifier(settings, keyset)
    app.before_request(authenticate)
