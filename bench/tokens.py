"""Bearer tokens for the auth scenarios, as Better Auth issues them: EdDSA, a key set served over HTTP.

The benchmark makes an Ed25519 key, serves its public half as a JSON Web Key Set on 127.0.0.1, points
the service at it (AUTH_JWKS_URL) and hands wrk one token per seeded user in a file.
"""

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

KID = "bench-ed25519"


@contextmanager
def key_set():
    """(JWKS URL, private key) while a key-set server runs on 127.0.0.1."""
    private = ed25519.Ed25519PrivateKey.generate()
    body = json.dumps({"keys": [{**OKPAlgorithm.to_jwk(private.public_key(), as_dict=True),
                                 "kid": KID, "alg": "EdDSA", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/auth/jwks", private
    finally:
        server.shutdown()
        server.server_close()


def write_tokens(path, private, users, hours=4):
    """One `user token` line per user id, each signed like a signed-in user's session token."""
    now = int(time.time())
    with open(path, "w") as out:
        for user in users:
            claims = {"sub": user, "iat": now, "exp": now + hours * 3600}
            out.write(f"{user} {jwt.encode(claims, private, algorithm='EdDSA', headers={'kid': KID})}\n")
    return path
