-- migration: 0007_change_feed
-- The change feed (GET /api/{user_id}/tasks/changes), task quotas, and a schema that a distributed
-- PostgreSQL (Citus, sharded by user_id) can take as it is.
--
-- task_list_versions becomes each user's head row, written by every write statement itself
-- (sql/queries/tasks.sql) instead of by triggers:
--   version     random, new with every change (as in 0004): the list caches' and list ETags' key
--   seq         the user's change counter: +1 per writing statement, taken under the row's lock,
--               which the writer holds until it commits, so seq order is commit order per user
--   task_count  the user's tasks, kept by creates and deletes: the quota check (MAX_TASKS_PER_USER)
--   purged_seq  the highest seq whose tombstone has been purged: older sync tokens get 410
-- tasks.change_seq is the seq of the statement that last created or changed the task;
-- task_tombstones keeps (seq, task id) of every deleted task for the retention.
--
-- Citus: every primary key now includes user_id (tasks_pkey becomes (user_id, id)), and no table
-- has a trigger: the list-version bump (0004's statement-level triggers with transition tables)
-- and the updated_at rule (0001's row trigger) move into the write statements. Hand-written SQL
-- that changes tasks outside the service's statements is not seen by the list caches or the feed.
--
-- The primary-key swap and the new index lock tasks while they are built: seconds for a million
-- rows; on a far larger table, build unique and plain indexes CONCURRENTLY by hand first (same
-- names), then run the migration, which then only swaps the constraint (docs/scaling.md).

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '300s';

ALTER TABLE task_list_versions
ADD COLUMN IF NOT EXISTS seq bigint NOT NULL DEFAULT 0,
ADD COLUMN IF NOT EXISTS task_count bigint NOT NULL DEFAULT 0,
ADD COLUMN IF NOT EXISTS purged_seq bigint NOT NULL DEFAULT 0;

ALTER TABLE tasks ADD COLUMN IF NOT EXISTS change_seq bigint NOT NULL DEFAULT 0;

DROP TRIGGER IF EXISTS tasks_list_version_insert ON tasks;
DROP TRIGGER IF EXISTS tasks_list_version_update ON tasks;
DROP TRIGGER IF EXISTS tasks_list_version_delete ON tasks;
DROP TRIGGER IF EXISTS tasks_list_version_truncate ON tasks;
DROP TRIGGER IF EXISTS tasks_touch_updated_at ON tasks;
-- Only the triggers above called these; nothing else may.
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS tasks_bump_list_versions();
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS bump_task_list_versions(text[]);
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS tasks_touch_updated_at();

-- Every user with tasks gets a head row holding their count.
INSERT INTO task_list_versions AS v (user_id, version, task_count)
SELECT owners.user_id, gen_random_uuid() AS version, owners.n AS task_count
FROM (
    SELECT user_id, count(*) AS n FROM tasks
    GROUP BY user_id
) AS owners
ON CONFLICT (user_id) DO UPDATE SET task_count = excluded.task_count;

-- The new key is built as a unique index, then takes over the name tasks_pkey.
-- squawk-ignore require-concurrent-index-creation
CREATE UNIQUE INDEX IF NOT EXISTS tasks_user_id_id_key ON tasks (user_id, id);
-- squawk-ignore ban-drop-constraint
ALTER TABLE tasks DROP CONSTRAINT tasks_pkey;
ALTER TABLE tasks ADD CONSTRAINT tasks_pkey PRIMARY KEY USING INDEX tasks_user_id_id_key;

-- The feed reads a user's changes in seq order from here: a small delta reads only its own rows.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX IF NOT EXISTS tasks_user_change_idx ON tasks (user_id, change_seq, id);

-- One row per deleted task, for the retention (SYNC_TOMBSTONE_DAYS); task ids are never reused.
CREATE TABLE IF NOT EXISTS task_tombstones (
    user_id text NOT NULL,
    seq bigint NOT NULL,
    task_id bigint NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seq, task_id)
);

-- The purge takes the oldest tombstones first, of any user.
CREATE INDEX IF NOT EXISTS task_tombstones_deleted_idx ON task_tombstones (deleted_at);

-- The feed's epoch: part of every sync token; a new database has a new one (the restore rules
-- that also change it are in todo_service/sync.py). 32 random bytes, as the cursor key of 0005.
INSERT INTO signing_keys (purpose, secret)
VALUES ('sync_epoch', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
ON CONFLICT (purpose) DO NOTHING;
