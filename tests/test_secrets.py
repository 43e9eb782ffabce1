"""Secrets never appear: not in output (also -v/-vv), logs, errors, plan or report files,
the GitHub step summary, or the sandbox server's own output."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from reconciler.providers.sandbox.server import start_server

ROOT = Path(__file__).resolve().parent.parent
ACCESS = "AK-visible-access-key"
SECRET = "S3cr3t-0f-the-kn0wn-kind"
TOKEN = base64.b64encode(f"{ACCESS}:{SECRET}".encode()).decode()
FORBIDDEN = [SECRET, TOKEN, f"Basic {TOKEN}", base64.b64encode(SECRET.encode()).decode()]


def assert_clean(text: str, where: str) -> None:
    for needle in FORBIDDEN:
        assert needle not in text, f"secret material in {where}"


@pytest.fixture
def project(tmp_path: Path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path


def cli(project: Path, *args: str, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CTM_ACCESS_KEY": ACCESS,
        "CTM_SECRET_KEY": secret,
        "RECONCILER_LOCK_DIR": str(project / "locks"),
        "GITHUB_STEP_SUMMARY": str(project / "summary.md"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert_clean(proc.stdout + proc.stderr, f"output of {args}")
    return proc


def use_ctm(project: Path, url: str) -> None:
    (project / "config" / "reconciler.yaml").write_text(
        f"provider:\n  type: ctm\n  base_url: {url}\n  requests_per_second: 500\n"
    )


def test_every_command_with_a_known_secret(project):
    assert cli(project, "plan").returncode == 0  # seeds the sandbox database
    db = project / ".reconciler" / "sandbox.db"
    with start_server(db, access_key=ACCESS, secret_key=SECRET, access_log=True) as server:
        use_ctm(project, server.url)
        runs = [
            ("validate",),
            ("plan", "-v"),
            ("plan", "-vv", "--format", "json"),
            ("plan", "--format", "markdown"),
            ("plan", "--format", "github", "-vv"),
            ("plan", "--out", "plan.json"),
            ("drift", "-vv"),
            ("apply", "--auto-approve", "--report", "report.json", "-vv"),
            ("apply", "--plan", "plan.json", "--auto-approve", "-vv"),  # stale: refused
            ("import", "--account", "1005", "--out", "imported", "-vv"),  # not managed yet
            ("plan", "--account", "9999"),
        ]
        codes = {args: cli(project, *args).returncode for args in runs}
        assert codes[("apply", "--auto-approve", "--report", "report.json", "-vv")] == 0
        assert codes[("apply", "--plan", "plan.json", "--auto-approve", "-vv")] == 1
        # failures: wrong secret (401) and a refused write path
        failed = cli(project, "plan", "-vv", secret=SECRET + "-wrong")
        assert failed.returncode == 1 and "401" in failed.stderr
    for produced in (
        "plan.json",
        "report.json",
        "summary.md",
        "imported/evergreen-vet-clinic-not-managed-by-this-config.yaml",
    ):
        assert_clean((project / produced).read_text(), produced)


def test_server_access_log_and_errors_never_show_credentials(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    db = tmp_path / "s.db"
    from reconciler.providers.sandbox.fleet import init_database

    init_database(db, tmp_path / "config" / "sandbox-fleet.yaml")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "sandbox",
            "serve",
            "--db",
            str(db),
            "--port",
            "0",
            "--access-key",
            ACCESS,
            "--secret-key",
            SECRET,
            "-v",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if first.startswith("Warning: --secret-key"):  # a key on the command line is warned about
        first += proc.stdout.readline()
    url = first.split("Serving the sandbox API at ", 1)[1].split(" ", 1)[0]
    requests.get(url + "/accounts", auth=(ACCESS, SECRET), timeout=10)
    requests.get(url + "/accounts", auth=(ACCESS, SECRET + "x"), timeout=10)
    requests.get(url + "/accounts", headers={"Authorization": f"Basic {TOKEN}"}, timeout=10)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "GET" in rest  # the access log did run
    assert_clean(first + rest, "sandbox serve output")
