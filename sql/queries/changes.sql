-- The change feed (GET /api/{user_id}/tasks/changes, todo_service/sync.py) and its upkeep.
-- A user's changes are ordered by seq (migration 0007): every write statement takes the next seq
-- of the user's head row under that row's lock and keeps it until it commits, so within one
-- statement's snapshot every seq up to the head's is committed and visible, and nothing can
-- later commit below it. A position in the feed is (seq, id); tasks carry the seq of their last
-- change (change_seq), deleted tasks a tombstone with the seq of their deletion.

-- name: list_changes :many
-- The user's head row, then up to row_limit changes after the position (after_seq, after_id) in
-- (seq, id) order: tasks created or changed since (their current state, each at most once) and
-- tombstones after (gone_seq, gone_id) (the caller moves that bound past what a new client need
-- not hear of). The head row (kind 'head') holds the user's current seq, purged_seq (tombstones
-- up to it are gone), the database's clock (microseconds since 1970) and the epoch of this
-- database's history. One statement, one snapshot: head and changes agree. With row_limit 0, the
-- head row alone (the epoch of a token whose MAC fails).
-- params: user_id, after_seq, after_id, gone_seq, gone_id, row_limit
-- index: tasks_user_change_idx and task_tombstones_pkey and task_list_versions_pkey
WITH changed AS (
    SELECT
        tasks.change_seq AS seq, tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed,
        api_timestamp(tasks.created_at) AS created_at, api_timestamp(tasks.updated_at) AS updated_at
    FROM tasks
    WHERE
        tasks.user_id = %(user_id)s
        AND (tasks.change_seq, tasks.id) > (%(after_seq)s::bigint, %(after_id)s::bigint)
    ORDER BY tasks.change_seq, tasks.id
    LIMIT %(row_limit)s
),

removed AS (
    SELECT gone.seq, gone.task_id AS id
    FROM task_tombstones AS gone
    WHERE
        gone.user_id = %(user_id)s
        AND (gone.seq, gone.task_id) > (%(gone_seq)s::bigint, %(gone_id)s::bigint)
    ORDER BY gone.seq, gone.task_id
    LIMIT %(row_limit)s
),

head AS (
    SELECT
        coalesce(max(v.seq), 0) AS seq,
        coalesce(max(v.purged_seq), 0) AS purged_seq
    FROM task_list_versions AS v
    WHERE v.user_id = %(user_id)s
),

page AS (
    SELECT
        'task' AS kind, changed.seq, changed.id, changed.user_id, changed.title, changed.description,
        changed.completed, changed.created_at, changed.updated_at
    FROM changed
    UNION ALL
    SELECT
        'deleted' AS kind, removed.seq, removed.id, null AS user_id, null AS title, null AS description,
        null AS completed, null AS created_at, null AS updated_at
    FROM removed
    ORDER BY seq, id
    LIMIT %(row_limit)s
)

SELECT
    'head' AS kind, head.seq, null AS id, null AS user_id, null AS title, null AS description,
    null AS completed, null AS created_at, null AS updated_at, head.purged_seq,
    (extract(EPOCH FROM now()) * 1000000)::bigint AS now_us,
    (
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
            ) FROM 1 FOR 8)
        FROM signing_keys AS keys
        WHERE keys.purpose = 'sync_epoch'
    ) AS epoch
FROM head
UNION ALL
SELECT
    page.kind, page.seq, page.id, page.user_id, page.title, page.description,
    page.completed, page.created_at, page.updated_at, null AS purged_seq, null AS now_us, null AS epoch
FROM page;

-- name: purge_tombstones :one
-- Upkeep, for every user at once (scope: all users): delete up to batch tombstones older than the
-- retention, oldest first, and raise each affected user's purged_seq to the highest seq deleted,
-- so that a sync token from before it gets 410 instead of an answer missing those deletions.
-- One purge at a time (a transaction-scoped advisory lock, tried, never waited for), so two never
-- lock head rows in different orders; rows are found through the deletion-time index and deleted
-- by their ctid, as purge_idempotency_keys does. Returns how many tombstones went.
-- params: retention, batch
-- index: task_tombstones_deleted_idx
WITH gate AS (
    SELECT pg_try_advisory_xact_lock(7363601002) AS held
),

doomed AS (
    DELETE FROM task_tombstones
    WHERE
        ctid = any(array(
            SELECT old.ctid
            FROM task_tombstones AS old
            WHERE old.deleted_at < now() - %(retention)s::interval AND (SELECT gate.held FROM gate)
            ORDER BY old.deleted_at
            LIMIT %(batch)s
            FOR UPDATE SKIP LOCKED
        ))
    RETURNING user_id, seq
),

horizons AS (
    SELECT doomed.user_id, max(doomed.seq) AS seq
    FROM doomed
    GROUP BY doomed.user_id
),

raised AS (
    UPDATE task_list_versions AS v
    SET purged_seq = greatest(v.purged_seq, horizons.seq)
    FROM horizons
    WHERE v.user_id = horizons.user_id
    RETURNING v.user_id
)

SELECT count(*) AS purged
FROM doomed;

-- name: get_change_heads :many
-- The users a long-poll waits for whose seq has moved past what their waiters last saw (scope: the
-- users waiting in one worker), with their current seq: the poller of todo_service/sync.py asks this
-- every SYNC_POLL_MS while any request waits, and wakes those. Usually no row comes back. Users that
-- never wrote have no head row, so none for them.
-- params: user_ids, seen
-- index: task_list_versions_pkey
SELECT
    v.user_id,
    v.seq
FROM unnest(%(user_ids)s::text[], %(seen)s::bigint[]) AS waiting (user_id, seen)
INNER JOIN task_list_versions AS v ON waiting.user_id = v.user_id
WHERE v.seq > waiting.seen;
