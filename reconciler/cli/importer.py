"""`reconciler accounts` and `reconciler import`: discover live accounts, and write account
files that describe live state exactly."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from reconciler.cli.base import (
    EXIT_OK,
    _shard_option,
    config_options,
    fail,
    format_option,
    main,
    run_guarded,
    setup_logging,
)

if TYPE_CHECKING:
    from reconciler.providers.base import Provider


@main.command()
@config_options
@format_option(("text", "json"))
@click.option(
    "--no-counts",
    is_flag=True,
    help="Do not count numbers (ctm: saves one request per account); `numbers` is then null.",
)
def accounts(config_dir: str, verbose: int, fmt: str, no_counts: bool) -> None:
    """List every live account: id, name, status, number count, and the file managing it.

    Read-only. Statuses the reconciler cannot manage (e.g. `canceled`) are listed as the
    provider reports them. JSON: {"accounts": [{"id", "name", "status", "numbers",
    "managed_by"}]}, `managed_by` null for an account no file manages.

    \b
    Cost with the ctm provider, for A accounts:
      ceil(A/150) requests (at least 1): the account list, 150 a page;
      + A requests for the counts: page 1 of each account's numbers (its total_entries),
        `concurrency` at a time; an account whose first page is full but gives no
        total_entries also costs its further pages. --no-counts skips them.
    The sandbox provider answers with one query.

    \b
    Examples:
      reconciler accounts
      reconciler accounts --format json | jq -r '.accounts[] | select(.managed_by == null) | .id'
    """
    setup_logging(verbose)

    def body() -> int:
        from reconciler.config import load_config
        from reconciler.discovery import discover, managed_files, render_json, render_text
        from reconciler.engine import settings_dir_of
        from reconciler.providers import open_provider

        desired = load_config(config_dir, require_accounts=False)
        settings_dir = settings_dir_of(config_dir, desired.settings_path)
        with open_provider(desired.settings, settings_dir) as provider:
            listed = provider.list_accounts(count_numbers=not no_counts)
        found = discover(listed, managed_files(desired))
        click.echo(render_json(found) if fmt == "json" else render_text(found), nl=False)
        return EXIT_OK

    run_guarded(body)


@main.command("import")
@config_options
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="ID",
    help="Account to import (repeatable).",
)
@click.option(
    "--all", "all_", is_flag=True, help="Every live account that no account file manages yet."
)
@click.option(
    "--shard",
    metavar="K/N",
    callback=_shard_option,
    help="With --all: only accounts of shard K of N (the same shards as plan --shard).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Directory for new account files [default: CONFIG/accounts].",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace existing files; an account already managed is rewritten in its own file.",
)
def import_(
    config_dir: str,
    verbose: int,
    accounts: tuple[str, ...],
    all_: bool,
    shard: tuple[int, int] | None,
    out_dir: str | None,
    overwrite: bool,
) -> None:
    """Write account files describing live state exactly (a plan with them is empty).

    Uses the provider from the config's settings. An account already managed by a file is
    refused, naming the file; with --overwrite that file is rewritten in place. --all skips
    managed accounts, and accounts whose status no account file can hold (e.g. `canceled`),
    with a warning. Never writes to the provider.

    \b
    Examples:
      reconciler import --account 1001 --account 1002 --out config/accounts
      reconciler import --all                       # every account not managed yet
      reconciler import --all --shard 1/4           # a quarter of them
    """
    setup_logging(verbose)

    def body() -> int:
        if bool(accounts) == all_:
            fail(f"pass --account ID (repeatable) or --all{', not both' if all_ else ''}")
        if shard is not None and not all_:
            fail("--shard goes with --all")
        from reconciler.config import load_config
        from reconciler.discovery import managed_files
        from reconciler.engine import settings_dir_of
        from reconciler.importer import write_account_files
        from reconciler.providers import open_provider

        desired = load_config(config_dir, require_accounts=False)
        managed = managed_files(desired)
        ids = [str(a) for a in accounts]
        for account_id in ids:  # before any request: refusing needs no live state
            if account_id in managed and not overwrite:
                fail(
                    f"account {account_id} is already managed by {managed[account_id]}; "
                    "pass --overwrite to rewrite that file"
                )
        settings_dir = settings_dir_of(config_dir, desired.settings_path)
        with open_provider(desired.settings, settings_dir) as provider:
            if all_:
                ids = _all_unmanaged(provider, managed, shard)
                if not ids:
                    where = f" of shard {shard[0]}/{shard[1]}" if shard else ""
                    click.echo(f"Nothing to import: every live account{where} is managed already.")
                    return EXIT_OK
            live = provider.read(ids)
        if live.missing and not all_:
            fail(f"unknown account(s) at the provider: {', '.join(live.missing)}")
        for account_id in live.missing:  # listed, then gone before it was read
            click.echo(f"Warning: account {account_id} went away; not imported", err=True)
        target = out_dir or os.path.join(config_dir, "accounts")
        written = write_account_files(list(live.accounts.values()), target, overwrite, managed)
        for path in written:
            click.echo(f"wrote {path}")
        return EXIT_OK

    run_guarded(body)


def _all_unmanaged(
    provider: Provider, managed: dict[str, str], shard: tuple[int, int] | None
) -> list[str]:
    """Ids for `import --all` (warning about the accounts it skips)."""
    from reconciler.discovery import importable
    from reconciler.render.safe import neutral

    ids, skipped = importable(provider.list_accounts(count_numbers=False), managed, shard)
    for acc in skipped:
        said = repr(neutral(acc.status)) if acc.status else "not reported"
        click.echo(
            f"Warning: account {neutral(acc.id)} not imported: its status ({said}) is not one "
            "an account file can hold (active, paused, stopped)",
            err=True,
        )
    return ids
