"""Flask CLI commands: `flask migrate`, `flask seed`, `flask token`, `flask check-exposure`."""

import click
from flask import current_app
from flask.cli import with_appcontext

from .auth import mint
from .db import resolve_url, run
from .migrate import migrate
from .startup import StartupError, check_exposure


@click.command("migrate")
@with_appcontext
def migrate_command():
    """Apply pending migrations from sql/migrations."""
    settings = current_app.config["SETTINGS"]
    applied = migrate(settings.migration_url or resolve_url(settings))
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@click.command("seed")
@click.option("--users", default=10, show_default=True, type=click.IntRange(1, 100_000), help="How many users.")
@click.option("--tasks", default=20, show_default=True, type=click.IntRange(1, 1_000_000), help="Tasks per user.")
@click.option("--prefix", default="demo-user-", show_default=True, help="User ids are PREFIX1..PREFIXN.")
@with_appcontext
def seed_command(users, tasks, prefix):
    """Create demo data: USERS users with TASKS tasks each."""
    with click.progressbar(range(1, users + 1), label="seeding users") as bar:
        for number in bar:  # one statement and commit per user: no user's writes wait for the rest
            run("seed_tasks", user_id=f"{prefix}{number}", count=tasks)
    click.echo(f"seeded {users} users x {tasks} tasks")


@click.command("token")
@click.argument("user")
@click.option("--minutes", default=60, show_default=True, type=click.IntRange(1, 24 * 60), help="Lifetime.")
@with_appcontext
def token_command(user, minutes):
    """Print a token for USER signed with AUTH_JWT_SECRET (for curl and local tests)."""
    settings = current_app.config["SETTINGS"]
    if not settings.auth_jwt_secret:
        raise click.ClickException("AUTH_JWT_SECRET is not set; put a secret of 32+ bytes in .env")
    click.echo(mint(settings, user, minutes * 60))


@click.command("check-exposure")
@click.option("--host", required=True, help="The address the server will listen on.")
@with_appcontext
def check_exposure_command(host):
    """Refuse a non-loopback HOST with authentication off, as gunicorn's start does (for `make dev`)."""
    try:
        check_exposure(current_app.config["SETTINGS"], [(host, 0)])
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


def init_app(app):
    """Register the commands on `app`."""
    app.cli.add_command(migrate_command)
    app.cli.add_command(seed_command)
    app.cli.add_command(token_command)
    app.cli.add_command(check_exposure_command)
