"""Fleet-scale benchmark: does reconciler stay within its budgets (issue 6, SPEC §7)?

Not part of the test run (no `test_` names; pytest does not collect it). Run it from the
repository root with the project installed:

    python tests/perf/bench.py                       # 1,000 accounts x 100 numbers, all scenarios
    python tests/perf/bench.py --only 1,3 --repeat 5
    python tests/perf/bench.py --accounts 200 --numbers 50 --keep

Everything is black-box: a fleet from `reconciler sandbox generate`, account files from
`reconciler import`, the provider's HTTP API from `reconciler sandbox serve` in its own
process (so the server never shares the client's GIL) on a free loopback port, and the real
CLI as a subprocess. Requests are counted by the server (`serve --stats-file`), not by the
client under test. Wall time is from spawning the CLI to its exit (interpreter start-up
included); peak RSS and CPU come from `os.wait4` for that one process.

Scenarios and budgets (A accounts x N numbers, concurrency 8, --latency-ms 20):
  1. no-op `plan` over HTTP (provider ctm): requests == ceil(A/150) + A*ceil(N/150) and
     wall <= 1.5 x (minimum requests x latency / concurrency)
  2. `apply` of --changes changes against `serve --rate-limit 100` with
     requests_per_second: 100: wall <= 1.2 x ((writes + minimum reads of the plan + minimum
     reads of the verification) / 100); no failed action; 429s are reported
  3. no-op `plan` on the embedded sandbox (provider sandbox): wall <= 3 s, RSS <= 400 MB
  4. `reconciler --help`: wall <= 0.3 s
  5. `ledger --format json` of the fleet on the embedded sandbox, its config in a git
     repository (20 pull requests stop --ledger-stops numbers, then `apply`): wall <= 15 s,
     RSS <= 400 MB, at least half the items with provenance
  6. `ledger` on the example config and its bundled sandbox: wall <= 1 s

Each scenario runs --repeat times (a fresh database for every apply); the table shows the
median wall time and the highest RSS, and each run's wall time is listed below it. Exit 1
if any budget is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PER_PAGE = 150
MB = 1024 * 1024
KEY_ENV = ("CTM_ACCESS_KEY", "CTM_SECRET_KEY")


# --- running processes ------------------------------------------------------------------


@dataclass
class Run:
    """One finished CLI process: exit code, wall seconds, peak RSS, CPU seconds."""

    code: int
    wall: float
    rss: int  # bytes
    cpu: float
    stdout: str
    stderr: str


def cli() -> list[str]:
    """The `reconciler` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("reconciler")
    return [str(script)] if script.exists() else [sys.executable, "-m", "reconciler"]


def run_measured(args: list[str], env: dict[str, str], out: Path) -> Run:
    """Run to completion; wall, RSS and CPU of exactly this child (os.wait4)."""
    with open(out, "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Run(
        code=proc.returncode,
        wall=wall,
        rss=usage.ru_maxrss * 1024,  # kilobytes on Linux
        cpu=usage.ru_utime + usage.ru_stime,
        stdout=out.read_text(),
        stderr=out.with_suffix(".err").read_text(),
    )


def check(args: list[str], env: dict[str, str]) -> str:
    """Run a setup step; stop the benchmark with its output if it fails."""
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"setup failed: {' '.join(args[:4])} ...\n{done.stdout}{done.stderr}")
    return done.stdout


class Server:
    """`reconciler sandbox serve` in its own process, on a free loopback port."""

    def __init__(self, db: Path, env: dict[str, str], stats: Path, *flags: str) -> None:
        self.stats_file = stats
        args = [*cli(), "sandbox", "serve", "--db", str(db), "--port", "0"]
        args += ["--stats-file", str(stats), *flags]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # "Serving the sandbox API at http://...:PORT/..."
        found = re.search(r"(http://\S+/api/v1)", first)
        if not found:
            self.proc.kill()
            sys.exit(f"sandbox serve did not start: {first!r}")
        self.url = found[1]

    def stop(self) -> tuple[dict[str, Any], float]:
        """SIGTERM; the server's request counters and its CPU seconds."""
        self.proc.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = 0
        if self.proc.stdout:
            self.proc.stdout.close()
        stats = json.loads(self.stats_file.read_text())
        return stats, usage.ru_utime + usage.ru_stime


# --- fleet and config -----------------------------------------------------------------


def min_reads(total_accounts: int, accounts: int, numbers: int) -> int:
    """Fewest requests that read `accounts` of `total_accounts` with `numbers` each.

    The account objects: the list (ceil(total/150) pages) or one GET each, whichever is
    fewer; then every account's numbers, ceil(N/150) pages (at least the first page, which
    is how an empty list is seen).
    """
    if accounts == 0:
        return 0
    listing = 1 if accounts == 1 else min(math.ceil(total_accounts / PER_PAGE), accounts)
    return listing + accounts * max(1, math.ceil(numbers / PER_PAGE))


def write_settings(config: Path, provider: dict[str, Any]) -> None:
    config.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"provider": provider}, sort_keys=False)
    (config / "reconciler.yaml").write_text(text, encoding="utf-8")


def make_changes(accounts_dir: Path, changes: int) -> tuple[int, int]:
    """Flip `calls` of `changes` numbers, spread evenly over the account files.

    Returns (changes made, accounts touched).
    """
    files = sorted(accounts_dir.glob("*.yaml"))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    per_file, extra = divmod(changes, len(files))
    made = touched = 0
    for i, path in enumerate(files):
        want = per_file + (1 if i < extra else 0)
        if not want:
            continue
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        flipped = 0
        for entry in data.get("numbers") or []:
            if flipped == want:
                break
            stopped = entry.get("calls") == "stopped"
            entry.pop("calls", None)
            if not stopped:
                entry["calls"] = "stopped"
            flipped += 1
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        made += flipped
        touched += 1 if flipped else 0
    return made, touched


@dataclass
class Fleet:
    db: Path  # pristine: scenarios that write copy it first
    accounts: list[str]
    numbers: int  # per account
    sandbox_config: Path  # provider sandbox, account files from `reconciler import`


def build_fleet(work: Path, n_accounts: int, n_numbers: int, env: dict[str, str]) -> Fleet:
    db = work / "fleet.db"
    started = time.perf_counter()
    check(
        [*cli(), "sandbox", "generate", "--db", str(db), "--accounts", str(n_accounts),
         "--numbers-per-account", str(n_numbers)],
        env,
    )  # fmt: skip
    with sqlite3.connect(db) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM accounts ORDER BY seq")]
    config = work / "config-sandbox"
    write_settings(config, {"type": "sandbox", "database": "../fleet-ro.db"})
    # import reads through the provider: give it a copy so the pristine file stays pristine
    shutil.copyfile(db, work / "fleet-ro.db")
    args = [*cli(), "import", "--config", str(config)]
    for account_id in ids:
        args += ["--account", account_id]
    check(args, env)
    took = time.perf_counter() - started
    print(f"fleet: {len(ids)} accounts x {n_numbers} numbers, config written in {took:.1f}s")
    return Fleet(db, ids, n_numbers, config)


# --- scenarios ----------------------------------------------------------------------------


@dataclass
class Result:
    number: int
    name: str
    bound: float
    rss_bound: int | None = None
    min_requests: int | None = None
    runs: list[Run] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def rss(self) -> int:
        return max(r.rss for r in self.runs)

    @property
    def passed(self) -> bool:
        return (
            bool(self.runs)
            and not self.problems
            and self.wall <= self.bound
            and (self.rss_bound is None or self.rss <= self.rss_bound)
        )


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "CTM_"))}
    env["NO_COLOR"] = "1"
    return env


def keyed_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(server env, client env) sharing a fresh random key pair."""
    access, secret = secrets.token_hex(8), secrets.token_hex(16)
    server = dict(env, RECONCILER_SANDBOX_ACCESS_KEY=access, RECONCILER_SANDBOX_SECRET_KEY=secret)
    client = dict(env, **dict(zip(KEY_ENV, (access, secret), strict=True)))
    return server, client


def scenario_http_plan(fleet: Fleet, work: Path, opts: argparse.Namespace) -> Result:
    a, n = len(fleet.accounts), fleet.numbers
    minimum = min_reads(a, a, n)
    res = Result(
        1,
        "no-op plan over HTTP (ctm)",
        bound=1.5 * minimum * (opts.latency_ms / 1000) / opts.concurrency,
        min_requests=minimum,
    )
    config = work / "config-http"
    shutil.rmtree(config, ignore_errors=True)
    shutil.copytree(fleet.sandbox_config / "accounts", config / "accounts")
    server_env, client_env = keyed_env(base_env())
    for i in range(opts.repeat):
        stats_file = work / f"s1-stats-{i}.json"
        server = Server(fleet.db, server_env, stats_file, "--latency-ms", str(opts.latency_ms))
        try:
            write_settings(
                config,
                # No client-side rate limit worth the name: this scenario is about latency.
                {"type": "ctm", "base_url": server.url, "concurrency": opts.concurrency,
                 "requests_per_second": 1000},
            )  # fmt: skip
            run = run_measured(
                [*cli(), "plan", "--config", str(config), "--detailed-exitcode"],
                client_env,
                work / f"s1-plan-{i}.txt",
            )
        finally:
            stats, cpu = server.stop()
        res.runs.append(run)
        res.requests.append(stats["total"])
        res.server_cpu.append(cpu)
        if run.code != 0:
            res.problems.append(f"run {i + 1}: exit {run.code} (0 = no changes expected)")
        if stats["total"] != minimum:
            res.problems.append(f"run {i + 1}: {stats['total']} requests, minimum {minimum}")
    return res


def scenario_apply(fleet: Fleet, work: Path, opts: argparse.Namespace) -> Result:
    a, n = len(fleet.accounts), fleet.numbers
    config = work / "config-apply"
    shutil.rmtree(config, ignore_errors=True)
    shutil.copytree(fleet.sandbox_config / "accounts", config / "accounts")
    made, touched = make_changes(config / "accounts", min(opts.changes, a * n))
    reads = min_reads(a, a, n) + min_reads(a, touched, n)
    minimum = made + reads
    res = Result(
        2,
        f"apply {made:,} changes, {opts.rate_limit:g} rps",
        bound=1.2 * minimum / opts.rate_limit,
        min_requests=minimum,
    )
    server_env, client_env = keyed_env(base_env())
    for i in range(opts.repeat):
        db = work / "apply.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(fleet.db, db)
        stats_file = work / f"s2-stats-{i}.json"
        server = Server(
            db, server_env, stats_file,
            "--latency-ms", str(opts.latency_ms), "--rate-limit", str(opts.rate_limit),
        )  # fmt: skip
        report = work / f"s2-report-{i}.json"
        try:
            write_settings(
                config,
                {"type": "ctm", "base_url": server.url, "concurrency": opts.concurrency,
                 "requests_per_second": opts.rate_limit},
            )  # fmt: skip
            run = run_measured(
                [*cli(), "apply", "--config", str(config), "--auto-approve", "--report",
                 str(report)],
                client_env,
                work / f"s2-apply-{i}.txt",
            )  # fmt: skip
        finally:
            stats, cpu = server.stop()
        res.runs.append(run)
        res.requests.append(stats["total"])
        res.server_cpu.append(cpu)
        got_429 = stats["by_status"].get("429", 0)
        res.notes.append(f"run {i + 1}: {got_429} responses were 429")
        if run.code != 0:
            res.problems.append(f"run {i + 1}: apply exited {run.code}")
        if not report.exists():
            res.problems.append(f"run {i + 1}: no apply report")
            continue
        counts = json.loads(report.read_text())
        failed = counts["counts"]["failed"] + counts["counts"]["not_started"]
        if failed or not counts["converged"] or counts["counts"]["ok"] != made:
            res.problems.append(f"run {i + 1}: {counts['counts']}, converged={counts['converged']}")
    return res


def scenario_embedded_plan(fleet: Fleet, work: Path, opts: argparse.Namespace) -> Result:
    res = Result(3, "no-op plan, embedded sandbox", bound=3.0, rss_bound=400 * MB)
    # a private copy: the plan only reads, but SQLite may write a WAL next to the file
    shutil.copyfile(fleet.db, work / "fleet-ro.db")
    for i in range(opts.repeat):
        run = run_measured(
            [*cli(), "plan", "--config", str(fleet.sandbox_config), "--detailed-exitcode"],
            base_env(),
            work / f"s3-plan-{i}.txt",
        )
        res.runs.append(run)
        if run.code != 0:
            res.problems.append(f"run {i + 1}: exit {run.code} (0 = no changes expected)")
    return res


def scenario_help(fleet: Fleet | None, work: Path, opts: argparse.Namespace) -> Result:
    res = Result(4, "reconciler --help", bound=0.3)
    for i in range(opts.repeat):
        run = run_measured([*cli(), "--help"], base_env(), work / f"s4-help-{i}.txt")
        res.runs.append(run)
        if run.code != 0:
            res.problems.append(f"run {i + 1}: exit {run.code}")
    return res


def _git(cwd: Path, *args: str) -> None:
    who = {"GIT_AUTHOR_NAME": "Bench Ops", "GIT_AUTHOR_EMAIL": "ops@example.com"}
    who |= {"GIT_COMMITTER_NAME": "Bench Ops", "GIT_COMMITTER_EMAIL": "ops@example.com"}
    check(["git", "-C", str(cwd), *args], {**base_env(), **who})


def scenario_ledger(fleet: Fleet, work: Path, opts: argparse.Namespace) -> Result:
    """`ledger` on the whole fleet in a git repository, after an apply that stops
    --ledger-stops numbers (committed in 20 pull requests, so blame has history to walk)."""
    res = Result(5, "ledger, embedded sandbox, git provenance", bound=15.0, rss_bound=400 * MB)
    repo = work / "ledger-repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(fleet.sandbox_config, repo / "config")
    shutil.copyfile(fleet.db, repo / "fleet-ro.db")
    _git(repo, "init", "-q")
    _git(repo, "add", "config")
    _git(repo, "commit", "-q", "-m", "Import the fleet")
    accounts = repo / "config" / "accounts"
    files = sorted(accounts.glob("*.yaml"))
    per_pr = max(1, len(files) // 20)
    for pr, start in enumerate(range(0, len(files), per_pr), start=100):
        batch = accounts / f"batch-{pr}"
        batch.mkdir()
        for path in files[start : start + per_pr]:
            path.rename(batch / path.name)
        make_changes(batch, max(1, opts.ledger_stops * per_pr // len(files)))
        for path in batch.iterdir():
            path.rename(accounts / path.name)
        batch.rmdir()
        _git(repo, "commit", "-q", "-am", f"Stop campaign numbers, batch {pr} (#{pr})")
    config = str(repo / "config")
    check([*cli(), "apply", "--config", config, "--auto-approve", "--force"], base_env())
    for i in range(opts.repeat):
        run = run_measured(
            [*cli(), "ledger", "--config", config, "--format", "json"],
            base_env(),
            work / f"s5-ledger-{i}.txt",
        )
        res.runs.append(run)
        if run.code != 0:
            res.problems.append(f"run {i + 1}: exit {run.code}: {run.stderr[-300:]}")
            continue
        data = json.loads(run.stdout)
        named = sum(1 for item in data["items"] if item["provenance"])
        if i == 0:
            res.notes.append(
                f"{len(data['items'])} ledger items ({named} with provenance), "
                f"{data['total_monthly']} {data['currency']}/month"
            )
        if named < len(data["items"]) // 2:
            res.problems.append(f"run {i + 1}: only {named} items with provenance")
    return res


def scenario_ledger_example(fleet: Fleet | None, work: Path, opts: argparse.Namespace) -> Result:
    """`ledger` on the example config and its bundled sandbox: under 1 s."""
    res = Result(6, "ledger, example config", bound=1.0)
    project = work / "example"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(Path(__file__).resolve().parents[2] / "config", project / "config")
    env = {**base_env(), "RECONCILER_LOCK_DIR": str(work / "locks")}
    config = str(project / "config")
    check([*cli(), "apply", "--config", config, "--auto-approve"], env)
    for i in range(opts.repeat):
        run = run_measured([*cli(), "ledger", "--config", config], env, work / f"s6-ledger-{i}.txt")
        res.runs.append(run)
        if run.code != 0 or "Ledger:" not in run.stdout:
            res.problems.append(f"run {i + 1}: exit {run.code}")
    return res


SCENARIOS = {
    1: scenario_http_plan,
    2: scenario_apply,
    3: scenario_embedded_plan,
    4: scenario_help,
    5: scenario_ledger,
    6: scenario_ledger_example,
}


# --- report -------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    head = (
        "| # | scenario | requests | minimum | wall (s) | bound (s) | wall/bound "
        "| peak RSS (MB) | client CPU (s) | server CPU (s) | result |"
    )
    rows = [head, "|" + "---|" * 11]
    for r in results:
        requests = "/".join(str(x) for x in sorted(set(r.requests))) if r.requests else "-"
        server = f"{statistics.median(r.server_cpu):.2f}" if r.server_cpu else "-"
        rss = f"{r.rss / MB:.0f}" + (f" (≤ {r.rss_bound // MB})" if r.rss_bound else "")
        rows.append(
            f"| {r.number} | {r.name} | {requests} | {r.min_requests or '-'} | {r.wall:.2f} "
            f"| {r.bound:.2f} | {r.wall / r.bound:.2f} | {rss} "
            f"| {statistics.median(x.cpu for x in r.runs):.2f} | {server} "
            f"| {'PASS' if r.passed else 'FAIL'} |"
        )
    return "\n".join(rows)


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=1000, help="accounts in the fleet")
    p.add_argument("--numbers", type=int, default=100, help="numbers per account")
    p.add_argument("--only", default="1,2,3,4,5,6", help="scenarios to run, e.g. 1,3")
    p.add_argument("--repeat", type=int, default=3, help="runs per scenario (median wall)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="server latency (1, 2)")
    p.add_argument("--concurrency", type=int, default=8, help="client concurrency (1, 2)")
    p.add_argument("--changes", type=int, default=2000, help="changes to apply (2)")
    p.add_argument("--rate-limit", type=float, default=100.0, help="server and client rps (2)")
    p.add_argument("--ledger-stops", type=int, default=2000, help="numbers stopped (5)")
    p.add_argument("--workdir", type=Path, help="keep fleet and outputs here (default: temp)")
    p.add_argument("--keep", action="store_true", help="do not delete the temporary workdir")
    opts = p.parse_args(argv)
    try:
        opts.only = sorted({int(x) for x in opts.only.split(",") if x.strip()})
    except ValueError:
        p.error("--only takes scenario numbers such as 1,3")
    if not set(opts.only) <= set(SCENARIOS) or not opts.only:
        p.error(f"--only: scenarios are {', '.join(map(str, SCENARIOS))}")
    if opts.repeat < 1 or opts.accounts < 1 or opts.numbers < 0:
        p.error("--repeat and --accounts must be >= 1, --numbers >= 0")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    print(f"workdir: {work}")
    try:
        fleet = None
        if set(opts.only) - {4, 6}:
            fleet = build_fleet(work, opts.accounts, opts.numbers, base_env())
        results = []
        for number in opts.only:
            result = SCENARIOS[number](fleet, work, opts)  # type: ignore[arg-type]
            results.append(result)
            walls = ", ".join(f"{r.wall:.2f}" for r in result.runs)
            print(f"scenario {number}: {'PASS' if result.passed else 'FAIL'} (walls {walls})")
        print()
        print(table(results))
        print()
        for r in results:
            for line in r.notes + r.problems:
                print(f"  scenario {r.number}: {line}")
        print(f"after: {machine()}")
        return 0 if all(r.passed for r in results) else 1
    finally:
        if not opts.keep and not opts.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
