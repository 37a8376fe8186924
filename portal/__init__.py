"""The credits portal: prepaid credits for AI features, priced, held, spent and sold."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from portal.config import load_config
from portal.database import engine_options, register_database
from portal.errors import register_errorhandlers
from portal.extensions import csrf, db, login_manager, migrate
from portal.jsonio import ExactJSONProvider

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides the environment (tests pass their database)."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.json = ExactJSONProvider(app)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(load_config(app.instance_path))
    if config:
        app.config.update(config)
    app.config.setdefault(
        "SQLALCHEMY_ENGINE_OPTIONS",
        engine_options(app.config["SQLALCHEMY_DATABASE_URI"], app.config["SQLITE_BUSY_TIMEOUT_MS"]),
    )
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    import portal.models  # noqa: F401  (every table known before migrations run)

    db.init_app(app)
    register_database(app, db)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)


def register_blueprints(app: Flask) -> None:
    """The whole URL map, in one place."""
    from portal.credits.api import bp as api_bp

    app.register_blueprint(api_bp)  # /api/v1/…
    csrf.exempt(api_bp)  # API keys, not cookies, authenticate it: nothing for CSRF to steal


def register_commands(app: Flask) -> None:
    from portal.credits.cli import register_credits_commands

    register_credits_commands(app)
