"""Shared CLI plumbing: the `main` group, common options, error handling, exit codes, `run`."""

# Heavy modules (pydantic, yaml, requests) are imported inside the command bodies so that
# `reconciler --help` starts fast.

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

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
    """Print one error message to stderr and exit 1 (control characters escaped: messages
    may carry provider text)."""
    from reconciler.render.safe import neutral

    click.echo(f"Error: {neutral(message)}", err=True)
    sys.exit(EXIT_ERROR)


def setup_logging(verbose: int) -> None:
    """Logging on stderr at the level of -v/-vv, given after the subcommand or before it
    (`reconciler -v plan`): the two counts add up."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, dict):
        verbose += int(root.obj.get("verbose", 0))
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
            "The embedded sandbox provider: init, generate, show, set, serve.",
        )
    },
)
@click.version_option(package_name="reconciler", prog_name="reconciler")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log output on stderr (-vv for debug), for any command.",
)
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Call states as code: stop, allow and pause call tracking from reviewed YAML.

    \b
    Typical use:
      reconciler validate                       # check the config offline
      reconciler plan --account 1001            # what would change, and what keeps billing
      reconciler apply --auto-approve           # make live match the config (CI)
      reconciler drift                          # exit 2 when live differs from config

    Stopping calls never stops charges: stopped numbers and accounts keep billing.
    """
    ctx.obj = {"verbose": verbose}


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


def _shard_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from reconciler.shard import parse_shard

    try:
        return parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def complete_accounts(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion for --account: the ids of the config's account files (read with a
    regex, not the full config loader: completion must answer at once, even for a config
    that does not validate yet)."""
    import glob
    import re

    from click.shell_completion import CompletionItem

    config_dir = ctx.params.get("config_dir") or os.environ.get("RECONCILER_CONFIG") or "config"
    found: dict[str, str] = {}
    pattern = re.compile(r"^\s+id:\s*[\"']?([^\"'\s#]+)", re.M)
    for path in sorted(glob.glob(os.path.join(config_dir, "accounts", "*.y*ml"))):
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                match = pattern.search(fh.read(65536))
        except OSError:
            continue
        if match and match[1].startswith(incomplete):
            found.setdefault(match[1], os.path.basename(path))
    return [CompletionItem(account, help=name) for account, name in found.items()]


PLAN_FORMATS = ("text", "json", "markdown", "github")


def format_option(
    choices: tuple[str, ...] = PLAN_FORMATS, help: str = "Output format."
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--format (as `fmt`), text by default."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default="text",
        show_default=True,
        help=help,
    )


def shard_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--shard K/N (as `shard`, a (K, N) tuple or None)."""
    return click.option(
        "--shard",
        metavar="K/N",
        callback=_shard_option,
        help="Only accounts of shard K of N (stable hash of the account id), for CI matrices.",
    )(func)


def account_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--account ID, repeatable (as `accounts`), completed from the config's files."""
    return click.option(
        "--account",
        "accounts",
        multiple=True,
        metavar="ID",
        shell_complete=complete_accounts,
        help="Only this account (repeatable).",
    )(func)


def plan_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--account, --shard, --format, --no-color (plus --config, -v) for plan, apply, drift."""
    func = shard_option(func)
    func = click.option(
        "--no-color", is_flag=True, help="No colour (also when NO_COLOR is set or not a TTY)."
    )(func)
    func = format_option()(func)
    func = account_option(func)
    return config_options(func)


AT_EXAMPLE = "2026-12-24T18:00:00Z"


def parse_at(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """`--at TIME`: an ISO-8601 time with a timezone, as aware UTC."""
    if value is None:
        return None
    from datetime import datetime, timezone

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("no timezone")
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise click.BadParameter(
            f"expected an ISO-8601 time with timezone, e.g. --at {AT_EXAMPLE} (got {value!r})"
        ) from None


def at_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--at TIME: judge every time rule at TIME (live is still read now)."""
    return click.option(
        "--at",
        metavar="TIME",
        callback=parse_at,
        help="Judge windows and ages at TIME (ISO-8601 with timezone) instead of now; live "
        f"is still read now. E.g. --at {AT_EXAMPLE}.",
    )(func)


def use_color(no_color: bool) -> bool:
    return not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()


def write_file(path: str, text: str) -> None:
    """Write atomically; a local I/O error is one line naming the path (`atomic.py`)."""
    from reconciler.atomic import write_atomic

    write_atomic(path, text)
