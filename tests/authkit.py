"""Real keys, real tokens and a real key-set server for the authentication tests.

Keys are generated here (Ed25519, P-256, RSA-2048, an HS256 secret); tokens are minted with PyJWT,
the library the service verifies with; the key set is served over HTTP on 127.0.0.1.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.support import free_port

SECRET = "hs256-secret-for-the-authentication-tests-0123456789"
ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")


class SigningKey:
    """A private key with its kid and the public JWK the key set publishes."""

    MAKERS = {
        "EdDSA": (ed25519.Ed25519PrivateKey.generate, OKPAlgorithm),
        "ES256": (lambda: ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
        "RS256": (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
    }

    def __init__(self, alg, kid, private=None):
        make, family = self.MAKERS[alg]
        self.alg, self.kid, self.private = alg, kid, private or make()
        self.jwk = {**family.to_jwk(self.private.public_key(), as_dict=True), "kid": kid, "use": "sig", "alg": alg}

    def sign(self, claims, **header):
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **header})


def claims_for(user, seconds=3600, **extra):
    now = int(time.time())
    return {"sub": user, "iat": now, "exp": now + seconds, **extra}


class KeySetServer:
    """Serves {"keys": [...]} at /jwks on 127.0.0.1; can be stopped, started, held and counted."""

    def __init__(self, keys=()):
        self.port = free_port()
        self.keys = list(keys)
        self.fetches = 0
        self.document = None  # served instead of the keys when set
        self.drip = 0  # seconds between five pieces of the answer
        self.release = threading.Event()
        self.release.set()
        self.httpd = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/jwks"

    def start(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.fetches += 1
                owner.release.wait(30)
                document = owner.document if owner.document is not None else {"keys": [k.jwk for k in owner.keys]}
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for start in range(0, len(body), max(len(body) // 5, 1) if owner.drip else len(body)):
                    self.wfile.write(body[start:start + max(len(body) // 5, 1)] if owner.drip else body)
                    self.wfile.flush()
                    time.sleep(owner.drip)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.release.set()
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
