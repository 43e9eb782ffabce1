"""`reconciler plan` and `reconciler drift`: show what apply would change, report drift."""

from __future__ import annotations

from datetime import datetime

import click

from reconciler.cli.base import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    at_option,
    format_option,
    hold_until_exit,
    main,
    plan_options,
    run_guarded,
    setup_logging,
    use_color,
    write_file,
)


@main.command()
@plan_options
@at_option
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Save the plan as JSON.")
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes, 0 when none."
)
def plan(
    config_dir: str,
    verbose: int,
    accounts: tuple[str, ...],
    fmt: str,
    no_color: bool,
    out_file: str | None,
    detailed_exitcode: bool,
    shard: tuple[int, int] | None,
    at: datetime | None,
) -> None:
    """Read live state and show what apply would change, and what keeps billing.

    \b
    Examples:
      reconciler plan                                  # whole config, text
      reconciler plan --account 1001                   # on-call: one account
      reconciler plan --format markdown > comment.md   # PR comment
      reconciler plan --out plan.json                  # save for `apply --plan`
      reconciler plan --at 2026-12-24T18:00:00Z        # as it will be judged then
    """
    setup_logging(verbose)

    def body() -> int:
        from reconciler.engine import make_plan
        from reconciler.render import render
        from reconciler.render.json import render_json

        planned = hold_until_exit(make_plan(config_dir, accounts, shard=shard, at=at))
        planned.provider.close()
        result = planned.plan
        click.echo(render(result, fmt, color=use_color(no_color)), nl=False)
        if out_file:
            write_file(out_file, render_json(result))
            click.echo(f"Saved the plan to {out_file}.", err=True)
        if result.errors:
            return EXIT_ERROR
        if detailed_exitcode and result.changes:
            return EXIT_CHANGES
        return EXIT_OK

    run_guarded(body)


@main.command()
@click.argument("plan_file", metavar="PLAN.json", type=click.Path(dir_okay=False))
@format_option()
@click.option(
    "--no-color", is_flag=True, help="No colour (also when NO_COLOR is set or not a TTY)."
)
def show(plan_file: str, fmt: str, no_color: bool) -> None:
    """Render a saved plan exactly as `plan` printed it, reading neither live state nor the
    config (one read of live for every format a pull request needs).

    \b
    Example:
      reconciler plan --out plan.json --format github
      reconciler show plan.json --format markdown > comment.md
    """

    def body() -> int:
        from reconciler.planfile import load_plan
        from reconciler.render import render

        saved = load_plan(plan_file)
        click.echo(render(saved, fmt, color=use_color(no_color)), nl=False)
        return EXIT_ERROR if saved.errors else EXIT_OK

    run_guarded(body)


@main.command()
@plan_options
@at_option
def drift(
    config_dir: str,
    verbose: int,
    accounts: tuple[str, ...],
    fmt: str,
    no_color: bool,
    shard: tuple[int, int] | None,
    at: datetime | None,
) -> None:
    """Report where live state differs from the config (exit 2), for scheduled checks.

    \b
    Exit codes: 0 in sync, 2 drift, 1 error. A change due by a window boundary less than
    policy.due_grace_minutes ago is "due (scheduled)", not drift.
    Example:
      reconciler drift --format markdown > drift.md || test $? -eq 2
    """
    setup_logging(verbose)

    def body() -> int:
        from reconciler.engine import make_plan
        from reconciler.render import drifted, render

        planned = hold_until_exit(make_plan(config_dir, accounts, shard=shard, at=at))
        planned.provider.close()
        click.echo(render(planned.plan, fmt, mode="drift", color=use_color(no_color)), nl=False)
        if planned.plan.errors:
            return EXIT_ERROR
        return EXIT_CHANGES if drifted(planned.plan) else EXIT_OK

    run_guarded(body)
