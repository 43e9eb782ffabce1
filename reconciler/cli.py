"""Command line: parse, call the core, render, exit code.

Heavy modules (pydantic, yaml, requests) are imported inside the commands so that
`reconciler --help` starts fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """A group whose listed subcommands are imported only when used."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.lazy = lazy or {}  # name -> ("module:attr", short help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name][0].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][1]))
            else:
                cmd = super().get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=60)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def fail(message: str) -> NoReturn:
    """Print one error message to stderr and exit 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config and -v, shared by every command that reads the config."""
    func = click.option(
        "-v", "--verbose", count=True, help="More log output on stderr (-vv for debug)."
    )(func)
    func = click.option(
        "--config",
        "config_dir",
        envvar="RECONCILER_CONFIG",
        default="config",
        show_default=True,
        type=click.Path(file_okay=False),
        help="Config directory (env RECONCILER_CONFIG).",
    )(func)
    return func


def run_guarded(body: Callable[[], int]) -> NoReturn:
    """Run a command body; known errors become one message and exit 1, never a traceback."""
    from reconciler.errors import ConfigError, ReconcilerError

    try:
        code = body()
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        n = len(exc.issues)
        click.echo(f"Error: config is invalid ({n} problem{'s' if n != 1 else ''})", err=True)
        sys.exit(EXIT_ERROR)
    except ReconcilerError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code)


@click.group(
    cls=LazyGroup,
    context_settings=CONTEXT_SETTINGS,
    lazy={
        "sandbox": (
            "reconciler.providers.sandbox.commands:sandbox",
            "The embedded sandbox provider: init, generate, show, serve.",
        )
    },
)
@click.version_option(package_name="reconciler", prog_name="reconciler")
def main() -> None:
    """Call states as code: stop, allow and pause call tracking from reviewed YAML.

    \b
    Typical use:
      reconciler validate                       # check the config offline
      reconciler plan --account 1001            # what would change, and what keeps billing
      reconciler apply --auto-approve           # make live match the config (CI)
      reconciler drift                          # exit 2 when live differs from config

    Stopping calls never stops charges: stopped numbers and accounts keep billing.
    """


@main.command()
@config_options
def validate(config_dir: str, verbose: int) -> None:
    """Check the config offline; list every problem as file:line:col.

    \b
    Example:
      reconciler validate --config ops/config
    """
    _setup_logging(verbose)

    def body() -> int:
        from reconciler.config import load_config

        desired = load_config(config_dir)
        n_numbers = sum(len(a.numbers) for a in desired.accounts.values())
        click.echo(
            f"{config_dir}: valid ({len(desired.accounts)} accounts, {n_numbers} numbers, "
            f"provider {desired.settings.provider.type})"
        )
        return EXIT_OK

    run_guarded(body)


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
                for name in stale:
                    click.echo(f"{os.path.join(out_dir, name)}: out of date", err=True)
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
