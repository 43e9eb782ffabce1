"""`reconciler schedule`: the window boundaries ahead, as text, JSON, Markdown or a calendar."""

from __future__ import annotations

from datetime import datetime

import click

from reconciler.cli.base import (
    EXIT_OK,
    at_option,
    config_options,
    format_option,
    hold_until_exit,
    main,
    run_guarded,
    setup_logging,
    write_file,
)


@main.command()
@config_options
@click.option(
    "--account", "accounts", multiple=True, metavar="ID", help="Only this account (repeatable)."
)
@click.option(
    "--days",
    type=click.IntRange(1, 3660),
    default=30,
    show_default=True,
    help="How far ahead to look.",
)
@at_option
@format_option(
    ("text", "json", "markdown", "ics"),
    "Output format; ics is an RFC 5545 calendar to subscribe to.",
)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write to FILE.")
def schedule(
    config_dir: str,
    verbose: int,
    accounts: tuple[str, ...],
    days: int,
    at: datetime | None,
    fmt: str,
    out_file: str | None,
) -> None:
    """List every window boundary (from/until) ahead, with what it does to the charges.

    Reads live state for names and fees; writes nothing. `reconciler apply --due` on a
    schedule carries the boundaries out.

    \b
    Examples:
      reconciler schedule --days 60
      reconciler schedule --format ics --out stops.ics   # subscribe in a calendar
    """
    setup_logging(verbose)

    def body() -> int:
        from reconciler.engine import make_plan
        from reconciler.schedule import render_schedule, upcoming

        planned = hold_until_exit(make_plan(config_dir, accounts, at=at))
        planned.provider.close()
        start = datetime.fromisoformat(
            (planned.plan.evaluated_at or planned.plan.generated_at).replace("Z", "+00:00")
        )
        events = upcoming(planned.desired, planned.live, start, days)
        currency = planned.desired.settings.billing.currency
        text = render_schedule(events, fmt, start=start, days=days, currency=currency)
        if out_file:
            write_file(out_file, text)
            click.echo(f"Wrote {len(events)} window boundaries to {out_file}.", err=True)
        else:
            click.echo(text, nl=False)
        return EXIT_OK

    run_guarded(body)
