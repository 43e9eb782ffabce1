"""`reconciler import`: write account files that describe live state exactly."""

from __future__ import annotations

import os

import click

from reconciler.cli.base import EXIT_OK, config_options, fail, main, run_guarded, setup_logging


@main.command("import")
@config_options
@click.option(
    "--account",
    "accounts",
    multiple=True,
    required=True,
    metavar="ID",
    help="Account to import (repeatable).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Directory for the account files [default: CONFIG/accounts].",
)
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
def import_(
    config_dir: str, verbose: int, accounts: tuple[str, ...], out_dir: str | None, overwrite: bool
) -> None:
    """Write account files describing live state exactly (a plan with them is empty).

    Uses the provider from the config's settings; existing account files are not needed.

    \b
    Example:
      reconciler import --account 1001 --account 1002 --out config/accounts
    """
    setup_logging(verbose)

    def body() -> int:
        from reconciler.config import load_settings_only
        from reconciler.engine import settings_dir_of
        from reconciler.importer import write_account_files
        from reconciler.providers import open_provider

        settings, settings_path = load_settings_only(config_dir)
        with open_provider(settings, settings_dir_of(config_dir, settings_path)) as provider:
            live = provider.read([str(a) for a in accounts])
        if live.missing:
            fail(f"unknown account(s) at the provider: {', '.join(live.missing)}")
        target = out_dir or os.path.join(config_dir, "accounts")
        for path in write_account_files(list(live.accounts.values()), target, overwrite):
            click.echo(f"wrote {path}")
        return EXIT_OK

    run_guarded(body)
