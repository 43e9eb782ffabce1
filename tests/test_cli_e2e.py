"""End to end: the real CLI against the embedded sandbox and against `sandbox serve`,
with live state checked afterwards through the store."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.lock import apply_lock
from reconciler.providers.sandbox.server import start_server
from reconciler.providers.sandbox.store import SandboxStore

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def store(project: Path) -> SandboxStore:
    return SandboxStore(project / ".reconciler" / "sandbox.db")


def number(project: Path, e164: str) -> dict:
    with store(project) as s:
        _, num_rows = s.all_rows()
        for row in num_rows:
            if e164 in row:
                return s.get_number(row[1], row[0])
    raise AssertionError(e164)


def account(project: Path, account_id: str) -> dict:
    with store(project) as s:
        return s.get_account(account_id)


def audit(project: Path) -> list[dict]:
    with store(project) as s:
        return s.audit()


def edit_account(project: Path, name: str, old: str, new: str) -> None:
    path = project / "config" / "accounts" / name
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def plan_json(*extra: str) -> tuple[int, dict]:
    code, out = run("plan", "--format", "json", *extra)
    return code, json.loads(out)


# --- plan --------------------------------------------------------------------------------


def test_plan_on_the_example_shows_changes_and_charges(project):
    code, out = run("plan")
    assert code == 0
    assert "~ account 1003 (Cedar Law Group)  status: active -> stopped" in out
    assert "Plan: 3 to stop, 1 to allow, 1 to pause, 0 to resume; 13 unchanged." in out
    assert (
        "Now 6.00 USD/month billed for 2 stopped resources; once applied 119.00 "
        "(+116.00 newly stopped, −3.00 resumed)." in out
    )
    assert audit(project) == []  # planning never writes


def test_plan_detailed_exitcode_and_out_file(project):
    code, _ = run("plan", "--detailed-exitcode", "--out", "plan.json")
    assert code == 2
    saved = json.loads((project / "plan.json").read_text())
    assert saved["format_version"] == 1 and len(saved["changes"]) == 5
    assert saved["provider"]["type"] == "sandbox"


def test_account_scope_reads_and_plans_only_that_account(project):
    code, data = plan_json("--account", "1002")
    assert code == 0
    assert {c["account_id"] for c in data["changes"]} == {"1002"}
    assert [a["id"] for a in data["accounts"]] == ["1002"] and data["scope"] == ["1002"]


def test_account_scope_unknown_id(project):
    code, out = run("plan", "--account", "4242")
    assert code == 1 and "--account 4242: not managed by config" in out


# --- apply -------------------------------------------------------------------------------


def test_apply_without_tty_or_flag_refuses_and_changes_nothing(project):
    code, out = run("apply")
    assert code == 1 and "refusing to apply without approval" in out
    assert audit(project) == []


def test_apply_converges_and_touches_only_planned_resources(project):
    code, out = run("apply", "--auto-approve", "--report", "report.json")
    assert code == 0, out
    assert "Apply complete: 5 ok, 0 failed, 0 not started." in out
    assert "Verified: 5/5 planned fields match live state." in out
    assert number(project, "+14105550102")["active"] is False
    assert number(project, "+14105550103")["paused"] is True
    assert number(project, "+14105550104")["active"] is True
    assert account(project, "1003")["status"] == "stopped"
    written = sorted((a["resource"], a["field"]) for a in audit(project))
    assert written == sorted(
        [
            ("number.+14105550102", "active"),
            ("number.+14105550103", "paused"),
            ("number.+14105550104", "active"),
            ("number.+14435550112", "active"),
            ("account.1003", "status"),
        ]
    )
    assert number(project, "+14105550199")["active"] is True  # unmanaged: untouched
    report = json.loads((project / "report.json").read_text())
    assert report["converged"] is True and report["counts"]["ok"] == 5
    assert {a["outcome"] for a in report["actions"]} == {"ok"}
    assert report["verification"]["matched"] == 5
    assert run("plan", "--detailed-exitcode")[0] == 0
    assert run("drift")[0] == 0


def test_apply_order_numbers_before_stopping_account_and_after_allowing(project):
    run("apply", "--auto-approve")
    edit_account(project, "cedar-law.yaml", "status: stopped", "status: active")
    edit_account(
        project,
        "cedar-law.yaml",
        '  - number: "+12025550122"',
        '  - number: "+12025550122"\n    calls: stopped',
    )
    code, out = run("apply", "--auto-approve")
    assert code == 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith("  ok ")]
    assert "stop number +12025550122" in lines[0] and "allow account 1003" in lines[1]
    resources = [a["resource"] for a in audit(project)][-2:]
    # stop of a number is phase 0, allowing the account phase 2
    assert resources == ["number.+12025550122", "account.1003"]


def test_saved_plan_applies_when_fresh(project):
    run("plan", "--out", "plan.json")
    code, out = run("apply", "--plan", "plan.json", "--auto-approve")
    assert code == 0, out


def test_stale_plan_is_refused(project):
    run("plan", "--out", "plan.json")
    with store(project) as s:  # someone changes live behind the config's back
        s.update_number("1001", "TPN1001B", active=False, via="direct")
    before = audit(project)
    code, out = run("apply", "--plan", "plan.json", "--auto-approve")
    assert code == 1 and "plan is stale" in out
    assert "no longer planned: number.+14105550102 calls: allowed -> stopped" in out
    assert audit(project) == before


def test_threshold_needs_force(project):
    nums = [f"+1301555{i:04d}" for i in range(10)]
    fleet = yaml.safe_load((project / "config" / "sandbox-fleet.yaml").read_text())
    fleet["accounts"][3]["numbers"] = [
        {
            "id": f"TPNX{i}",
            "number": n,
            "active": True,
            "paused": False,
            "source": {"name": "Website", "online": True},
        }
        for i, n in enumerate(nums)
    ]
    (project / "config" / "sandbox-fleet.yaml").write_text(yaml.safe_dump(fleet))
    entries = "".join(
        f'  - number: "{n}"\n' + ("    calls: stopped\n" if i < 4 else "")
        for i, n in enumerate(nums)
    )
    (project / "config" / "accounts" / "delta-auto.yaml").write_text(
        f"account:\n  id: 1004\n  status: paused\nnumbers:\n{entries}"
    )
    code, out = run("apply", "--auto-approve", "--account", "1004")
    assert code == 1 and "threshold_exceeded" in out and "nothing was applied" in out
    assert audit(project) == []
    code, out = run("apply", "--auto-approve", "--account", "1004", "--force")
    assert code == 0, out
    assert len(audit(project)) == 4


@pytest.mark.parametrize(
    ("edits", "code"),
    [
        (
            [
                (
                    "acme-dental.yaml",
                    "    protected: true",
                    "    protected: true\n    calls: stopped",
                )
            ],
            "protected",
        ),
        ([("acme-dental.yaml", '"+14105550104"', '"+14105550177"')], "unknown_number"),
        (
            [
                ("bayside-plumbing.yaml", '  - number: "+14435550113"\n', ""),
                ("acme-dental.yaml", '"+14105550104"', '"+14435550113"'),
            ],
            "wrong_account",
        ),
        ([("cedar-law.yaml", "id: 1003", "id: 7777")], "unknown_account"),
        (
            [
                (
                    "bayside-plumbing.yaml",
                    '  - number: "+14435550113"',
                    '  - number: "+14435550113"\n    swapping: paused',
                )
            ],
            "not_pausable",
        ),
    ],
    ids=["protected", "unknown_number", "wrong_account", "unknown_account", "not_pausable"],
)
def test_plan_errors_block_apply(project, edits, code):
    for file, old, new in edits:
        edit_account(project, file, old, new)
    rc, data = plan_json()
    assert rc == 1
    assert code in [e["code"] for e in data["errors"]]
    assert data["changes"] is not None  # the JSON still lists everything it found
    rc, out = run("apply", "--auto-approve")
    assert rc == 1 and "the plan has" in out and "nothing was applied" in out
    assert audit(project) == []


def test_window_ended_allows_again(project):
    run("apply", "--auto-approve")  # stops +14435550112 until 2027-01-05
    edit_account(project, "bayside-plumbing.yaml", "2027-01-05T08:00:00Z", "2026-01-05T08:00:00Z")
    _, data = plan_json()
    (change,) = data["changes"]
    assert (change["address"], change["action"], change["reason"]) == (
        "number.+14435550112",
        "allow",
        "window_ended",
    )
    assert any(
        w["code"] == "window_ends" and "window ended" in w["message"] for w in data["warnings"]
    )
    assert run("apply", "--auto-approve")[0] == 0
    assert number(project, "+14435550112")["active"] is True


def test_window_ongoing_stops_with_time_left(project):
    _, data = plan_json("--account", "1002")
    (change,) = data["changes"]
    assert change["until"] == "2027-01-05T08:00:00Z" and change["reason"] == "config"
    assert any(w["code"] == "window_ends" and "ends in" in w["message"] for w in data["warnings"])


def test_drift_reports_live_changes(project):
    run("apply", "--auto-approve")
    with store(project) as s:
        s.set_account_status("1004", "active", via="direct")
    code, out = run("drift")
    assert code == 2
    assert "Live differs from the config:" in out
    assert "account 1004 (Delta Auto Repair)  status: live active, config paused" in out
    code, out = run("drift", "--format", "markdown")
    assert code == 2 and "### reconciler drift report" in out


def test_second_apply_is_blocked_by_the_lock(project):
    run("plan")  # creates the database
    # the lock is keyed by the real path, however the config spells it
    with apply_lock(str(project / ".reconciler" / "sandbox.db")):
        code, out = run("apply", "--auto-approve")
    assert code == 1 and "another apply is running against" in out
    assert f"pid {os.getpid()}" in out
    assert audit(project) == []


# --- import ------------------------------------------------------------------------------


def bare_config(project: Path, name: str = "imported-config") -> Path:
    """The example's settings and seed (same sandbox database) without account files."""
    cfg = project / name
    (cfg / "accounts").mkdir(parents=True)
    shutil.copy(project / "config" / "reconciler.yaml", cfg / "reconciler.yaml")
    shutil.copy(project / "config" / "sandbox-fleet.yaml", cfg / "sandbox-fleet.yaml")
    return cfg


def test_import_round_trip_gives_an_empty_plan(project):
    out_dir = project / "imported"
    cfg = bare_config(project)
    code, out = run(
        "import", "--config", str(cfg), "--account", "1001", "--account", "1002",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, out
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["acme-dental.yaml", "bayside-plumbing.yaml"]
    text = (out_dir / "acme-dental.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../../schemas/account.schema.json")
    for f in out_dir.iterdir():
        shutil.copy(f, cfg / "accounts" / f.name)
    code, data = plan_json("--config", str(cfg))
    assert code == 0 and data["changes"] == [] and data["errors"] == [] and data["unmanaged"] == []
    code, out = run("import", "--account", "1005", "--out", str(out_dir))
    assert code == 0, out
    code, out = run("import", "--account", "1005", "--out", str(out_dir))
    assert code == 1 and "exists; pass --overwrite" in out
    assert run("import", "--account", "1005", "--out", str(out_dir), "--overwrite")[0] == 0


def test_import_names_from_live_data_stay_inside_out(project):
    run("plan")  # creates the database from the seed
    con = sqlite3.connect(project / ".reconciler" / "sandbox.db")
    con.execute("UPDATE accounts SET name = ? WHERE id = '1001'", ("../../etc/passwd",))
    con.execute("UPDATE accounts SET name = ? WHERE id = '1002'", ("/etc/y",))
    con.commit()
    con.close()
    out_dir = project / "imp"
    cfg = bare_config(project)
    code, out = run(
        "import", "--config", str(cfg), "--account", "1001", "--account", "1002",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, out
    assert sorted(p.name for p in out_dir.iterdir()) == ["etc-passwd.yaml", "etc-y.yaml"]
    assert not (project / "etc").exists()


def test_import_unknown_account(project):
    code, out = run("import", "--account", "4242", "--out", "x")
    assert code == 1 and "unknown account(s) at the provider: 4242" in out


# --- against `sandbox serve` over HTTP -----------------------------------------------------


def test_apply_through_the_http_provider(project, monkeypatch):
    run("plan")  # seed the database
    db = project / ".reconciler" / "sandbox.db"
    with start_server(db, access_key="ak", secret_key="sk-e2e-secret", latency_ms=5) as server:
        (project / "config" / "reconciler.yaml").write_text(
            f"provider:\n  type: ctm\n  base_url: {server.url}\n  requests_per_second: 200\n"
        )
        monkeypatch.setenv("CTM_ACCESS_KEY", "ak")
        monkeypatch.setenv("CTM_SECRET_KEY", "sk-e2e-secret")
        code, out = run("apply", "--auto-approve", "-v")
        assert code == 0, out
        assert "Verified: 5/5" in out and "sk-e2e-secret" not in out
        assert {a["via"] for a in audit(project)} == {"http"}
        assert run("drift")[0] == 0
    assert account(project, "1003")["status"] == "stopped"


def test_action_times_leave_out_the_wait_for_the_rate_limit(project, monkeypatch):
    """5 writes at 2 requests/s queue for tokens for seconds; each action's time is its
    own request (5 ms latency here), the wait for a token is reported apart."""
    run("plan")  # seed the database
    db = project / ".reconciler" / "sandbox.db"
    report = project / "report.json"
    with start_server(db, access_key="ak", secret_key="sk-e2e-secret", latency_ms=5) as server:
        (project / "config" / "reconciler.yaml").write_text(
            f"provider:\n  type: ctm\n  base_url: {server.url}\n  requests_per_second: 2\n"
            "  concurrency: 5\n"
        )
        monkeypatch.setenv("CTM_ACCESS_KEY", "ak")
        monkeypatch.setenv("CTM_SECRET_KEY", "sk-e2e-secret")
        code, out = run("apply", "--auto-approve", "--report", str(report))
    assert code == 0, out
    actions = json.loads(report.read_text())["actions"]
    assert len(actions) == 5
    assert sum(a["rate_limit_wait_ms"] for a in actions) > 1000  # a token every 500 ms
    assert all(a["ms"] < 400 for a in actions), actions  # on the wire: 5 ms plus overhead
    assert "ms waiting for the rate limit)" in out


# --- real processes ------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_subprocess_plan_and_console_script(project):
    proc = _cli("plan", "--no-color", cwd=project)
    assert proc.returncode == 0 and "Plan: 3 to stop" in proc.stdout
    script = Path(sys.executable).with_name("reconciler")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Usage: reconciler" in proc.stdout


def test_a_real_process_exits_with_its_code_and_all_its_output(project):
    """The console script ends with os._exit once done (no heap teardown): the exit code
    must survive it, and all output must arrive first, also through a pipe."""
    proc = _cli("plan", "--format", "json", "--detailed-exitcode", cwd=project)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["summary"]["stop"] == 3
    proc = _cli("plan", "--config", "no-such-dir", cwd=project)
    assert proc.returncode == 1 and "config directory not found" in proc.stderr


def _interactive_apply(project: Path, answer: str) -> tuple[int, str]:
    """Run `reconciler apply` on a real pseudo-terminal and answer its prompt."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", "RECONCILER_LOCK_DIR": str(project / "locks")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "apply"],
        cwd=project,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    output = read_terminal(controller, proc, b"Only 'yes' will be accepted", answer.encode())
    proc.wait(timeout=30)
    os.close(controller)
    return proc.returncode, output.decode(errors="replace")


def read_terminal(
    controller: int, proc: subprocess.Popen, prompt: bytes = b"", answer: bytes = b""
) -> bytes:
    """What a process shows on the pseudo-terminal `controller` until it ends (60 s at
    most); once `prompt` has been shown, `answer` and a newline are typed."""
    output = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        if prompt and not answered and prompt in output:
            os.write(controller, answer + b"\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    return output


def test_interactive_no_changes_nothing(project):
    code, out = _interactive_apply(project, "no")
    assert code == 1, out
    assert "Apply cancelled; nothing was changed." in out
    assert audit(project) == []


def test_interactive_yes_applies_with_progress(project):
    code, out = _interactive_apply(project, "yes")
    assert code == 0, out
    assert "Applying" in out and "Verified: 5/5" in out
    assert len(audit(project)) == 5


def _ctm_config(project: Path, base_url: str) -> None:
    (project / "config" / "reconciler.yaml").write_text(
        f"provider:\n  type: ctm\n  base_url: {base_url}\n"
    )


@pytest.mark.parametrize("command", ["plan", "drift", "apply"])
def test_server_down_is_one_line_and_exit_1(project, monkeypatch, command):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _ctm_config(project, f"http://127.0.0.1:{port}/api/v1")
    monkeypatch.setenv("CTM_ACCESS_KEY", "ak")
    monkeypatch.setenv("CTM_SECRET_KEY", "sk-not-shown")
    code, out = run(command, "--auto-approve") if command == "apply" else run(command)
    assert code == 1
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines == [
        f"Error: ctm: GET /accounts: cannot connect to http://127.0.0.1:{port} "
        "(connection refused) (after 3 attempts)"
    ]


def test_wrong_keys_is_one_line_and_exit_1(project, monkeypatch):
    run("plan")
    with start_server(
        project / ".reconciler" / "sandbox.db", access_key="ak", secret_key="right"
    ) as server:
        _ctm_config(project, server.url)
        monkeypatch.setenv("CTM_ACCESS_KEY", "ak")
        monkeypatch.setenv("CTM_SECRET_KEY", "wrong-secret-value")
        code, out = run("plan", "-vv")
    assert code == 1 and "401" in out and "CTM_SECRET_KEY" in out
    assert "wrong-secret-value" not in out and "Traceback" not in out
    assert out.count("Error:") == 1


def test_missing_key_variable_names_it(project, monkeypatch):
    _ctm_config(project, "https://api.example.com/api/v1")
    monkeypatch.delenv("CTM_ACCESS_KEY", raising=False)
    code, out = run("plan")
    assert code == 1 and "environment variable CTM_ACCESS_KEY is not set" in out
