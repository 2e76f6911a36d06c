"""Authentication with real tokens and a real key set: every row of the contract, for every algorithm."""

import json
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient

from tests.authkit import ALGORITHMS, SECRET, KeySetServer, SigningKey, claims_for
from tests.conftest import settings_for
from tests.support import free_port
from todo_service import create_app, db

ORIGIN = "http://localhost:3000"
REALM = 'Bearer realm="todo_service"'
ISSUER = AUDIENCE = "https://auth.example.com"


@pytest.fixture(scope="module")
def keys():
    """One signing key per public-key algorithm, plus a spare of each that the set does not publish."""
    made = {alg: SigningKey(alg, f"{alg.lower()}-1") for alg in ALGORITHMS if alg != "HS256"}
    spares = {alg: SigningKey(alg, f"{alg.lower()}-1") for alg in made}  # same kid, other key
    return made, spares


@pytest.fixture
def keyset(keys):
    server = KeySetServer(keys[0].values()).start()
    yield server
    server.stop()


def make_app(database_url, timings=None, **env):
    """The app with authentication settings `env`, and Flask's plain test client (no automatic tokens)."""
    app = create_app({"SETTINGS": settings_for(database_url, **env), "TESTING": True,
                      "AUTH_KEYSET_TIMINGS": timings or {}})
    app.test_client_class = FlaskClient
    return app


@pytest.fixture
def auth_app(database_url, clean_db, keyset):
    """Both a key set and a secret, with issuer and audience checked (as with Better Auth)."""
    app = make_app(database_url, AUTH_JWKS_URL=keyset.url, AUTH_JWT_SECRET=SECRET, AUTH_ISSUER=ISSUER,
                   AUTH_AUDIENCE=AUDIENCE)
    yield app
    db.close_pool(app)


@pytest.fixture
def client(auth_app):
    return auth_app.test_client()


def sign(keys, alg, claims, **header):
    """A token signed by the published key of `alg` (or the HS256 secret)."""
    if alg == "HS256":
        return jwt.encode(claims, SECRET, algorithm="HS256", headers=header or None)
    return keys[0][alg].sign(claims, **header)


def good(user="alice", **extra):
    return claims_for(user, **{"iss": ISSUER, "aud": AUDIENCE, **extra})


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status, code):
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error_code"] == code and body["detail"] and "request_id" in body
    return body


def assert_invalid(response):
    assert_error(response, 401, "INVALID_TOKEN")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'{REALM}, error="invalid_token", error_description="'), challenge
    assert challenge.endswith('"') and len(challenge) > len(REALM) + 50


# --- every row, for every algorithm ---------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_valid_token_reaches_its_users_tasks(client, keys, alg):
    token = sign(keys, alg, good())
    created = client.post("/api/alice/tasks", json={"title": "mine"}, headers=bearer(token))
    assert created.status_code == 201
    listed = client.get("/api/alice/tasks", headers=bearer(token))
    assert listed.status_code == 200 and [t["title"] for t in listed.get_json()] == ["mine"]


BAD_CLAIMS = {
    "expired": lambda: good(exp=int(time.time()) - 3600),
    "not yet valid": lambda: good(nbf=int(time.time()) + 3600),
    "issued in the future": lambda: good(iat=int(time.time()) + 3600),
    "no exp": lambda: {k: v for k, v in good().items() if k != "exp"},
    "wrong issuer": lambda: good(iss="https://evil.example.com"),
    "no issuer": lambda: {k: v for k, v in good().items() if k != "iss"},
    "wrong audience": lambda: good(aud="https://other.example.com"),
    "no audience": lambda: {k: v for k, v in good().items() if k != "aud"},
    "no user claim": lambda: {k: v for k, v in good().items() if k != "sub"},
    "empty user claim": lambda: good(user=""),
    "numeric user claim": lambda: {**good(), "sub": 42},
}


@pytest.mark.parametrize("case", BAD_CLAIMS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_untrustworthy_claims_are_401_invalid_token(client, keys, alg, case):
    assert_invalid(client.get("/api/alice/tasks", headers=bearer(sign(keys, alg, BAD_CLAIMS[case]()))))


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_bad_signature_is_401(client, keys, alg):
    if alg == "HS256":
        token = jwt.encode(good(), "another-secret-that-is-long-enough-0123456789", algorithm="HS256")
    else:
        token = keys[1][alg].sign(good())  # same kid, a key the auth server never published
    assert_invalid(client.get("/api/alice/tasks", headers=bearer(token)))
    head, payload, signature = sign(keys, alg, good()).split(".")
    tampered = jwt.utils.base64url_encode(b'{"sub":"bob"' + jwt.utils.base64url_decode(payload)[14:]).decode()
    assert_invalid(client.get("/api/bob/tasks", headers=bearer(f"{head}.{tampered}.{signature}")))


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_another_users_token_is_403_on_every_endpoint_and_changes_nothing(client, keys, sql_conn, alg):
    alice = bearer(sign(keys, alg, good("alice")))
    task = client.post("/api/alice/tasks", json={"title": "private"}, headers=alice).get_json()
    before = sql_conn.execute("SELECT * FROM tasks ORDER BY id").fetchall()
    mallory = bearer(sign(keys, alg, good("mallory")))
    base = f"/api/alice/tasks/{task['id']}"
    for method, path in [("get", "/api/alice/tasks"), ("post", "/api/alice/tasks"), ("get", base),
                         ("get", "/api/alice/tasks/changes"),
                         ("put", base), ("patch", base + "/complete"), ("delete", base),
                         ("get", "/api/alice/nowhere"), ("post", base)]:
        response = getattr(client, method)(path, json={"title": "stolen"}, headers=mallory)
        body = assert_error(response, 403, "FORBIDDEN")
        assert "private" not in response.get_data(as_text=True) and body["field"] is None
    assert sql_conn.execute("SELECT * FROM tasks ORDER BY id").fetchall() == before


# --- the header itself ------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="},
                                     {"Authorization": "Token abc"}, {"Authorization": ""}])
def test_no_bearer_token_is_401_auth_required(client, headers):
    response = client.get("/api/alice/tasks", headers=headers)
    assert_error(response, 401, "AUTH_REQUIRED")
    assert response.headers["WWW-Authenticate"] == REALM


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_scheme_name_is_case_insensitive(client, keys, scheme):
    token = sign(keys, "EdDSA", good())
    assert client.get("/api/alice/tasks", headers={"Authorization": f"{scheme} {token}"}).status_code == 200


def crafted(header, claims, signature=b"signature"):
    """A token with any header and claims (JSON values of any type), signed by nobody."""
    parts = [jwt.utils.base64url_encode(json.dumps(part).encode()) for part in (header, claims)]
    return b".".join([*parts, jwt.utils.base64url_encode(signature)]).decode()


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30", "....", "x" * 500,
                                   crafted({"alg": ["EdDSA"], "kid": "eddsa-1"}, claims_for("alice")),
                                   crafted({"alg": {}, "kid": "eddsa-1"}, claims_for("alice")),
                                   crafted({"alg": None}, claims_for("alice")),
                                   crafted({"alg": "EdDSA", "kid": 7}, claims_for("alice")),
                                   crafted({"alg": "EdDSA", "kid": ["eddsa-1"]}, claims_for("alice")),
                                   crafted({"alg": "EdDSA"}, claims_for("alice")),
                                   crafted([1, 2], claims_for("alice")),
                                   crafted({"alg": "HS256"}, [1, 2])])
def test_malformed_tokens_are_401_invalid_token(client, token):
    assert_invalid(client.get("/api/alice/tasks", headers={"Authorization": f"Bearer {token}"}))


def test_two_authorization_headers_are_not_a_way_in(client, keys):
    good_token = sign(keys, "EdDSA", good("alice"))
    response = client.get("/api/alice/tasks", headers=[("Authorization", "Bearer forged"),
                                                       ("Authorization", f"Bearer {good_token}")])
    assert response.status_code == 401


def test_a_token_is_read_only_from_the_authorization_header(client, keys):
    token = sign(keys, "EdDSA", good())
    assert_error(client.get(f"/api/alice/tasks?access_token={token}"), 401, "AUTH_REQUIRED")
    client.set_cookie("access_token", token)
    client.set_cookie("token", token)
    assert_error(client.get("/api/alice/tasks"), 401, "AUTH_REQUIRED")


def test_a_header_over_8_kib_is_431_or_401_never_500(client, keys):
    token = sign(keys, "HS256", good(padding="p" * 9000))
    assert client.get("/api/alice/tasks", headers=bearer(token)).status_code in (401, 431)


def test_a_percent_encoded_user_id_is_compared_after_decoding(client, keys):
    token = bearer(sign(keys, "RS256", good("auth0|5f7c8ec7")))
    assert client.post("/api/auth0%7C5f7c8ec7/tasks", json={"title": "t"}, headers=token).status_code == 201
    assert client.get("/api/auth0|5f7c8ec7/tasks", headers=token).get_json()[0]["user_id"] == "auth0|5f7c8ec7"
    assert_error(client.get("/api/auth0%7C5f7c8ec8/tasks", headers=token), 403, "FORBIDDEN")


# --- algorithms come from the configuration, never from the token -------------------------------------

def test_alg_none_is_rejected(client):
    token = jwt.encode(good(), None, algorithm="none")
    assert_invalid(client.get("/api/alice/tasks", headers=bearer(token)))


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS512", "PS256", "ES384"])
def test_algorithms_other_than_the_accepted_ones_are_rejected(client, keys, alg):
    key = SECRET if alg.startswith("HS") else None
    if key is None:
        head = jwt.utils.base64url_encode(f'{{"alg":"{alg}","kid":"rs256-1","typ":"JWT"}}'.encode()).decode()
        body = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(good()).encode()).decode()
        token = f"{head}.{body}.c2lnbmF0dXJl"
    else:
        token = jwt.encode(good(), key, algorithm=alg)
    assert_invalid(client.get("/api/alice/tasks", headers=bearer(token)))


def test_a_token_whose_algorithm_does_not_match_its_key_is_rejected(client, keys):
    forged = keys[0]["ES256"].sign(good(), kid="eddsa-1")  # ES256 signature under the Ed25519 key's kid
    assert_invalid(client.get("/api/alice/tasks", headers=bearer(forged)))


def test_the_hs256_public_key_confusion_token_is_rejected(database_url, clean_db, keyset, keys):
    """An HS256 token whose 'secret' is the RSA public key's PEM, with only the key set configured."""
    pem = keys[0]["RS256"].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","kid":"rs256-1","typ":"JWT"}')
    payload = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(claims_for("alice")).encode())
    import hmac
    signature = jwt.utils.base64url_encode(hmac.digest(pem, header + b"." + payload, "sha256"))
    token = b".".join([header, payload, signature]).decode()
    app = make_app(database_url, AUTH_JWKS_URL=keyset.url)
    try:
        assert_invalid(app.test_client().get("/api/alice/tasks", headers=bearer(token)))
        # and a real HS256 token is refused too when no secret is configured
        hs = jwt.encode(claims_for("alice"), SECRET, algorithm="HS256")
        assert_invalid(app.test_client().get("/api/alice/tasks", headers=bearer(hs)))
        assert app.test_client().get("/api/alice/tasks",
                                     headers=bearer(keys[0]["RS256"].sign(claims_for("alice")))).status_code == 200
    finally:
        db.close_pool(app)


def test_with_only_a_secret_public_key_tokens_are_rejected(database_url, clean_db, keys):
    app = make_app(database_url, AUTH_JWT_SECRET=SECRET)
    try:
        client = app.test_client()
        assert client.get("/api/alice/tasks", headers=bearer(sign(keys, "HS256", claims_for("alice")))).status_code \
            == 200
        assert_invalid(client.get("/api/alice/tasks", headers=bearer(sign(keys, "EdDSA", claims_for("alice")))))
    finally:
        db.close_pool(app)


# --- time: leeway edges ---------------------------------------------------------------------------

@pytest.mark.parametrize("leeway,claims,accepted", [
    (30, {"exp": -20}, True), (30, {"exp": -40}, False),
    (30, {"nbf": 20}, True), (30, {"nbf": 40}, False),
    (30, {"iat": 20}, True), (30, {"iat": 40}, False),
    (0, {"exp": -2}, False), (0, {"nbf": 5}, False), (120, {"exp": -100}, True),
])
def test_clock_skew_is_allowed_up_to_the_leeway(database_url, clean_db, leeway, claims, accepted):
    app = make_app(database_url, AUTH_JWT_SECRET=SECRET, AUTH_LEEWAY_SECONDS=str(leeway))
    now = int(time.time())
    token = jwt.encode({**claims_for("alice"), **{k: now + v for k, v in claims.items()}}, SECRET, algorithm="HS256")
    try:
        response = app.test_client().get("/api/alice/tasks", headers=bearer(token))
        if accepted:
            assert response.status_code == 200, response.get_json()
        else:
            assert_invalid(response)
    finally:
        db.close_pool(app)


def test_a_remembered_token_stops_working_when_it_expires(database_url, clean_db):
    app = make_app(database_url, AUTH_JWT_SECRET=SECRET, AUTH_LEEWAY_SECONDS="0")
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 2}, SECRET, algorithm="HS256")
    try:
        client = app.test_client()
        assert client.get("/api/alice/tasks", headers=bearer(token)).status_code == 200
        time.sleep(2.2)
        assert_invalid(client.get("/api/alice/tasks", headers=bearer(token)))
    finally:
        db.close_pool(app)


def test_a_custom_user_claim(database_url, clean_db):
    app = make_app(database_url, AUTH_JWT_SECRET=SECRET, AUTH_USER_CLAIM="user_id")
    try:
        client = app.test_client()
        right = jwt.encode({"user_id": "alice", "sub": 7, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
        assert client.get("/api/alice/tasks", headers=bearer(right)).status_code == 200
        only_sub = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
        assert_invalid(client.get("/api/alice/tasks", headers=bearer(only_sub)))
    finally:
        db.close_pool(app)


# --- the key set: rotation, outages, refetch limits --------------------------------------------------

def wait_for_fetches(keyset, count, within=10):
    """Until the auth server has been asked `count` times (a background refresh reached it)."""
    deadline = time.monotonic() + within
    while keyset.fetches < count and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def jwks_app(database_url, clean_db, keyset):
    """Key set only; refreshed after 1 s so a test can see a refresh, refetched at most every 30 s."""
    app = make_app(database_url, timings={"refresh_after": 1.0}, AUTH_JWKS_URL=keyset.url)
    yield app
    db.close_pool(app)


def test_a_new_kid_in_the_set_is_fetched_once(jwks_app, keyset, keys):
    client = jwks_app.test_client()
    assert client.get("/api/alice/tasks", headers=bearer(sign(keys, "EdDSA", claims_for("alice")))).status_code == 200
    assert keyset.fetches == 1
    rotated = SigningKey("EdDSA", "eddsa-2")
    keyset.keys.append(rotated)
    token = rotated.sign(claims_for("alice"))
    assert client.get("/api/alice/tasks", headers=bearer(token)).status_code == 200
    assert client.get("/api/alice/tasks", headers=bearer(token)).status_code == 200
    assert keyset.fetches == 2


def test_a_removed_key_stops_working_after_the_refresh(jwks_app, keyset, keys):
    client = jwks_app.test_client()
    old = bearer(sign(keys, "ES256", claims_for("alice")))
    assert client.get("/api/alice/tasks", headers=old).status_code == 200
    keyset.keys = [k for k in keyset.keys if k.alg != "ES256"]
    time.sleep(1.2)  # the kept set is now older than its refresh interval
    assert client.get("/api/alice/tasks", headers=old).status_code == 200  # served from the kept set...
    deadline = time.monotonic() + 10
    while keyset.fetches < 2 and time.monotonic() < deadline:  # ...while it is refreshed in the background
        time.sleep(0.05)
    time.sleep(0.2)
    assert_invalid(client.get("/api/alice/tasks", headers=old))


def test_unknown_kids_refetch_the_set_at_most_once_per_30_seconds(jwks_app, keyset, keys):
    client = jwks_app.test_client()
    assert client.get("/api/alice/tasks", headers=bearer(sign(keys, "RS256", claims_for("alice")))).status_code == 200
    for number in range(40):
        forged = SigningKey("EdDSA", f"forged-{number}").sign(claims_for("alice"))
        assert_invalid(client.get("/api/alice/tasks", headers=bearer(forged)))
    assert keyset.fetches == 2


def test_no_request_waits_for_a_refresh_while_a_kept_key_fits(jwks_app, keyset, keys):
    client = jwks_app.test_client()
    token = bearer(sign(keys, "EdDSA", claims_for("alice")))
    fresh = bearer(sign(keys, "RS256", claims_for("alice")))  # never verified before: a full check
    assert client.get("/api/alice/tasks", headers=token).status_code == 200
    time.sleep(1.2)
    keyset.release.clear()  # the auth server now holds every fetch until released
    try:
        assert client.get("/api/alice/tasks", headers=token).status_code == 200  # starts the refresh
        wait_for_fetches(keyset, 2)
        assert keyset.fetches == 2  # the refresh is now held at the auth server...
        answered = []
        worker = threading.Thread(target=lambda: answered.extend(
            client.get("/api/alice/tasks", headers=headers).status_code for headers in (token, fresh)))
        worker.start()
        worker.join(10)
        assert answered == [200, 200]  # ...and requests whose key is kept are answered meanwhile
    finally:
        keyset.release.set()


@pytest.mark.parametrize("document", [{}, {"error": "maintenance"}, {"keys": []}, {"keys": "abc"}, {"keys": [1]},
                                      {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}])
def test_an_answer_without_usable_keys_keeps_the_kept_ones(jwks_app, keyset, keys, document):
    client = jwks_app.test_client()
    kept = bearer(sign(keys, "EdDSA", claims_for("alice")))
    assert client.get("/api/alice/tasks", headers=kept).status_code == 200
    keyset.document = document
    unknown = SigningKey("EdDSA", "rotated").sign(claims_for("alice"))
    assert_error(client.get("/api/alice/tasks", headers=bearer(unknown)), 503, "AUTH_UNAVAILABLE")
    assert keyset.fetches == 2
    never_seen = bearer(sign(keys, "RS256", claims_for("alice")))
    assert client.get("/api/alice/tasks", headers=never_seen).status_code == 200
    assert client.get("/api/alice/tasks", headers=kept).status_code == 200


def test_a_key_replaced_under_the_same_kid_retires_tokens_of_the_old_key(jwks_app, keyset, keys):
    client = jwks_app.test_client()
    old = bearer(sign(keys, "EdDSA", claims_for("alice")))
    assert client.get("/api/alice/tasks", headers=old).status_code == 200
    replacement = SigningKey("EdDSA", "eddsa-1")
    keyset.keys = [replacement if k.alg == "EdDSA" else k for k in keyset.keys]
    time.sleep(1.2)
    client.get("/api/alice/tasks", headers=old)  # starts the background refresh
    wait_for_fetches(keyset, 2)
    time.sleep(0.3)
    assert_invalid(client.get("/api/alice/tasks", headers=old))
    assert client.get("/api/alice/tasks", headers=bearer(replacement.sign(claims_for("alice")))).status_code == 200


@pytest.mark.parametrize("stall", ["silent", "slow"])
def test_a_stalling_auth_server_is_given_up_on_after_the_fetch_timeout(database_url, clean_db, keys, stall):
    """Silent: no answer at all. Slow: five pieces 0.5 s apart, each read within the timeout, 2.5 s in all."""
    server = KeySetServer(keys[0].values()).start()
    if stall == "silent":
        server.release.clear()
    else:
        server.drip = 0.5
    app = make_app(database_url, timings={"timeout": 1.0}, AUTH_JWKS_URL=server.url)
    try:
        started = time.monotonic()
        response = app.test_client().get("/api/alice/tasks", headers=bearer(sign(keys, "EdDSA", claims_for("alice"))))
        assert_error(response, 503, "AUTH_UNAVAILABLE")
        assert time.monotonic() - started < 4.5
    finally:
        server.stop()
        db.close_pool(app)


def test_auth_server_down_at_startup_is_503_then_recovers(database_url, clean_db, keys):
    server = KeySetServer(keys[0].values())  # not started: nothing listens on its port yet
    app = make_app(database_url, timings={"min_refetch": 0.5}, AUTH_JWKS_URL=server.url)
    token = bearer(sign(keys, "EdDSA", claims_for("alice")))
    try:
        client = app.test_client()
        response = client.get("/api/alice/tasks", headers=token)
        assert_error(response, 503, "AUTH_UNAVAILABLE")
        assert int(response.headers["Retry-After"]) > 0
        assert_error(client.get("/api/alice/tasks"), 401, "AUTH_REQUIRED")  # no token: still 401 first
        server.start()
        time.sleep(0.6)
        assert client.get("/api/alice/tasks", headers=token).status_code == 200
    finally:
        server.stop()
        db.close_pool(app)


def test_auth_server_down_during_requests_kept_keys_still_work(jwks_app, keyset, keys):
    client = jwks_app.test_client()
    token = bearer(sign(keys, "EdDSA", claims_for("alice")))
    assert client.get("/api/alice/tasks", headers=token).status_code == 200
    keyset.stop()
    assert client.get("/api/alice/tasks", headers=bearer(sign(keys, "RS256", claims_for("alice")))).status_code == 200
    unknown = SigningKey("EdDSA", "not-kept").sign(claims_for("alice"))
    response = client.get("/api/alice/tasks", headers=bearer(unknown))
    assert_error(response, 503, "AUTH_UNAVAILABLE")
    assert response.headers["Retry-After"]


# --- what comes first, and what stays open ----------------------------------------------------------

@pytest.mark.parametrize("method,path,kwargs", [
    ("post", "/api/alice/tasks", {"data": b"{not json", "content_type": "application/json"}),
    ("post", "/api/alice/tasks", {"json": {"title": ""}}),
    ("put", "/api/alice/tasks/abc", {"json": {}}),
    ("get", "/api/alice/tasks?status=bogus", {}),
    ("get", "/api/" + "x" * 300 + "/tasks", {}),
    ("get", "/api/alice/nowhere", {}),
    ("delete", "/api/alice/tasks", {}),
    ("options", "/api/alice/tasks", {}),
    ("post", "/api/alice/tasks", {"data": b"x" * 70_000, "content_type": "application/json"}),
])
def test_authentication_comes_before_validation_and_routing(client, method, path, kwargs):
    response = getattr(client, method)(path, **kwargs)
    assert_error(response, 401, "AUTH_REQUIRED")


def test_authentication_comes_before_the_database(database_url):
    app = make_app(f"postgresql://todo@127.0.0.1:{free_port()}/todo", AUTH_JWT_SECRET=SECRET)
    try:
        assert_error(app.test_client().get("/api/alice/tasks"), 401, "AUTH_REQUIRED")
        assert_error(app.test_client().get("/api/alice/tasks", headers=bearer(jwt.encode(
            claims_for("bob"), SECRET, algorithm="HS256"))), 403, "FORBIDDEN")
    finally:
        db.close_pool(app)


def test_with_a_valid_token_errors_are_the_usual_ones(client, keys):
    token = bearer(sign(keys, "HS256", good()))
    assert_error(client.get("/api/alice/nowhere", headers=token), 404, "NOT_FOUND")
    assert_error(client.delete("/api/alice/tasks", headers=token), 405, "METHOD_NOT_ALLOWED")
    assert_error(client.get("/api/alice/tasks/999", headers=token), 404, "TASK_NOT_FOUND")
    assert_error(client.post("/api/alice/tasks", json={"title": ""}, headers=token), 400, "VALIDATION_ERROR")


def test_probes_and_the_document_stay_open(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    spec = client.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        **spec["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer",
        "bearerFormat": "JWT"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/") and method != "parameters":
                assert operation["security"] == [{"bearerAuth": []}], (method, path)
                assert {"401", "403", "503"} <= set(operation["responses"]), (method, path)
            elif method != "parameters":
                assert "security" not in operation


def test_an_options_request_that_is_no_preflight_needs_a_token(client):
    assert_error(client.options("/api/alice/tasks", headers={"Access-Control-Request-Method": "POST"}),
                 401, "AUTH_REQUIRED")


def test_a_preflight_needs_no_token_and_allows_authorization(client):
    response = client.options("/api/alice/tasks", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_401_and_403_carry_cors_headers_for_allowed_origins(client, keys):
    for headers, status in [({}, 401), (bearer(sign(keys, "EdDSA", good("bob"))), 403)]:
        response = client.get("/api/alice/tasks", headers={"Origin": ORIGIN, **headers})
        assert response.status_code == status
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert "WWW-Authenticate" in response.headers.get("Access-Control-Expose-Headers", "") or status == 403
    response = client.get("/api/alice/tasks", headers={"Origin": "https://evil.example.com"})
    assert response.status_code == 401 and "Access-Control-Allow-Origin" not in response.headers
