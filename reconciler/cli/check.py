"""`reconciler validate` and `reconciler schema`: check the config, write the JSON Schemas."""

from __future__ import annotations

import os
from typing import Any

import click

from reconciler.cli.base import (
    EXIT_ERROR,
    EXIT_OK,
    config_options,
    hold_until_exit,
    main,
    run_guarded,
    setup_logging,
)


@main.command()
@config_options
def validate(config_dir: str, verbose: int) -> None:
    """Check the config offline; list every problem as file:line:col.

    \b
    Example:
      reconciler validate --config ops/config
    """
    setup_logging(verbose)

    def body() -> int:
        from reconciler.config import load_config

        desired = hold_until_exit(load_config(config_dir))
        _check_seed(desired)
        n_numbers = sum(len(a.numbers) for a in desired.accounts.values())
        click.echo(
            f"{config_dir}: valid ({len(desired.accounts)} accounts, {n_numbers} numbers, "
            f"provider {desired.settings.provider.type})"
        )
        return EXIT_OK

    run_guarded(body)


def _check_seed(desired: Any) -> None:
    """The sandbox's `provider.seed` must name a file that exists (it is read on first use)."""
    from reconciler.engine import settings_dir
    from reconciler.errors import ReconcilerError

    cfg = desired.settings.provider
    if cfg.type != "sandbox" or not cfg.seed:
        return
    seed = os.path.normpath(settings_dir(desired) / cfg.seed)
    if not os.path.isfile(seed):
        raise ReconcilerError(
            f"{desired.settings_path}: provider.seed names {seed}, which is not a file; write "
            "the path of a fleet file relative to the settings file, or remove provider.seed"
        )


@main.command()
@click.option(
    "--out",
    "out_dir",
    default="schemas",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory to write the JSON Schemas to.",
)
@click.option("--check", is_flag=True, help="Exit 1 if the files in --out are not up to date.")
def schema(out_dir: str, check: bool) -> None:
    """Write the JSON Schemas for account files, settings and plans.

    \b
    Example:
      reconciler schema --out schemas
    """

    def body() -> int:
        from reconciler.schema import write_schemas

        stale = write_schemas(out_dir, check=check)
        if check:
            if stale:
                for name, why in stale.items():
                    click.echo(f"{os.path.join(out_dir, name)}: {why}", err=True)
                click.echo("Run `reconciler schema` and commit the result.", err=True)
                return EXIT_ERROR
            click.echo(f"{out_dir}: schemas are up to date")
            return EXIT_OK
        for name in stale:
            click.echo(f"wrote {os.path.join(out_dir, name)}")
        if not stale:
            click.echo(f"{out_dir}: schemas already up to date")
        return EXIT_OK

    run_guarded(body)
