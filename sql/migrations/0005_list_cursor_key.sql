-- migration: 0005_list_cursor_key
-- The secret that signs list cursors (todo_service/paging.py): an HMAC over each cursor's content,
-- its user and its list, so a changed, truncated or foreign cursor is refused instead of read.
-- Kept in the database, made here once per deployment: every worker and every instance on this
-- database signs and checks with the same key, with nothing to configure, and it survives restarts.
-- 32 bytes from two gen_random_uuid() values (PostgreSQL's strong random source; 244 random bits).
-- To retire every cursor in circulation (clients then start again from the first page):
--   UPDATE signing_keys SET secret = uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
--   WHERE purpose = 'list_cursor';  -- and restart the service, which reads the key once per worker.

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE IF NOT EXISTS signing_keys (
    purpose text PRIMARY KEY,
    secret bytea NOT NULL,
    CONSTRAINT signing_keys_secret_length CHECK (octet_length(secret) >= 32)
);

INSERT INTO signing_keys (purpose, secret)
VALUES ('list_cursor', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
ON CONFLICT (purpose) DO NOTHING;
