"""todo_service: the task API behind the Todo app."""

from flask import Flask

from . import (
    auth,
    cli,
    conditional,
    cors,
    db,
    docs,
    errors,
    health,
    idempotency,
    listcache,
    logs,
    longpoll,
    metrics,
    middleware,
    openapi,
    paging,
    ratelimit,
    sync,
    tasks,
)
from .config import load_settings
from .jsonbody import MAX_BODY_BYTES


def create_app(test_config=None):
    """Build the app: settings from the environment, then `test_config` overrides."""
    app = Flask(__name__)
    app.config.from_mapping(SETTINGS=load_settings(), MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
    if test_config:
        app.config.update(test_config)
    settings = app.config["SETTINGS"]
    logs.configure(settings.log_level, settings.log_format)
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.url_map.converters["user"] = tasks.UserIdConverter
    app.url_map.converters["task"] = tasks.TaskIdConverter
    cors.init_app(app, settings.cors_origins)
    metrics.init_app(app)  # first: its clock starts before any other hook
    longpoll.init_app(app)
    db.init_app(app)
    listcache.init_app(app)
    paging.init_app(app)
    conditional.init_app(app)
    idempotency.init_app(app)
    sync.init_app(app)
    middleware.init_app(app)
    ratelimit.init_app(app)  # before authentication: requests with a bad token spend their address's budget
    auth.init_app(app)  # before any validation or database access
    app.before_request(middleware.check_path)
    cli.init_app(app)
    openapi.init_app(app)
    docs.init_app(app)
    app.register_blueprint(errors.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(tasks.bp)
    return app
