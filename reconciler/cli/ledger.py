"""`reconciler ledger`: what is stopped and still billed, since when, who set it and why."""

from __future__ import annotations

from datetime import datetime

import click

from reconciler.cli.base import (
    EXIT_OK,
    account_option,
    at_option,
    config_options,
    format_option,
    hold_until_exit,
    main,
    run_guarded,
    setup_logging,
    shard_option,
    write_file,
)


@main.command()
@config_options
@account_option
@shard_option
@at_option
@format_option(("text", "json", "markdown", "csv"))
@click.option(
    "--csv-out",
    "csv_out",
    type=click.Path(dir_okay=False),
    help="Also write the ledger as CSV to this file (one live read for both).",
)
def ledger(
    config_dir: str,
    verbose: int,
    accounts: tuple[str, ...],
    shard: tuple[int, int] | None,
    at: datetime | None,
    fmt: str,
    csv_out: str | None,
) -> None:
    """List what cannot ring and still bills: stopped accounts and numbers, since when,
    their monthly fees and total, and who set each stop (the config line's git commit and
    pull request).

    \b
    Examples:
      reconciler ledger                                  # the standing list, text
      reconciler ledger --format csv > ledger.csv        # for finance
      reconciler ledger --format markdown --csv-out ledger.csv >> "$GITHUB_STEP_SUMMARY"
    """
    setup_logging(verbose)

    def body() -> int:
        from datetime import timezone

        from reconciler.engine import read_live
        from reconciler.ledger import build_ledger
        from reconciler.provenance import History
        from reconciler.render.ledger import ledger_csv, render_ledger

        desired, live, provider = read_live(config_dir, accounts, shard=shard)
        hold_until_exit((desired, live))
        provider.close()
        for account_id in live.missing:
            click.echo(
                f"Warning: account {account_id} is managed by the config but the provider "
                "does not know it: it is not in the ledger",
                err=True,
            )
        clock = datetime.now(timezone.utc).replace(microsecond=0)
        result = build_ledger(
            desired, live, now=at or clock, generated_at=clock, history=History(config_dir)
        )
        click.echo(render_ledger(result, fmt), nl=False)
        if csv_out:
            write_file(csv_out, ledger_csv(result))
            click.echo(f"Wrote the ledger as CSV to {csv_out}.", err=True)
        return EXIT_OK

    run_guarded(body)
