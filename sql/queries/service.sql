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

-- name: get_sync_epoch :one
-- The epoch of this database's history, 8 bytes, which the change feed's tokens carry
-- (todo_service/sync.py); list_changes computes the same in its head row. Made of the database's
-- own random secret (migration 0007; a new database has a new one), the database's OID (new after
-- a dump-and-restore into a new database), the cluster's system identifier (new with a new
-- cluster), its timeline (new after a point-in-time restore or a promotion) and Neon's timeline
-- (new on every branch, restores included) where the server has that setting.
-- params: none
-- index: signing_keys_pkey
SELECT
    substring(sha256(
        keys.secret
        || int8send((
            SELECT db.oid FROM pg_database AS db
            WHERE db.datname = current_database()
        )::bigint)
        || int8send((SELECT ctl.system_identifier FROM pg_control_system() AS ctl))
        || int4send((SELECT cp.timeline_id FROM pg_control_checkpoint() AS cp))
        || convert_to(coalesce(current_setting('neon.timeline_id', true), ''), 'UTF8')
    ) FROM 1 FOR 8) AS epoch
FROM signing_keys AS keys
WHERE keys.purpose = 'sync_epoch';
