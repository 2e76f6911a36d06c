-- migration: 0001_create_tasks
-- Creates the tasks table, its integrity rules, the updated_at trigger and the
-- indexes behind every list, get, update, toggle and delete statement.
-- Applied inside one transaction by todo_service.migrate; never edit once applied.

-- Bounded waits: a busy table makes the migration fail fast instead of queueing writers.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE IF NOT EXISTS tasks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id text NOT NULL,
    title text NOT NULL,
    description text,
    completed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tasks_user_id_length CHECK (char_length(user_id) BETWEEN 1 AND 128),
    CONSTRAINT tasks_title_length CHECK (char_length(title) BETWEEN 1 AND 200),
    CONSTRAINT tasks_description_length CHECK (char_length(description) <= 1000)
);

-- Moves updated_at forward on every UPDATE, strictly, even within one clock tick.
CREATE OR REPLACE FUNCTION tasks_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := greatest(clock_timestamp(), OLD.updated_at + interval '1 microsecond');
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER tasks_touch_updated_at
BEFORE UPDATE ON tasks
FOR EACH ROW EXECUTE FUNCTION tasks_touch_updated_at();

-- One index per list order, for all tasks and per status; ties broken by id.
CREATE INDEX IF NOT EXISTS tasks_user_created_idx ON tasks (user_id, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_user_updated_idx ON tasks (user_id, updated_at, id);
CREATE INDEX IF NOT EXISTS tasks_user_title_idx ON tasks (user_id, lower(title), id);
CREATE INDEX IF NOT EXISTS tasks_user_status_created_idx ON tasks (user_id, completed, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_user_status_updated_idx ON tasks (user_id, completed, updated_at, id);
CREATE INDEX IF NOT EXISTS tasks_user_status_title_idx ON tasks (user_id, completed, lower(title), id);
