"""The migration runner: once, in order, concurrently safe, checksummed, atomic."""

import shutil
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from todo_service.migrate import MIGRATION_DIR, MigrationError, migrate, migration_files


def applied(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY version").fetchall()


def test_applies_every_file_once_and_twice_is_a_no_op(empty_database):
    versions = [v for v, _, _ in migration_files()]
    assert migrate(empty_database) == versions
    assert migrate(empty_database) == []
    assert [v for v, _ in applied(empty_database)] == versions


def test_concurrent_runners_apply_each_migration_exactly_once(empty_database):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: migrate(empty_database), range(8)))
    versions = [v for v, _, _ in migration_files()]
    assert sorted(v for result in results for v in result) == versions
    assert [v for v, _ in applied(empty_database)] == versions


def test_a_changed_applied_migration_is_refused(empty_database, tmp_path):
    for path in MIGRATION_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    migrate(empty_database, tmp_path)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after the fact\n")
    with pytest.raises(MigrationError, match=f"{first.name} changed after it was applied"):
        migrate(empty_database, tmp_path)


def test_a_failing_migration_rolls_back_whole(empty_database, tmp_path):
    for path in MIGRATION_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "9999_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nALTER TABLE tasks ADD COLUMN no_such_type nonsense;\n")
    with pytest.raises(psycopg.errors.UndefinedObject):
        migrate(empty_database, tmp_path)
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        assert "9999_broken" not in {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}


def test_misnamed_migration_file_is_refused(tmp_path):
    (tmp_path / "create_things.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_what_it_does\.sql"):
        migration_files(tmp_path)


def test_seed_command_creates_users_times_tasks(app, sql_conn):
    result = app.test_cli_runner().invoke(args=["seed", "--users", "3", "--tasks", "7", "--prefix", "seeded-"])
    assert result.exit_code == 0, result.output
    assert "seeded 3 users x 7 tasks" in result.output
    counts = sql_conn.execute("SELECT user_id, count(*) AS n FROM tasks GROUP BY user_id ORDER BY user_id").fetchall()
    assert [(r["user_id"], r["n"]) for r in counts] == [("seeded-1", 7), ("seeded-2", 7), ("seeded-3", 7)]


def test_migrate_command_reports_up_to_date(app):
    result = app.test_cli_runner().invoke(args=["migrate"])
    assert result.exit_code == 0, result.output
    assert "database is up to date" in result.output
