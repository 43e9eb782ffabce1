"""`reconciler apply`: plan, confirm, write, re-read and verify, then summarise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.base import (
    EXIT_ERROR,
    EXIT_OK,
    fail,
    hold_until_exit,
    main,
    plan_options,
    run_guarded,
    setup_logging,
    use_color,
    write_file,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # heavy modules stay out of `reconciler --help`
    from reconciler.apply import ActionResult, ApplyReport
    from reconciler.engine import Planned
    from reconciler.plan_model import Plan
    from reconciler.providers.base import Provider


@main.command()
@plan_options
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False),
    help="Apply only if a fresh plan still matches this saved one.",
)
@click.option("--auto-approve", is_flag=True, help="Do not ask (for pipelines).")
@click.option("--force", is_flag=True, help="Allow a plan over policy.max_change_fraction.")
@click.option(
    "--due",
    is_flag=True,
    help="Apply only changes of entries with from/until (what a schedule runs); the others "
    "are listed as not due.",
)
@click.option(
    "--at",
    "at_given",
    metavar="TIME",
    hidden=True,
    help="Refused: apply always acts now.",
)
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False),
    help="Write the outcome of every action as JSON.",
)
def apply(
    config_dir: str,
    verbose: int,
    accounts: tuple[str, ...],
    fmt: str,
    no_color: bool,
    plan_file: str | None,
    auto_approve: bool,
    force: bool,
    report_file: str | None,
    shard: tuple[int, int] | None,
    due: bool,
    at_given: str | None,
) -> None:
    """Make live match the config: plan, confirm, write, re-read and verify.

    \b
    Examples:
      reconciler apply                                  # asks "type yes" on a terminal
      reconciler apply --auto-approve --report out.json # CI
      reconciler plan --out plan.json && reconciler apply --plan plan.json --auto-approve
      reconciler apply --due --auto-approve             # a schedule: windows only
    Exit codes: 0 converged; 1 error, refused, or partly failed.
    """
    setup_logging(verbose)
    if at_given is not None:
        fail("apply always acts now: --at is for plan, drift and schedule (to see a time ahead)")

    def body() -> int:
        return _run_apply(
            config_dir,
            accounts,
            shard,
            fmt,
            use_color(no_color),
            plan_file,
            auto_approve,
            force,
            report_file,
            due,
        )

    run_guarded(body)


def _run_apply(
    config_dir: str,
    accounts: tuple[str, ...],
    shard: tuple[int, int] | None,
    fmt: str,
    color: bool,
    plan_file: str | None,
    auto_approve: bool,
    force: bool,
    report_file: str | None,
    due: bool = False,
) -> int:
    from reconciler.apply import check_saved_plan
    from reconciler.config import load_config
    from reconciler.engine import due_plan, make_plan, open_for
    from reconciler.lock import apply_lock
    from reconciler.render import render

    if plan_file:
        accounts, shard = _saved_scope(plan_file, accounts, shard, _sayer(fmt))
    desired = load_config(config_dir)
    # The lock is taken before planning and held through approval and writes, so the plan
    # that is shown is the plan that is applied: no other apply from this machine can
    # interleave, and nothing needs to be read a second time.
    with open_for(desired) as provider, apply_lock(provider.target) as lock:
        planned = hold_until_exit(
            make_plan(config_dir, accounts, provider=provider, desired=desired, shard=shard)
        )
        say = _sayer(fmt)
        left: list[Any] = []
        if due:
            planned, left = due_plan(planned)
            hold_until_exit(planned)
        plan = planned.plan
        if plan_file:
            check_saved_plan(plan_file, plan)
        click.echo(render(plan, fmt, color=color), nl=False)
        if left:
            say(f"\nNot due: left for a normal apply ({len(left)}):")
            for c in left:
                say(f"  - {c.address.replace('.', ' ', 1)} {c.field}: {c.from_} -> {c.to}")
        if plan.errors:
            fail(f"the plan has {len(plan.errors)} error(s); nothing was applied")
        if not force and any(w.code == "threshold_exceeded" for w in plan.warnings):
            fail(
                "the plan exceeds policy.max_change_fraction (threshold_exceeded); nothing "
                "was applied. Review it and re-run with --force if it is intended"
            )
        if not plan.changes:
            say(
                "Nothing is due: no window boundary to carry out."
                if due
                else "Nothing to apply: live matches the config."
            )
            return EXIT_OK
        if not auto_approve and not _confirm(plan, provider.target, say):
            return EXIT_ERROR
        lock.check()  # planning and approval take time: the lock must still be ours to write
        report = _execute(provider, planned, say, err=fmt != "text")
        if report_file:
            import json

            write_file(report_file, json.dumps(report.to_dict(), indent=2) + "\n")
            say(f"Wrote the apply report to {report_file}.")
        return EXIT_OK if report.converged else EXIT_ERROR


def _sayer(fmt: str) -> Callable[[str], None]:
    """Progress and summaries: stdout for text, stderr when stdout carries JSON/Markdown."""
    err = fmt != "text"
    return lambda message: click.echo(message, err=err)


def _confirm(plan: Plan, target: str, say: Callable[[str], None]) -> bool:
    if not sys.stdin.isatty():
        fail(
            "refusing to apply without approval: there is no terminal to ask on. "
            "Review the plan and pass --auto-approve (pipelines), or run it in a terminal"
        )
    n = len(plan.changes)
    answer = click.prompt(
        f"\nApply {n} change{'s' if n != 1 else ''} to {target}?\n  Only 'yes' will be accepted",
        default="",
        show_default=False,
    )
    if answer.strip() != "yes":
        say("Apply cancelled; nothing was changed.")
        return False
    return True


def _saved_scope(
    plan_file: str,
    accounts: tuple[str, ...],
    shard: tuple[int, int] | None,
    say: Callable[[str], None],
) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """The scope to re-plan a saved plan in: its own (`--account`/`--shard` recorded in it).
    An explicit different scope is refused; the same one, or none, is the saved one."""
    from reconciler.errors import ReconcilerError
    from reconciler.planfile import load_plan
    from reconciler.shard import parse_shard

    saved = load_plan(plan_file)
    saved_shard = parse_shard(saved.shard) if saved.shard else None
    covers = ", ".join(saved.scope) if saved.scope else "all accounts"
    covers = f"accounts {covers}" if saved.scope else covers
    if saved.shard:
        covers += f", shard {saved.shard}"
    asked = (set(accounts), shard)
    if (accounts or shard) and asked != (set(saved.scope), saved_shard):
        raise ReconcilerError(
            f"the saved plan {plan_file} covers {covers}; run plan again with the scope you "
            "want to apply (nothing was applied)"
        )
    if saved.scope or saved.shard:
        say(f"Re-planning in the saved plan's scope: {covers}.")
    return tuple(saved.scope), saved_shard


def _execute(
    provider: Provider, planned: Planned, say: Callable[[str], None], *, err: bool = False
) -> ApplyReport:
    """Write, then verify. The bar (or one line per write) goes where `say` writes: stdout
    for text, stderr when stdout carries JSON or Markdown (`err`)."""
    import signal

    from reconciler.apply import apply_changes, verify
    from reconciler.progress import Cost, labelled, plural

    plan = planned.plan
    concurrency = planned.desired.settings.provider.concurrency
    stream = sys.stderr if err else sys.stdout
    tty = stream.isatty()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    cost = Cost(provider)
    try:
        if tty:
            with click.progressbar(length=len(plan.changes), label="Applying", file=stream) as bar:
                report = apply_changes(
                    provider, plan, concurrency=concurrency, on_result=lambda r: bar.update(1)
                )
        else:
            report = apply_changes(
                provider, plan, concurrency=concurrency, on_result=lambda r: say(_action_line(r))
            )
        sent = plural(sum(r.outcome != "not_started" for r in report.results), "changes")
        log.info("wrote %s to %s %s", sent, provider.target, cost)
        # Also after an interrupt: the summary states live as it is, not as planned.
        say("Verifying: re-reading live state…")
        try:
            with labelled("verifying"):
                report.verification = verify(provider, plan, planned.live, planned.desired)
        except KeyboardInterrupt:
            say("Verification interrupted: live state was not re-read.")
        report.settle()
    finally:
        signal.signal(signal.SIGTERM, previous)
    _summary(report, say)
    return report


def neutral(text: str) -> str:
    from reconciler.render.safe import neutral as escape

    return escape(text)


def _action_line(r: ActionResult) -> str:
    c = r.change
    what = f"{c.action} {c.address.replace('.', ' ', 1)} {c.field}: {c.from_} -> {c.to}"
    waited = f"; {r.wait_ms:.0f} ms waiting for the rate limit" if r.wait_ms >= 1 else ""
    if r.outcome == "ok":
        tail = f" ({r.ms:.0f} ms{waited})"
    else:
        tail = f": {neutral(r.error)}" if r.error else ""
    return f"  {r.outcome:<7} {what}{tail}"


def _summary(report: ApplyReport, say: Callable[[str], None]) -> None:
    from reconciler.apply import GRACE_SECONDS

    counts = report.counts()
    say("")
    if report.interrupted:
        say(
            f"Interrupted: nothing else was started; writes in flight had {GRACE_SECONDS:g} s "
            "to finish, then were cut (their outcome is settled by the re-read)."
        )
    if report.target_changed:
        say(
            f"Stopped: {neutral(report.plan.provider.target)} was replaced or deleted during "
            "the apply; the writes before went to the old one; nothing else was started."
        )
    unknown = f", {counts['unknown']} outcome unknown" if counts["unknown"] else ""
    say(
        f"Apply {'complete' if report.converged else 'incomplete'}: {counts['ok']} ok, "
        f"{counts['failed']} failed{unknown}, {counts['not_started']} not started."
    )
    for r in report.results:
        if r.outcome != "ok":
            say(_action_line(r))
    ver = report.verification
    if ver is not None:
        if ver.error:
            say(f"Verification failed: {neutral(ver.error)}")
        else:
            say(f"Verified: {ver.matched}/{ver.checked} planned fields match live state.")
            for m in ver.mismatches:
                say(f"  mismatch {neutral(m['message'])}")
    after = ver.charges_after if ver is not None else None
    if after is not None:
        say(
            f"Still billed for stopped resources that cannot ring (re-read): "
            f"{after.stopped_monthly_total} {after.currency}/month "
            f"(+{after.newly_stopped_monthly} newly stopped, −{after.resumed_monthly} resumed "
            "by this apply)."
        )
    else:
        say(
            "Still billed for stopped resources: unknown, live state was not re-read; "
            "run `reconciler plan` to see it."
        )
    if not report.converged:
        say("Re-running apply is safe: it plans again from live state.")
