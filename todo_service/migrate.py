"""Apply the ordered migration files of sql/migrations exactly once, each in its own transaction."""

import hashlib
import logging
import re

import psycopg

from .config import PROJECT_ROOT
from .queries import QUERIES

log = logging.getLogger(__name__)
MIGRATION_DIR = PROJECT_ROOT / "sql" / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """A migration file was changed after being applied, or is misnamed."""


def migration_files(directory=MIGRATION_DIR):
    """(version, path, checksum) for every migration file, in order."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        if not FILE_NAME.match(path.name):
            raise MigrationError(f"{path.name}: migration files are named NNNN_what_it_does.sql")
        found.append((path.stem, path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return found


def _locked_applied(conn):
    """Take the migration lock for this transaction and return {version: checksum} applied so far."""
    QUERIES.lock_migrations.run(conn)
    QUERIES.create_migrations_table.run(conn)
    return {row["version"]: row["checksum"] for row in QUERIES.list_migrations.run(conn)}


def apply_pending(conn, directory=MIGRATION_DIR):
    """Apply what is pending on an autocommit connection; return the versions applied now."""
    applied_now = []
    for version, path, checksum in migration_files(directory):
        with conn.transaction():
            applied = _locked_applied(conn)
            if version in applied:
                if applied[version] != checksum:
                    raise MigrationError(
                        f"{path.name} changed after it was applied (checksum {applied[version][:12]} in the "
                        f"database, {checksum[:12]} on disk); never edit an applied migration, add a new one"
                    )
                continue
            conn.execute(path.read_text(encoding="utf-8"), prepare=False)
            QUERIES.record_migration.run(conn, version=version, checksum=checksum)
        log.info("migration applied: %s", path.name)
        applied_now.append(version)
    return applied_now


def pending(url, directory=MIGRATION_DIR):
    """Versions not applied yet on `url`; changes nothing."""
    options = {"autocommit": True, "prepare_threshold": None, "row_factory": psycopg.rows.dict_row}
    with psycopg.connect(url, **options) as conn, conn.transaction(force_rollback=True):
        applied = _locked_applied(conn)
    return [version for version, _, _ in migration_files(directory) if version not in applied]


def migrate(url, directory=MIGRATION_DIR):
    """Connect to `url` and apply pending migrations."""
    with psycopg.connect(url, autocommit=True, prepare_threshold=None, row_factory=psycopg.rows.dict_row) as conn:
        applied = apply_pending(conn, directory)
    log.info("migrations: %s", f"applied {', '.join(applied)}" if applied else "database is up to date")
    return applied
