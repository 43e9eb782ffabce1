"""`reconciler doctor`: a read-only first contact with the provider."""

from __future__ import annotations

import click

from reconciler.cli.base import config_options, format_option, main, run_guarded, setup_logging


@main.command()
@config_options
@click.option(
    "--account", metavar="ID", help="Check this account [default: the first managed one]."
)
@format_option(("text", "json"))
def doctor(config_dir: str, verbose: int, account: str | None, fmt: str) -> None:
    """Check settings, keys, TLS, auth, paging and every field the mapping needs; never writes.

    Run it first against a new provider: for one account it shows which fields the
    provider really sends, with samples, and what a missing one means for a plan.

    \b
    Exit codes: 0 all ok, 2 warnings only, 1 any failure.
    Examples:
      reconciler doctor
      reconciler doctor --account 1001 --format json
    """
    setup_logging(verbose)

    def body() -> int:
        from reconciler.doctor import exit_code, render_json, render_text, run_checks

        checks = run_checks(config_dir, account)
        click.echo(render_json(checks) if fmt == "json" else render_text(checks), nl=False)
        return exit_code(checks)

    run_guarded(body)
