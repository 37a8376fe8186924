"""``flask worker [--once]``."""

from __future__ import annotations

import click
from flask import Flask, current_app

from portal.outbox import worker


def register_worker_command(app: Flask) -> None:
    @app.cli.command("worker")
    @click.option("--once", is_flag=True, help="Run everything due once and exit (cron, tests).")
    def worker_command(once: bool) -> None:
        """Deliver outbox events and webhooks, run scheduled jobs (expiry, warnings, purges)."""
        app_ = current_app._get_current_object()  # type: ignore[attr-defined]
        if once:
            click.echo(worker.run_once(app_).summary())
            return
        worker.run_forever(
            app_, ready=lambda: click.echo("Worker running; stop it with Ctrl+C or SIGTERM.")
        )
        click.echo("Worker stopped.")
