"""Progress of reads on stderr (issue 15, item 3) and the -v batch lines (item 4), through
the real CLI: the embedded sandbox, and `sandbox serve` made slow with latency.

Log lines are checked in real processes (`python -m reconciler`): in-process, pytest's own
log capture owns the root logger, so `-v` could not be seen on the CLI's stderr there.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_cli_e2e import read_terminal

from reconciler.cli import main
from reconciler.providers.sandbox.server import RunningServer, start_server

ACCESS, SECRET = "progress-access", "progress-secret-not-shown"
LINE = re.compile(r"^(reading live state|verifying): (\d+)/(\d+) accounts, (\d+) retries$")
ACCOUNTS = 4  # in the example config


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


def cli(*args: str, cwd: Path, stderr: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
        timeout=120,
    )


def progress_lines(stderr: str) -> list[re.Match[str]]:
    return [m for m in map(LINE.match, stderr.splitlines()) if m]


def without_clock(plan_json: str) -> dict:
    plan = json.loads(plan_json)
    for key in ("generated_at", "evaluated_at"):
        plan.pop(key, None)
    return plan


@pytest.fixture
def seeded(project: Path) -> Path:
    """The example project with its sandbox database created (from the seed)."""
    assert invoke("validate").exit_code == 0
    assert invoke("plan").exit_code == 0
    return project


def serve(project: Path, monkeypatch: pytest.MonkeyPatch, **faults: float) -> RunningServer:
    """`sandbox serve` over the project's database; the config points the ctm provider at it."""
    server = start_server(
        project / ".reconciler" / "sandbox.db", access_key=ACCESS, secret_key=SECRET, **faults
    )
    (project / "config" / "reconciler.yaml").write_text(
        f"provider:\n  type: ctm\n  base_url: {server.url}\n  requests_per_second: 200\n"
    )
    monkeypatch.setenv("CTM_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("CTM_SECRET_KEY", SECRET)
    return server


@pytest.fixture
def slow(seeded: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    """Every request takes 0.8 s; progress lines every 0.2 s."""
    monkeypatch.setenv("RECONCILER_PROGRESS_INTERVAL", "0.2")
    with serve(seeded, monkeypatch, latency_ms=800) as server:
        yield server


@pytest.fixture
def fast(seeded: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    monkeypatch.delenv("RECONCILER_PROGRESS_INTERVAL", raising=False)
    with serve(seeded, monkeypatch) as server:
        yield server


# --- progress lines (stderr not a terminal) -------------------------------------------------


def test_a_slow_read_shows_progress_lines_on_stderr_and_leaves_json_clean(slow, monkeypatch):
    result = invoke("plan", "--format", "json")
    assert result.exit_code == 0, result.output
    lines = progress_lines(result.stderr)
    assert len(lines) >= 2, result.stderr
    assert all(m[1] == "reading live state" and m[3] == str(ACCOUNTS) for m in lines)
    done = [int(m[2]) for m in lines]
    assert done == sorted(done) and done[-1] <= ACCOUNTS
    assert result.stderr.splitlines() == [m[0] for m in lines]  # nothing else on stderr
    assert "reading live state" not in result.stdout
    # the JSON is the same as without progress (only the clock differs)
    monkeypatch.setenv("RECONCILER_PROGRESS_INTERVAL", "1000")
    quiet = invoke("plan", "--format", "json")
    assert quiet.stderr == ""
    assert without_clock(result.stdout) == without_clock(quiet.stdout)


def test_drift_shows_progress_too(slow):
    result = invoke("drift", "--format", "json")
    assert result.exit_code == 2, result.output
    assert len(progress_lines(result.stderr)) >= 2
    json.loads(result.stdout)


def test_apply_shows_progress_reading_and_verifying(seeded, monkeypatch):
    monkeypatch.setenv("RECONCILER_PROGRESS_INTERVAL", "0.1")
    with serve(seeded, monkeypatch, latency_ms=400):
        result = invoke("apply", "--auto-approve", "--format", "json")
    assert result.exit_code == 0, result.output
    labels = {m[1] for m in progress_lines(result.stderr)}
    assert labels == {"reading live state", "verifying"}, result.stderr
    verifying = [m for m in progress_lines(result.stderr) if m[1] == "verifying"]
    assert all(m[3] == "3" for m in verifying)  # the accounts written to are re-read
    assert "Verified: 5/5" in result.stderr
    assert json.loads(result.stdout)["summary"]["stop"] == 3


def test_a_fast_run_prints_no_progress(fast):
    for args in (("plan", "--format", "json"), ("drift",), ("apply", "--auto-approve")):
        result = invoke(*args)
        assert result.exit_code in (0, 2), result.output
        assert not progress_lines(result.stderr), result.stderr
    assert invoke("plan", "--format", "json").stderr == ""


def test_the_embedded_sandbox_prints_no_progress(seeded, monkeypatch):
    monkeypatch.delenv("RECONCILER_PROGRESS_INTERVAL", raising=False)
    result = invoke("plan", "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""


def test_a_bad_interval_falls_back_to_the_default(fast, monkeypatch):
    for bad in ("soon", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("RECONCILER_PROGRESS_INTERVAL", bad)
        result = invoke("plan", "--format", "json")
        assert result.exit_code == 0 and result.stderr == "", bad


def test_retries_are_counted_in_progress_and_in_the_v_line(seeded, monkeypatch):
    monkeypatch.setenv("RECONCILER_PROGRESS_INTERVAL", "0.2")
    with serve(seeded, monkeypatch, latency_ms=300, error_rate=0.3, rng_seed=3) as server:
        proc = cli("-v", "plan", "--format", "json", cwd=seeded)
        unavailable = server.stats.by_status.get(503, 0)
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)
    assert unavailable > 0  # the seed makes some requests fail once
    (read,) = re.findall(
        r"INFO reconciler.providers.ctm: read .* (\d+) retr(?:y|ies)\)", proc.stderr
    )
    assert int(read) == unavailable
    assert all(int(m[4]) <= unavailable for m in progress_lines(proc.stderr))
    assert SECRET not in proc.stderr


# --- progress bar (stderr a terminal) --------------------------------------------------------


def _on_a_terminal(args: list[str], cwd: Path, out_path: Path) -> str:
    """Run with stderr a pseudo-terminal and stdout a file; what the terminal showed."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "RECONCILER_LOCK_DIR": str(cwd / "locks")}
    with out_path.open("w") as out:
        proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=terminal, env=env)
        os.close(terminal)
        shown = read_terminal(controller, proc)
        assert proc.wait(timeout=30) == 0, shown
    os.close(controller)
    return shown.decode(errors="replace")


def test_on_a_terminal_a_progress_bar_on_stderr_and_stdout_untouched(slow, seeded):
    out_path = seeded / "plan.json"
    args = [sys.executable, "-m", "reconciler", "plan", "--format", "json"]
    text = _on_a_terminal(args, seeded, out_path)
    assert "reading live state  [" in text, text
    assert f"{ACCOUNTS}/{ACCOUNTS}" in text and "accounts, 0 retries" in text
    assert not progress_lines(text.replace("\r", "\n"))  # a bar, not the lines for logs
    assert json.loads(out_path.read_text())["summary"]["stop"] == 3


def test_apply_with_json_on_stdout_draws_its_bar_on_stderr(seeded):
    out_path = seeded / "plan.json"
    args = [sys.executable, "-m", "reconciler", "apply", "--auto-approve", "--format", "json"]
    shown = _on_a_terminal(args, seeded, out_path)
    assert "Applying" in shown and "Apply complete: 5 ok" in shown
    assert json.loads(out_path.read_text())["summary"]["stop"] == 3  # nothing but the plan


# --- -v: one line per batch, before or after the subcommand ---------------------------------

SANDBOX_READ = re.compile(
    r"^INFO reconciler\.providers\.sandbox\.provider: read 4 accounts, \d+ numbers from "
    r"\.reconciler/sandbox\.db in \d+ ms$",
    re.M,
)


@pytest.mark.parametrize("command", ["plan", "drift", "apply", "doctor"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_v_logs_batches_of_the_sandbox_before_or_after_the_subcommand(seeded, command, where):
    args = [command, "--auto-approve"] if command == "apply" else [command]
    args = ["-v", *args] if where == "before" else [*args, "-v"]
    proc = cli(*args, cwd=seeded)
    assert proc.returncode in (0, 2), proc.stderr
    if command == "doctor":
        assert re.search(
            r"^INFO reconciler\.doctor: checked the sandbox database in ", proc.stderr, re.M
        )
        return
    assert SANDBOX_READ.search(proc.stderr), proc.stderr
    if command == "apply":
        assert re.search(
            r"^INFO reconciler\.cli\.apply: wrote 5 changes to \.reconciler/sandbox\.db in \d+ ms$",
            proc.stderr,
            re.M,
        ), proc.stderr
        assert re.search(
            r"providers\.sandbox\.provider: read 3 accounts, .* in \d+ ms$", proc.stderr, re.M
        )


@pytest.mark.parametrize("command", ["plan", "drift", "apply", "doctor"])
def test_without_v_nothing_is_logged(seeded, command):
    args = [command, "--auto-approve"] if command == "apply" else [command]
    proc = cli(*args, cwd=seeded)
    assert proc.returncode in (0, 2) and proc.stderr == ""


def test_v_logs_batches_of_the_http_provider(fast, seeded):
    url = re.escape(fast.url)
    proc = cli("-v", "plan", cwd=seeded)
    assert proc.returncode == 0, proc.stderr
    reads = re.findall(
        rf"^INFO reconciler\.providers\.ctm: read 4 accounts, (\d+) numbers from {url} "
        r"\((\d+) requests, 0 retries\) in \d+(?: ms|\.\d+ s)$",
        proc.stderr,
        re.M,
    )
    assert len(reads) == 1, proc.stderr
    assert int(reads[0][1]) == fast.stats.reads  # every request of the read, prefetch included
    proc = cli("apply", "--auto-approve", "-v", cwd=seeded)
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        rf"^INFO reconciler\.cli\.apply: wrote 5 changes to {url} \(5 requests, 0 retries\) in ",
        proc.stderr,
        re.M,
    ), proc.stderr
    assert re.search(rf"ctm: read 3 accounts, \d+ numbers from {url} \(", proc.stderr)
    proc = cli("doctor", "-v", cwd=seeded)
    assert re.search(rf"^INFO reconciler\.doctor: checked {url} \(3 requests, ", proc.stderr, re.M)
    assert cli("plan", cwd=seeded).stderr == ""


def test_vv_logs_each_request_and_never_a_secret(fast, seeded):
    proc = cli("plan", "-vv", cwd=seeded)
    assert proc.returncode == 0, proc.stderr
    requests = re.findall(
        r"^DEBUG reconciler\.providers\.ctm: request: method=GET ", proc.stderr, re.M
    )
    assert len(requests) == fast.stats.reads
    assert SECRET not in proc.stderr and ACCESS not in proc.stderr
