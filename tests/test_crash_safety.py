"""Crash safety: an apply killed at any point (SIGKILL) or interrupted (SIGINT) leaves
nothing wrong; re-running converges; only planned resources are ever written; the apply
lock dies with its holder."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from reconciler.providers.sandbox.fleet import init_database
from reconciler.providers.sandbox.server import start_server
from reconciler.providers.sandbox.store import SandboxStore

ACCESS, SECRET = "crash-ak", "crash-secret"
ACCOUNTS = ("2001", "2002", "2003")
PER_ACCOUNT = 12


def _fleet() -> dict:
    accounts = []
    for a, account_id in enumerate(ACCOUNTS):
        numbers = [
            {
                "id": f"TPN{account_id}{i:02d}",
                "number": f"+1301{a + 5}55{i:04d}",
                "active": True,
                "paused": False,
                "source": {"name": "Website", "online": True},
                "stats": {"renewal_costs": "3.00", "calls": i},
            }
            for i in range(PER_ACCOUNT)
        ]
        accounts.append(
            {
                "id": int(account_id),
                "name": f"Clinic {account_id}",
                "status": "active",
                "monthly_fee": "49.00",
                "numbers": numbers,
            }
        )
    return {"accounts": accounts}


def _config(cfg: Path, url: str) -> set[tuple[str, str]]:
    """Desired state that changes about half of everything; returns the planned writes."""
    (cfg / "accounts").mkdir(parents=True)
    (cfg / "reconciler.yaml").write_text(
        f"provider:\n  type: ctm\n  base_url: {url}\n  concurrency: 4\n"
        "  requests_per_second: 1000\npolicy:\n  max_change_fraction: 1.0\n"
    )
    planned: set[tuple[str, str]] = set()
    for a, account_id in enumerate(ACCOUNTS):
        status = "stopped" if account_id == "2003" else "active"
        if status != "active":
            planned.add((f"account.{account_id}", "status"))
        lines = [f"account:\n  id: {account_id}\n  status: {status}\nnumbers:\n"]
        for i in range(PER_ACCOUNT):
            number = f"+1301{a + 5}55{i:04d}"
            lines.append(f'  - number: "{number}"\n')
            if i % 2 == 0:
                lines.append("    calls: stopped\n")
                planned.add((f"number.{number}", "active"))
            elif i % 3 == 0:
                lines.append("    swapping: paused\n")
                planned.add((f"number.{number}", "paused"))
        (cfg / "accounts" / f"a{account_id}.yaml").write_text("".join(lines))
    return planned


@pytest.fixture
def rig(tmp_path: Path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(_fleet()))
    base_db = tmp_path / "base.db"
    init_database(base_db, fleet)
    return tmp_path, base_db


def _argv(cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", *extra, "--config", str(cfg)]


def _apply(cwd: Path, cfg: Path, env: dict) -> subprocess.Popen:
    """A background `apply --auto-approve --report report.json`."""
    argv = [*_argv(cfg, "apply"), "--auto-approve", "--report", str(cwd / "report.json")]
    return subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _run(cwd: Path, env: dict, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _env(tmp: Path) -> dict:
    return {
        **os.environ,
        "CTM_ACCESS_KEY": ACCESS,
        "CTM_SECRET_KEY": SECRET,
        "RECONCILER_LOCK_DIR": str(tmp / "locks"),
        "NO_COLOR": "1",
    }


def _check_audit(db: Path, planned: set[tuple[str, str]]) -> None:
    with SandboxStore(db) as store:
        rows = store.audit()
    written = Counter((r["resource"], r["field"]) for r in rows)
    assert set(written) <= planned, f"written outside the plan: {set(written) - planned}"
    assert set(written) == planned, f"not written: {planned - set(written)}"
    assert all(n == 1 for n in written.values()), f"written twice: {written}"


def _trial(tmp: Path, base_db: Path, kill_after: float | None, sig: int = signal.SIGKILL):
    """One apply killed after `kill_after` seconds (None: not killed), then a clean re-run."""
    db = tmp / "live.db"
    shutil.copy(base_db, db)
    with start_server(db, access_key=ACCESS, secret_key=SECRET, latency_ms=25) as server:
        cfg = tmp / "cfg"
        shutil.rmtree(cfg, ignore_errors=True)
        planned = _config(cfg, server.url)
        env = _env(tmp)
        first_out = ""
        if kill_after is not None:
            proc = _apply(tmp, cfg, env)
            time.sleep(kill_after)
            proc.send_signal(sig)
            first_out, _ = proc.communicate(timeout=60)
        report_file = str(tmp / "report2.json")
        rerun = _run(tmp, env, [*_argv(cfg, "apply"), "--auto-approve", "--report", report_file])
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        report = (
            json.loads((tmp / "report2.json").read_text())
            if (tmp / "report2.json").exists()
            else None
        )
        drift = _run(tmp, env, _argv(cfg, "drift"))
        assert drift.returncode == 0, drift.stdout
    _check_audit(db, planned)
    return first_out, rerun.stdout, report


def _baseline(tmp: Path, base_db: Path) -> float:
    start = time.monotonic()
    _trial(tmp, base_db, kill_after=None)
    return time.monotonic() - start


def _kill_trials(tmp: Path, base_db: Path, trials: int, seed: int) -> list[float]:
    duration = _baseline(tmp, base_db)
    rng = random.Random(seed)
    points = [rng.uniform(0.05, 1.1) * duration for _ in range(trials)]
    for point in points:
        _trial(tmp, base_db, kill_after=point)
    return points


def test_sigkill_at_random_points_then_rerun_converges(rig):
    tmp, base_db = rig
    _kill_trials(tmp, base_db, trials=3, seed=11)


@pytest.mark.slow
def test_sigkill_many_trials(rig):
    tmp, base_db = rig
    points = _kill_trials(tmp, base_db, trials=24, seed=2026)
    assert len(points) == 24


def test_sigint_stops_cleanly_with_a_summary(rig):
    tmp, base_db = rig
    db = tmp / "live.db"
    shutil.copy(base_db, db)
    with start_server(db, access_key=ACCESS, secret_key=SECRET, latency_ms=60) as server:
        cfg = tmp / "cfg"
        planned = _config(cfg, server.url)
        proc = _apply(tmp, cfg, _env(tmp))
        seen = ""
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the first finished write, then interrupt
            seen += line
            if line.startswith("  ok "):
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=60)
        out = seen + rest
        assert proc.returncode == 1, out
        assert "Interrupted: nothing else was started; writes in flight had 3 s to finish" in out
        assert "not started" in out and "Traceback" not in out
        assert "not_started " in out and "None" not in out  # listed, no literal None
        report = json.loads((tmp / "report.json").read_text())
        assert report["interrupted"] is True and report["converged"] is False
        counts = report["counts"]
        assert counts["not_started"] > 0 and counts["ok"] >= 1
        assert counts["ok"] + counts["failed"] + counts["not_started"] == len(planned)
        assert counts["unknown"] == 0  # 60 ms writes finish within the grace
        # the figure is live's after the interrupt (re-read), not the plan's
        assert "Still billed for stopped resources that cannot ring (re-read):" in out
        assert report["charges_after"] is not None
        with SandboxStore(db) as store:
            written = {(r["resource"], r["field"]) for r in store.audit()}
        done = {a["address"] for a in report["actions"] if a["outcome"] == "ok"}
        assert {w[0] for w in written} == done  # the report tells exactly what was done
    _trial(tmp, base_db, kill_after=None)


def test_lock_is_released_when_its_holder_is_killed(rig):
    """A SIGKILLed apply leaves no lock behind: flock dies with the process."""
    tmp, base_db = rig
    db = tmp / "live.db"
    shutil.copy(base_db, db)
    with start_server(db, access_key=ACCESS, secret_key=SECRET, latency_ms=200) as server:
        cfg = tmp / "cfg"
        _config(cfg, server.url)
        env = _env(tmp)
        holder = _apply(tmp, cfg, env)
        time.sleep(1.5)  # planning under the lock, or writing
        blocked = _run(tmp, env, [*_argv(cfg, "apply"), "--auto-approve"])
        holder.kill()
        holder.communicate(timeout=30)
        assert blocked.returncode == 1
        assert "another apply is running against" in blocked.stderr + blocked.stdout
        assert f"pid {holder.pid}" in blocked.stderr + blocked.stdout
        after = _run(tmp, env, [*_argv(cfg, "apply"), "--auto-approve"])
        assert after.returncode == 0, after.stdout + after.stderr
