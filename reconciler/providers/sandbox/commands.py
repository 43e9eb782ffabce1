"""`reconciler sandbox ...`: thin click commands over the sandbox store, fleet and server."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from reconciler.cli.base import CONTEXT_SETTINGS, EXIT_OK, run_guarded
from reconciler.errors import ReconcilerError

ACCESS_KEY_ENV = "RECONCILER_SANDBOX_ACCESS_KEY"
SECRET_KEY_ENV = "RECONCILER_SANDBOX_SECRET_KEY"


class SandboxUsageError(ReconcilerError):
    """A sandbox command was given a value it cannot use."""


def _db_option(func: Any) -> Any:
    return click.option(
        "--db",
        "db_path",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="The sandbox database (SQLite file).",
    )(func)


@click.group(context_settings=CONTEXT_SETTINGS)
def sandbox() -> None:
    """The embedded sandbox provider: a local SQLite database of accounts and numbers.

    \b
    Example:
      reconciler sandbox init --db .reconciler/sandbox.db --from config/sandbox-fleet.yaml
      reconciler sandbox serve --db .reconciler/sandbox.db --port 8080
    """


@sandbox.command()
@_db_option
@click.option(
    "--from",
    "fleet_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fleet file (YAML or JSON): accounts with their numbers in the wire API's shape "
    "(schemas/provider-api.openapi.yaml).",
)
def init(db_path: Path, fleet_path: Path) -> None:
    """Create or replace a sandbox database from a fleet file.

    The database is built next to its final path and swapped in at the end, so a failed
    init never leaves a half-written database behind. It takes the apply lock of that
    path: it refuses to replace a database while an apply is writing it.

    \b
    Example:
      reconciler sandbox init --db .reconciler/sandbox.db --from config/sandbox-fleet.yaml
    """

    def body() -> int:
        from reconciler.lock import apply_lock
        from reconciler.providers.sandbox.fleet import init_database

        with apply_lock(str(db_path)):  # never replace a database an apply is writing
            fleet = init_database(db_path, fleet_path)
        click.echo(
            f"{db_path}: {len(fleet.accounts)} accounts, {len(fleet.numbers)} numbers "
            f"from {fleet_path}"
        )
        return EXIT_OK

    run_guarded(body)


@sandbox.command()
@_db_option
@click.option("--accounts", "n_accounts", required=True, type=int, help="Number of accounts.")
@click.option(
    "--numbers-per-account", "n_numbers", required=True, type=int, help="Numbers per account."
)
@click.option("--rng-seed", default=1, show_default=True, type=int, help="Same seed, same fleet.")
@click.option(
    "--fleet-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the fleet file: JSON if it ends in .json, else YAML (JSON loads "
    "about 50x faster: use it for fleets of many thousands of numbers).",
)
def generate(
    db_path: Path, n_accounts: int, n_numbers: int, rng_seed: int, fleet_out: Path | None
) -> None:
    """Create or replace a sandbox database with a synthetic fleet.

    Realistic names, unique US numbers, a mix of online and offline sources, some numbers
    already stopped or paused. Deterministic for a given --rng-seed (and day).

    \b
    Example (100,000 numbers, for benchmarks):
      reconciler sandbox generate --db /tmp/big.db --accounts 1000 --numbers-per-account 100
    """

    def body() -> int:
        from reconciler.lock import apply_lock
        from reconciler.providers.sandbox.fleet import dump_fleet, write_fleet
        from reconciler.providers.sandbox.generate import generate_database
        from reconciler.providers.sandbox.store import SandboxStore

        if not 1 <= n_accounts <= 100_000:
            raise SandboxUsageError(f"--accounts must be between 1 and 100000, not {n_accounts}")
        if not 0 <= n_numbers <= 10_000:
            raise SandboxUsageError(
                f"--numbers-per-account must be between 0 and 10000, not {n_numbers}"
            )
        started = time.perf_counter()
        with apply_lock(str(db_path)):  # never replace a database an apply is writing
            accounts, numbers = generate_database(db_path, n_accounts, n_numbers, rng_seed)
        seconds = time.perf_counter() - started
        click.echo(f"{db_path}: {accounts} accounts, {numbers} numbers in {seconds:.2f}s")
        if fleet_out is not None:
            with SandboxStore(db_path) as store:
                write_fleet(dump_fleet(store), fleet_out)
            click.echo(f"wrote {fleet_out}")
        return EXIT_OK

    run_guarded(body)


SETTABLE = {
    "account": {"status": ("active", "paused", "stopped")},
    "number": {"calls": ("allowed", "stopped"), "swapping": ("active", "paused")},
}


@sandbox.command("set")
@_db_option
@click.argument("address")
@click.argument("assignments", nargs=-1, required=True, metavar="FIELD=VALUE...")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="When the change happened, as the provider records it (ISO-8601 with timezone; "
    "default now).",
)
def set_(db_path: Path, address: str, assignments: tuple[str, ...], at: str | None) -> None:
    """Change live state behind the config's back, as a click in the provider's UI would
    (drift demos and tests).

    \b
    Examples:
      reconciler sandbox set --db .reconciler/sandbox.db number.+14105550101 calls=stopped
      reconciler sandbox set --db .reconciler/sandbox.db account.1004 status=stopped
    """

    def body() -> int:
        from reconciler.providers.sandbox.store import NotFound, SandboxStore

        kind, _, ident = address.partition(".")
        fields = SETTABLE.get(kind)
        if fields is None or not ident:
            raise ReconcilerError(
                f"{address!r}: write account.<id> or number.<E.164>, e.g. number.+14105550101"
            )
        wanted = dict(_assignment(a, fields) for a in assignments)
        when = _iso_utc(at) if at else None
        with SandboxStore(db_path) as store:
            if kind == "account":
                try:
                    got = store.set_account_status(ident, wanted["status"], "direct", at=when)
                except NotFound as exc:
                    raise ReconcilerError(f"{db_path}: {exc}") from None
            else:
                found = store.find_number(ident)
                if found is None:
                    raise ReconcilerError(f"{db_path}: no number {ident}")
                body_ = {}
                if "calls" in wanted:
                    body_["active"] = wanted["calls"] == "allowed"
                if "swapping" in wanted:
                    body_["paused"] = wanted["swapping"] == "paused"
                got = store.update_number(*found, **body_, via="direct", at=when)
        click.echo(json.dumps(got, indent=2))
        return EXIT_OK

    run_guarded(body)


def _assignment(text: str, fields: dict[str, tuple[str, ...]]) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or name not in fields or value not in fields[name]:
        choices = "; ".join(f"{f}={'|'.join(v)}" for f, v in fields.items())
        raise ReconcilerError(f"{text!r}: write FIELD=VALUE, one of {choices}")
    return name, value


def _iso_utc(text: str) -> str:
    from datetime import datetime, timezone

    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError
        return parsed.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    except (ValueError, OverflowError):
        raise ReconcilerError(
            f"--at {text!r}: expected an ISO-8601 time with timezone, e.g. 2026-11-26T07:03:00Z"
        ) from None


@sandbox.command()
@_db_option
def show(db_path: Path) -> None:
    """Print the live state of a sandbox database as JSON, in the fleet shape.

    The output is a valid fleet file: `show` then `init --from` gives the same database.

    \b
    Example:
      reconciler sandbox show --db .reconciler/sandbox.db > fleet.json
    """

    def body() -> int:
        from reconciler.providers.sandbox.fleet import dump_fleet
        from reconciler.providers.sandbox.store import SandboxStore

        with SandboxStore(db_path) as store:
            data = dump_fleet(store)
        click.echo(json.dumps(data, indent=2))
        return EXIT_OK

    run_guarded(body)


@sandbox.command()
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="0 = any free port.")
@click.option("--access-key", help=f"Access key clients must send (default: env {ACCESS_KEY_ENV}).")
@click.option(
    "--secret-key",
    help=f"Secret key clients must send (default: env {SECRET_KEY_ENV}). Prefer the "
    "variable: a key on the command line is visible to other users of the machine (ps).",
)
@click.option("--latency-ms", default=0.0, type=float, help="Added to every response.")
@click.option("--error-rate", default=0.0, type=float, help="Share of requests answered 503.")
@click.option(
    "--drop-rate",
    default=0.0,
    type=float,
    help="Share of writes committed, then the connection closed without a response.",
)
@click.option("--rate-limit", type=float, help="Requests per second; beyond it 429.")
@click.option("--rng-seed", type=int, help="Seed for the fault dice (reproducible runs).")
@click.option(
    "--stats-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="On stop, write the request counters as JSON (total, reads, writes, by_status, "
    "faults): how benchmarks count requests without trusting the client.",
)
@click.option("-v", "--verbose", count=True, help="Access log on stderr: one line per request.")
def serve(
    db_path: Path,
    host: str,
    port: int,
    access_key: str | None,
    secret_key: str | None,
    latency_ms: float,
    error_rate: float,
    drop_rate: float,
    rate_limit: float | None,
    rng_seed: int | None,
    stats_file: Path | None,
    verbose: int,
) -> None:
    """Serve the provider's HTTP API over a sandbox database until stopped.

    The API is documented in schemas/provider-api.openapi.yaml.

    Clients authenticate with HTTP Basic (access key, secret key). The keys come from
    RECONCILER_SANDBOX_ACCESS_KEY and RECONCILER_SANDBOX_SECRET_KEY (or --access-key and
    --secret-key, but a key on the command line is visible to other users in `ps`). Fault
    flags make it slow or unreliable on purpose, for testing clients. Stop with Ctrl-C or
    SIGTERM.

    \b
    Example:
      export RECONCILER_SANDBOX_ACCESS_KEY=dev RECONCILER_SANDBOX_SECRET_KEY=dev-secret
      reconciler sandbox serve --db .reconciler/sandbox.db --port 8080 --error-rate 0.1
    """

    def body() -> int:
        keys = _keys(access_key, secret_key)
        _check_faults(latency_ms, error_rate, drop_rate, rate_limit, port)
        if verbose:
            logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        return _serve(
            db_path,
            host,
            port,
            keys,
            {
                "latency_ms": latency_ms,
                "error_rate": error_rate,
                "drop_rate": drop_rate,
                "rate_limit": rate_limit,
                "rng_seed": rng_seed,
            },
            bool(verbose),
            stats_file,
            warn_key=bool(secret_key),
        )

    run_guarded(body)


def _keys(access_key: str | None, secret_key: str | None) -> tuple[str, str]:
    access = access_key or os.environ.get(ACCESS_KEY_ENV, "")
    secret = secret_key or os.environ.get(SECRET_KEY_ENV, "")
    if not access or not secret:
        raise SandboxUsageError(
            "the server needs keys: give --access-key and --secret-key, or set "
            f"{ACCESS_KEY_ENV} and {SECRET_KEY_ENV}"
        )
    return access, secret


def _check_faults(
    latency_ms: float, error_rate: float, drop_rate: float, rate_limit: float | None, port: int
) -> None:
    if not 0 <= port <= 65535:
        raise SandboxUsageError(f"--port must be between 0 and 65535, not {port}")
    import math

    if not (math.isfinite(latency_ms) and 0 <= latency_ms <= 600_000):
        raise SandboxUsageError(f"--latency-ms must be between 0 and 600000, not {latency_ms}")
    for flag, rate in (("--error-rate", error_rate), ("--drop-rate", drop_rate)):
        if not 0 <= rate <= 1:  # False for NaN too
            raise SandboxUsageError(f"{flag} must be between 0 and 1 (a share), not {rate}")
    if rate_limit is not None and not (math.isfinite(rate_limit) and rate_limit > 0):
        raise SandboxUsageError(f"--rate-limit must be > 0 requests per second, not {rate_limit}")


def _serve(
    db_path: Path,
    host: str,
    port: int,
    keys: tuple[str, str],
    faults: dict[str, Any],
    access_log: bool,
    stats_file: Path | None = None,
    warn_key: bool = False,
) -> int:
    from reconciler.providers.sandbox.server import start_server

    try:
        server = start_server(
            db_path,
            host=host,
            port=port,
            access_key=keys[0],
            secret_key=keys[1],
            access_log=access_log,
            **faults,
        )
    except OSError as exc:
        raise SandboxUsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if warn_key:
        click.echo(
            "Warning: --secret-key on the command line is visible to other users of this "
            f"machine (ps, /proc); set {SECRET_KEY_ENV} instead.",
            err=True,
        )
    click.echo(f"Serving the sandbox API at {server.url} (database {db_path}); Ctrl-C stops.")
    sys.stdout.flush()
    while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
        pass
    server.stop()
    total = server.stats.total
    if stats_file is not None:
        _write_stats(stats_file, server.stats.snapshot())
    click.echo(f"Stopped the sandbox server ({total} requests served); database closed.")
    return EXIT_OK


def _write_stats(path: Path, snapshot: dict[str, Any]) -> None:
    """Atomically, so a reader never sees half a file; an I/O error is one line."""
    from reconciler.atomic import write_atomic

    write_atomic(str(path), json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
