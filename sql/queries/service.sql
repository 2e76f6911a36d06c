-- Statements the service runs outside the tasks API: readiness, the migration runner, signing keys.

-- name: ping :one
-- Readiness probe: proves a connection can run a statement.
-- params: none
-- index: none (no table read)
SELECT 1 AS ok;

-- name: lock_migrations :exec
-- Serialise migration runners across processes and hosts until the transaction ends.
-- Transaction-scoped, so it also holds through PgBouncer in transaction mode.
-- params: none
-- index: none (no table read)
SELECT pg_advisory_xact_lock(7363601001);

-- name: create_migrations_table :exec
-- Bookkeeping table of applied migration files; created on the first run.
-- params: none
-- index: none (DDL)
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: list_migrations :many
-- Every applied migration with the checksum it had when applied.
-- params: none
-- index: schema_migrations_pkey
SELECT version, checksum
FROM schema_migrations
ORDER BY version;

-- name: record_migration :exec
-- Record one migration as applied, in the transaction that applied it.
-- params: version, checksum
-- index: schema_migrations_pkey
INSERT INTO schema_migrations (version, checksum)
VALUES (%(version)s, %(checksum)s);

-- name: set_statement_timeout :exec
-- Bound the statement sent after it; used behind a transaction-mode pooler, where a session-level
-- SET or a startup option would not stick. Sent in the same pipeline as that statement, before one
-- Sync, so both run in one implicit transaction, in one round trip (todo_service/db.py).
-- params: timeout
-- index: none (no table read)
SELECT set_config('statement_timeout', %(timeout)s, true);

-- name: get_signing_key :one
-- The secret for one purpose (migration 0005); 'list_cursor' signs the list cursors.
-- params: purpose
-- index: signing_keys_pkey
SELECT secret
FROM signing_keys
WHERE purpose = %(purpose)s;
