"""`reconciler sandbox ...`: in-process with CliRunner, plus real subprocess runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["sandbox", *args], env=env)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


# --- init and show ----------------------------------------------------------------------


def test_init_then_show_gives_back_the_fleet(
    tmp_path: Path, fleet_file: Path, fleet_data: dict[str, Any]
) -> None:
    db = tmp_path / "new" / "sandbox.db"
    result = run("init", "--db", str(db), "--from", str(fleet_file))
    assert result.exit_code == 0, result.output
    assert "3 accounts, 3 numbers" in result.stdout
    shown = run("show", "--db", str(db))
    assert shown.exit_code == 0
    assert json.loads(shown.stdout) == fleet_data


def test_show_output_is_a_fleet_file(tmp_path: Path, sandbox_db: Path) -> None:
    first = run("show", "--db", str(sandbox_db)).stdout
    fleet = tmp_path / "shown.json"
    fleet.write_text(first)
    assert run("init", "--db", str(tmp_path / "b.db"), "--from", str(fleet)).exit_code == 0
    assert run("show", "--db", str(tmp_path / "b.db")).stdout == first


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (None, ("no such fleet file",)),
        ("accounts: [", ("not valid YAML",)),
        (
            yaml.safe_dump({"accounts": [{"name": "A", "numbers": [{"number": "410-555"}]}]}),
            ("accounts[0].numbers[0].number", "E.164"),
        ),
        (
            yaml.safe_dump({"accounts": [{"name": "A", "status": "closed"}]}),
            ("accounts[0].status", "closed"),
        ),
        ("\x00\x01binary", ()),
    ],
)
def test_init_with_a_bad_fleet_is_one_line_and_exit_1(
    tmp_path: Path, content: str | None, fragments: tuple[str, ...]
) -> None:
    fleet = tmp_path / "fleet.yaml"
    if content is not None:
        fleet.write_text(content)
    db = tmp_path / "s.db"
    result = run("init", "--db", str(db), "--from", str(fleet))
    assert_one_line_error(result, str(fleet), *fragments)
    assert not db.exists()
    assert list(tmp_path.glob(".s.db.*")) == []  # no temp file left behind


def test_show_without_a_database(tmp_path: Path) -> None:
    result = run("show", "--db", str(tmp_path / "none.db"))
    assert_one_line_error(result, "no such sandbox database", "sandbox init")


def test_show_on_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"PK\x03\x04 definitely a zip, not sqlite" * 50)
    result = run("show", "--db", str(bogus))
    assert_one_line_error(result, str(bogus), "not a")


# --- generate ---------------------------------------------------------------------------


def test_generate_writes_a_database_and_a_fleet_file(tmp_path: Path) -> None:
    db, fleet = tmp_path / "g.db", tmp_path / "fleet.yaml"
    result = run(
        "generate", "--db", str(db), "--accounts", "4", "--numbers-per-account", "6",
        "--rng-seed", "9", "--fleet-out", str(fleet),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 accounts, 24 numbers" in result.stdout
    # the fleet file builds the same database
    again = tmp_path / "again.db"
    assert run("init", "--db", str(again), "--from", str(fleet)).exit_code == 0
    assert run("show", "--db", str(again)).stdout == run("show", "--db", str(db)).stdout
    data = json.loads(run("show", "--db", str(db)).stdout)
    assert [a["id"] for a in data["accounts"]] == [1001, 1002, 1003, 1004]


@pytest.mark.parametrize(
    ("accounts", "per_account", "text"),
    [("0", "5", "--accounts"), ("2", "-1", "--numbers-per-account")],
)
def test_generate_refuses_bad_sizes(
    tmp_path: Path, accounts: str, per_account: str, text: str
) -> None:
    result = run(
        "generate", "--db", str(tmp_path / "g.db"), "--accounts", accounts,
        "--numbers-per-account", per_account,
    )  # fmt: skip
    assert_one_line_error(result, text)


# --- serve: refusals in-process -----------------------------------------------------------


def test_serve_needs_keys(sandbox_db: Path) -> None:
    env = {"RECONCILER_SANDBOX_ACCESS_KEY": "", "RECONCILER_SANDBOX_SECRET_KEY": ""}
    result = run("serve", "--db", str(sandbox_db), "--port", "0", env=env)
    assert_one_line_error(result, "--access-key", "RECONCILER_SANDBOX_SECRET_KEY")


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--error-rate", "1.5"), ("--drop-rate", "-0.1"), ("--rate-limit", "0"), ("--port", "70000")],
)
def test_serve_refuses_bad_fault_flags(sandbox_db: Path, flag: str, value: str) -> None:
    result = run(
        "serve", "--db", str(sandbox_db), "--access-key", "a", "--secret-key", "b", flag, value
    )
    assert_one_line_error(result, flag)


def test_serve_without_a_database(tmp_path: Path) -> None:
    result = run(
        "serve", "--db", str(tmp_path / "x.db"), "--access-key", "a", "--secret-key", "b",
        "--port", "0",
    )  # fmt: skip
    assert_one_line_error(result, "no such sandbox database")


@pytest.mark.parametrize("command", ["init", "generate", "show", "serve"])
def test_help_has_an_example(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"reconciler sandbox {command}" in result.stdout


# --- real subprocesses ------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_SANDBOX_")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def test_module_entry_point_init_and_show(tmp_path: Path, fleet_file: Path) -> None:
    db = tmp_path / "p.db"
    cmd = [sys.executable, "-m", "reconciler", "sandbox"]
    done = subprocess.run(
        [*cmd, "init", "--db", str(db), "--from", str(fleet_file)],
        capture_output=True, text=True, env=_env(), timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = subprocess.run(
        [*cmd, "show", "--db", str(db)], capture_output=True, text=True, env=_env(), timeout=30
    )
    assert shown.returncode == 0
    assert [a["name"] for a in json.loads(shown.stdout)["accounts"]] == [
        "Acme Dental",
        "Bayside Plumbing",
        "Cedar Law Group",
    ]
    bad = subprocess.run(
        [*cmd, "show", "--db", str(fleet_file)], capture_output=True, text=True, env=_env(),
        timeout=30,
    )  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_serve_subprocess_answers_and_stops_on_sigterm(sandbox_db: Path, tmp_path: Path) -> None:
    secret = "sub-process-secret"
    env = _env(RECONCILER_SANDBOX_ACCESS_KEY="sub-access", RECONCILER_SANDBOX_SECRET_KEY=secret)
    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "sandbox", "serve", "--db", str(sandbox_db),
         "--port", "0", "-v", "--stats-file", str(stats_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:(\d+)/api/v1)", first)
        assert match and match[2] != "0", first
        url = match[1]
        ok = requests.get(f"{url}/accounts/1001", auth=("sub-access", secret), timeout=5)
        assert ok.status_code == 200 and ok.json()["name"] == "Acme Dental"
        assert (
            requests.get(f"{url}/accounts", auth=("sub-access", "nope"), timeout=5).status_code
            == 401
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Stopped the sandbox server" in out
    assert "GET /api/v1/accounts/1001 200" in err  # -v: one access line per request
    assert secret not in out + err + first and "Authorization" not in err
    stats = json.loads(stats_file.read_text())  # --stats-file: the counters, written on stop
    assert (stats["total"], stats["reads"], stats["writes"]) == (2, 2, 0)
    assert stats["by_status"] == {"200": 1, "401": 1}


@pytest.mark.parametrize("on_command_line", [True, False], ids=["flag", "env"])
def test_a_secret_key_on_the_command_line_is_warned_about(
    sandbox_db: Path, on_command_line: bool
) -> None:
    keys = ["--access-key", "a", "--secret-key", "cmdline-secret"] if on_command_line else []
    env = _env(RECONCILER_SANDBOX_ACCESS_KEY="a", RECONCILER_SANDBOX_SECRET_KEY="env-secret")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "sandbox", "serve", "--db", str(sandbox_db),
         "--port", "0", *keys],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "Serving the sandbox API" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    warned = "Warning: --secret-key on the command line is visible to other users" in err
    assert warned == on_command_line, err
    assert "cmdline-secret" not in out + err and "env-secret" not in out + err


def test_a_stats_file_that_cannot_be_written_is_one_line(sandbox_db: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    env = _env(RECONCILER_SANDBOX_ACCESS_KEY="a", RECONCILER_SANDBOX_SECRET_KEY="s-long-enough")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "sandbox", "serve", "--db", str(sandbox_db),
         "--port", "0", "--stats-file", str(tmp_path / "afile" / "stats.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "Serving the sandbox API" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert err.strip().splitlines() == [
        f"Error: {tmp_path / 'afile' / 'stats.json'}: cannot write it (Not a directory)"
    ]
