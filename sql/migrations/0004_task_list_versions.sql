-- migration: 0004_task_list_versions
-- A version per user that changes with every committed change to that user's tasks, so the
-- service can keep a user's rendered lists and tell with one primary-key read whether a kept list
-- is still current (todo_service/listcache.py).
-- The version is the id of the last transaction that changed the user's tasks: each change
-- commits a value never committed before, so an unchanged version means unchanged tasks.
-- Statement-level triggers with transition tables: one upsert per statement, also for bulk inserts.
-- TRUNCATE forgets every version; the service then reads the lists afresh.

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE IF NOT EXISTS task_list_versions (
    user_id text PRIMARY KEY,
    version bigint NOT NULL
);

-- Users in ascending order, so statements touching several users lock their rows in one order.
CREATE OR REPLACE FUNCTION bump_task_list_versions(user_ids text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO task_list_versions AS v (user_id, version)
    SELECT DISTINCT changed.user_id, pg_current_xact_id()::text::bigint AS version
    FROM unnest(user_ids) AS changed (user_id)
    ORDER BY changed.user_id
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
$$;

CREATE OR REPLACE FUNCTION tasks_bump_list_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM bump_task_list_versions(ARRAY(SELECT user_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM bump_task_list_versions(ARRAY(SELECT user_id FROM old_rows));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM bump_task_list_versions(ARRAY(SELECT user_id FROM old_rows UNION SELECT user_id FROM new_rows));
    ELSE
        DELETE FROM task_list_versions;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER tasks_list_version_insert
AFTER INSERT ON tasks REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION tasks_bump_list_versions();

CREATE OR REPLACE TRIGGER tasks_list_version_update
AFTER UPDATE ON tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION tasks_bump_list_versions();

CREATE OR REPLACE TRIGGER tasks_list_version_delete
AFTER DELETE ON tasks REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION tasks_bump_list_versions();

CREATE OR REPLACE TRIGGER tasks_list_version_truncate
AFTER TRUNCATE ON tasks
FOR EACH STATEMENT EXECUTE FUNCTION tasks_bump_list_versions();

-- Users whose tasks exist already get a version now.
INSERT INTO task_list_versions (user_id, version)
SELECT DISTINCT user_id, pg_current_xact_id()::text::bigint AS version
FROM tasks
ON CONFLICT (user_id) DO NOTHING;
