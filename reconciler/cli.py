"""Command line: parse, call the core, render, exit code.

Heavy modules (pydantic, yaml, requests) are imported inside the commands so that
`reconciler --help` starts fast.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:  # heavy modules stay out of `reconciler --help`
    from reconciler.apply import ActionResult, ApplyReport
    from reconciler.engine import Planned
    from reconciler.models import Plan
    from reconciler.providers.base import Provider

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

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Usage errors exit 1, not click's 2: exit 2 means "changes" or "drift" here."""
        _tune_interpreter()
        _HELD.clear()  # one command per process, but tests run many in one
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(EXIT_OK)
        except click.ClickException as exc:
            exc.show()
            sys.exit(EXIT_ERROR)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(EXIT_ERROR)

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


def _tune_interpreter() -> None:
    """Garbage collection and thread switching for a fleet-scale run.

    Collect every 50,000 allocations instead of every 700: a run allocates millions of
    small objects (YAML nodes, desired and live numbers) that all stay alive and form
    almost no cycles; with the default thresholds the collector runs thousands of times
    and its full passes walk every live object (0.3 s of the 1.4 s it takes to load 1,000
    account files with 100,000 numbers).

    Switch threads after 1 ms instead of 5 ms: the HTTP provider's readers wait for the
    GIL after every socket call while the reading thread decodes pages; a shorter wait
    keeps 8 requests in flight (no-op HTTP plan of 100,000 numbers: ~2% faster).
    """
    gc.set_threshold(50_000)
    sys.setswitchinterval(0.001)


def fail(message: str) -> NoReturn:
    """Print one error message to stderr and exit 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # urllib3 announces every retry as a warning; reconciler reports the outcome in one line
    # (and its own retry log at -v), so urllib3 speaks only at -vv.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)


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


# What a finished command no longer needs but `run` need not free (see there).
_HELD: list[object] = []
T = TypeVar("T")


def hold_until_exit(obj: T) -> T:
    """Keep `obj` (a desired or planned state) referenced until the process ends."""
    _HELD.append(obj)
    return obj


def run() -> NoReturn:
    """The `reconciler` console script (and `python -m reconciler`): `main`, then exit.

    A fleet-sized run ends holding a few hundred thousand objects, and freeing them one by
    one cost a no-op HTTP plan of 100,000 numbers ~40 ms when the command's state went out
    of scope and ~55 ms more at interpreter shutdown. So commands hold their big state
    (`hold_until_exit`), and once the command has finished with an exit code, no other
    thread is running (nothing is in flight) and the output is flushed, the process ends
    with `os._exit`: the OS takes the memory back at once. In any other case it exits the
    normal way.
    """
    try:
        code: object = main()  # with standalone_mode off, click returns what a command does
    except SystemExit as exc:
        code = exc.code
    code = 0 if code is None else code
    if isinstance(code, int) and threading.active_count() == 1:
        try:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # e.g. a closed pipe: let the normal exit report it
            sys.exit(code)
        os._exit(code)
    sys.exit(code)


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

        desired = hold_until_exit(load_config(config_dir))
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


def _shard_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from reconciler.shard import parse_shard

    try:
        return parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def plan_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--account, --shard, --format, --no-color (plus --config, -v) for plan, apply, drift."""
    func = click.option(
        "--shard",
        metavar="K/N",
        callback=_shard_option,
        help="Only accounts of shard K of N (stable hash of the account id), for CI matrices.",
    )(func)
    func = click.option(
        "--no-color", is_flag=True, help="No colour (also when NO_COLOR is set or not a TTY)."
    )(func)
    func = click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json", "markdown", "github"]),
        default="text",
        show_default=True,
        help="Output format.",
    )(func)
    func = click.option(
        "--account",
        "accounts",
        multiple=True,
        metavar="ID",
        help="Only this account (repeatable).",
    )(func)
    return config_options(func)


def use_color(no_color: bool) -> bool:
    return not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()


def _write_file(path: str, text: str) -> None:
    """Write atomically: a crash never leaves a half-written plan or report."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".reconciler-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@main.command()
@plan_options
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
) -> None:
    """Read live state and show what apply would change, and what keeps billing.

    \b
    Examples:
      reconciler plan                                  # whole config, text
      reconciler plan --account 1001                   # on-call: one account
      reconciler plan --format markdown > comment.md   # PR comment
      reconciler plan --out plan.json                  # save for `apply --plan`
    """
    _setup_logging(verbose)

    def body() -> int:
        from reconciler.engine import make_plan
        from reconciler.render import render
        from reconciler.render.json import render_json

        planned = hold_until_exit(make_plan(config_dir, accounts, shard=shard))
        planned.provider.close()
        result = planned.plan
        click.echo(render(result, fmt, color=use_color(no_color)), nl=False)
        if out_file:
            _write_file(out_file, render_json(result))
            click.echo(f"Saved the plan to {out_file}.", err=True)
        if result.errors:
            return EXIT_ERROR
        if detailed_exitcode and result.changes:
            return EXIT_CHANGES
        return EXIT_OK

    run_guarded(body)


@main.command()
@plan_options
def drift(
    config_dir: str,
    verbose: int,
    accounts: tuple[str, ...],
    fmt: str,
    no_color: bool,
    shard: tuple[int, int] | None,
) -> None:
    """Report where live state differs from the config (exit 2), for scheduled checks.

    \b
    Exit codes: 0 in sync, 2 drift, 1 error.
    Example:
      reconciler drift --format markdown > drift.md || test $? -eq 2
    """
    _setup_logging(verbose)

    def body() -> int:
        from reconciler.engine import make_plan
        from reconciler.render import render

        planned = hold_until_exit(make_plan(config_dir, accounts, shard=shard))
        planned.provider.close()
        click.echo(render(planned.plan, fmt, mode="drift", color=use_color(no_color)), nl=False)
        if planned.plan.errors:
            return EXIT_ERROR
        return EXIT_CHANGES if planned.plan.changes else EXIT_OK

    run_guarded(body)


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
    _setup_logging(verbose)

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
) -> None:
    """Make live match the config: plan, confirm, write, re-read and verify.

    \b
    Examples:
      reconciler apply                                  # asks "type yes" on a terminal
      reconciler apply --auto-approve --report out.json # CI
      reconciler plan --out plan.json && reconciler apply --plan plan.json --auto-approve
    Exit codes: 0 converged; 1 error, refused, or partly failed.
    """
    _setup_logging(verbose)

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
) -> int:
    from reconciler.apply import check_saved_plan
    from reconciler.config import load_config
    from reconciler.engine import make_plan, open_for
    from reconciler.lock import apply_lock
    from reconciler.render import render

    desired = load_config(config_dir)
    # The lock is taken before planning and held through approval and writes, so the plan
    # that is shown is the plan that is applied: no other apply from this machine can
    # interleave, and nothing needs to be read a second time.
    with open_for(desired) as provider, apply_lock(provider.target):
        planned = hold_until_exit(
            make_plan(config_dir, accounts, provider=provider, desired=desired, shard=shard)
        )
        plan = planned.plan
        if plan_file:
            check_saved_plan(plan_file, plan)
        click.echo(render(plan, fmt, color=color), nl=False)
        say = _sayer(fmt)
        if plan.errors:
            fail(f"the plan has {len(plan.errors)} error(s); nothing was applied")
        if not force and any(w.code == "threshold_exceeded" for w in plan.warnings):
            fail(
                "the plan exceeds policy.max_change_fraction (threshold_exceeded); nothing "
                "was applied. Review it and re-run with --force if it is intended"
            )
        if not plan.changes:
            say("Nothing to apply: live matches the config.")
            return EXIT_OK
        if not auto_approve and not _confirm(plan, provider.target, say):
            return EXIT_ERROR
        report = _execute(provider, planned, say)
        if report_file:
            import json

            _write_file(report_file, json.dumps(report.to_dict(), indent=2) + "\n")
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


def _execute(provider: Provider, planned: Planned, say: Callable[[str], None]) -> ApplyReport:
    import signal

    from reconciler.apply import apply_changes, verify

    plan = planned.plan
    concurrency = planned.desired.settings.provider.concurrency
    tty = sys.stdout.isatty()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        if tty:
            with click.progressbar(length=len(plan.changes), label="Applying") as bar:
                report = apply_changes(
                    provider, plan, concurrency=concurrency, on_result=lambda r: bar.update(1)
                )
        else:
            report = apply_changes(
                provider, plan, concurrency=concurrency, on_result=lambda r: say(_action_line(r))
            )
        # Also after an interrupt: the summary states live as it is, not as planned.
        say("Verifying: re-reading live state…")
        try:
            report.verification = verify(provider, plan, planned.live, planned.desired)
        except KeyboardInterrupt:
            say("Verification interrupted: live state was not re-read.")
    finally:
        signal.signal(signal.SIGTERM, previous)
    _summary(report, say)
    return report


def _action_line(r: ActionResult) -> str:
    c = r.change
    what = f"{c.action} {c.address.replace('.', ' ', 1)} {c.field}: {c.from_} -> {c.to}"
    tail = f" ({r.ms:.0f} ms)" if r.outcome == "ok" else f": {r.error}"
    return f"  {r.outcome:<7} {what}{tail}"


def _summary(report: ApplyReport, say: Callable[[str], None]) -> None:
    counts = report.counts()
    say("")
    if report.interrupted:
        say("Interrupted: in-flight writes were allowed to finish; nothing else was started.")
    say(
        f"Apply {'complete' if report.converged else 'incomplete'}: {counts['ok']} ok, "
        f"{counts['failed']} failed, {counts['not_started']} not started."
    )
    for r in report.results:
        if r.outcome != "ok":
            say(_action_line(r))
    ver = report.verification
    if ver is not None:
        if ver.error:
            say(f"Verification failed: {ver.error}")
        else:
            say(f"Verified: {ver.matched}/{ver.checked} planned fields match live state.")
            for m in ver.mismatches:
                say(f"  mismatch {m['message']}")
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
