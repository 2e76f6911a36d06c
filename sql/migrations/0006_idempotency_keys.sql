-- migration: 0006_idempotency_keys
-- The stored answers of writes sent with an Idempotency-Key (todo_service/idempotency.py).
-- A row is written by the same statement as the write it answers, so a key has an answer exactly
-- when its write committed. The primary key is what makes a second write impossible: a concurrent
-- request with the same key fails on it and its own write rolls back with it.
-- request_hash: SHA-256 of the request (method, endpoint, task id, validated body), so that a key
-- reused for another request is refused instead of answered with the first one's answer.
-- body: the answer's JSON exactly as sent; etag: its entity tag, unquoted; location: its Location.
-- expires_at: when the key may be used for a new request; the service deletes expired rows itself,
-- oldest first, in small batches (idempotency_keys_expires_idx).

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id text NOT NULL,
    idempotency_key text NOT NULL,
    request_hash bytea NOT NULL,
    status bigint NOT NULL,
    body bytea NOT NULL,
    location text,
    etag text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, idempotency_key),
    CONSTRAINT idempotency_keys_key_format CHECK (idempotency_key ~ '^[!-~]{1,255}$'),
    CONSTRAINT idempotency_keys_success CHECK (status BETWEEN 200 AND 299)
);

CREATE INDEX IF NOT EXISTS idempotency_keys_expires_idx ON idempotency_keys (expires_at);
