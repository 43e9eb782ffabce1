"""A hostile provider through the real CLI (issue 13, cases 2-4): trickled, endless,
oversized, compressed and malformed answers, lying page counts, and signals mid-request.

Each test runs `python -m reconciler` as a subprocess against `sandbox serve` behind
tests/hostile_server.py, which carries every request out upstream (so writes land) and
then answers as its scenario says. "Never hangs" is checked with generous bounds: the
deadlines are 1 s per attempt and 3 s per request here, the bounds 20 s and more.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hostile_server import (
    HostileServer,
    endless,
    gzipped,
    hostile,
    oversized,
    replaced,
    rewritten,
    silent,
    trickle,
)
from test_cli_e2e import run

from reconciler.providers.sandbox.server import start_server
from reconciler.providers.sandbox.store import SandboxStore

ACCESS, SECRET = "hostile-ak", "hostile-secret-0123"


def write_settings(project: Path, url: str, timeout: float = 1, budget: float = 3) -> None:
    (project / "config" / "reconciler.yaml").write_text(
        f"provider:\n  type: ctm\n  base_url: {url}\n  requests_per_second: 500\n"
        f"  timeout_seconds: {timeout}\n  retry_budget_seconds: {budget}\n"
    )


@contextmanager
def provider(project: Path, **timing: float) -> Iterator[HostileServer]:
    """`sandbox serve` over the project's seeded database, behind the hostile server."""
    assert run("plan")[0] == 0  # seeds .reconciler/sandbox.db from the example fleet
    db = project / ".reconciler" / "sandbox.db"
    with (
        start_server(db, access_key=ACCESS, secret_key=SECRET) as server,
        hostile(server.url) as bad,
    ):
        write_settings(project, bad.url, **timing)
        yield bad


def env() -> dict[str, str]:
    return {**os.environ, "CTM_ACCESS_KEY": ACCESS, "CTM_SECRET_KEY": SECRET}


def cli(*args: str, timeout: float = 60) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def one_error(code: int, err: str) -> str:
    assert code == 1 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ctm: "), err
    return lines[0]


def writes(project: Path) -> list[dict[str, Any]]:
    with SandboxStore(project / ".reconciler" / "sandbox.db") as store:
        return store.audit()


def interrupted(
    bad: HostileServer, method: str, sig: int, *args: str
) -> tuple[subprocess.Popen, str, str, float]:
    """Run the CLI; once a `method` request reached the server (and hangs there), send
    `sig`. Returns the process, its output and the seconds from the signal to its end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    while not any(m == method for m, _ in bad.seen):
        time.sleep(0.05)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc, out, err, time.monotonic() - sent


# --- 2. deadlines ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario",
    [trickle(0.3), trickle(0.3, headers_too=True), endless()],
    ids=["body-trickled", "headers-trickled", "endless-chunked-body"],
)
def test_a_slow_or_endless_answer_ends_at_the_deadline(project, scenario):
    with provider(project) as bad:
        bad.rules = [("GET", "/numbers", scenario)]
        code, _, err, took = cli("plan")
    line = one_error(code, err)
    assert "no complete response within 1 s (timeout_seconds)" in line
    assert "retry budget of 3 s spent" in line or "retries exhausted" in line
    assert took < 20  # 3 s budget; before: hung for as long as the server went on


def test_sigint_ends_a_plan_hung_mid_request_at_once(project):
    with provider(project, timeout=60, budget=300) as bad:
        bad.rules = [("GET", "/numbers", silent())]
        proc, _, err, took = interrupted(bad, "GET", signal.SIGINT, "plan")
    assert proc.returncode == 130 and "Interrupted." in err and "Traceback" not in err
    assert took < 10  # before: waited for the hung request (timeout_seconds, then retries)


def test_sigterm_mid_write_cuts_it_after_the_grace_and_the_re_read_settles_it(project):
    with provider(project, timeout=60, budget=300) as bad:
        bad.rules = [("POST", "/", silent())]  # each write lands upstream, no answer comes
        args = ("apply", "--auto-approve", "--report", "r.json")
        proc, out, err, took = interrupted(bad, "POST", signal.SIGTERM, *args)
        posts = sum(m == "POST" for m, _ in bad.seen)
    assert proc.returncode == 1 and "Traceback" not in out + err, out + err
    assert took < 15  # 3 s grace, then the re-read; before: ignored for minutes
    assert "Interrupted: nothing else was started" in out
    report = json.loads((project / "r.json").read_text())
    assert report["interrupted"] is True and report["converged"] is False
    settled = [a for a in report["actions"] if "outcome unknown" in (a["error"] or "")]
    assert settled and len(settled) == posts  # every write cut mid-request was settled
    assert all(a["outcome"] == "ok" and "re-read shows it applied" in a["error"] for a in settled)
    assert {w["resource"] for w in writes(project)} == {a["address"] for a in settled}


# --- 3. no trusted sizes -----------------------------------------------------------------


def test_a_body_over_the_size_cap_is_refused_as_it_streams(project):
    with provider(project) as bad:
        bad.rules = [("GET", "/numbers", oversized(17 * 1024 * 1024))]
        code, _, err, _ = cli("plan")
    assert "malformed response: larger than 16 MiB, the most this client reads" in one_error(
        code, err
    )


def test_an_unrequested_compressed_body_is_refused_not_inflated(project):
    with provider(project) as bad:
        bad.rules = [("GET", "/numbers", gzipped(64 * 1024 * 1024))]
        code, _, err, _ = cli("plan")
    assert "compressed with 'gzip', which this client did not ask for" in one_error(code, err)


@pytest.mark.parametrize(
    ("route", "pages"), [("/numbers", 10_000_000), ("/accounts", 10**12)], ids=["numbers", "list"]
)
def test_an_absurd_page_count_is_one_line_and_queues_nothing(project, route, pages):
    def claim(data: Any) -> Any:
        return {**data, "total_pages": pages, "next_page": "http://x/?page=2"}

    with provider(project) as bad:
        bad.rules = [("GET", route, replaced(claim))]
        code, _, err, took = cli("plan")
    line = one_error(code, err)
    assert f"claims {pages} pages, more than the 1000 pages (150,000 entries)" in line
    assert took < 20  # before: ten million futures, 5.3 GB, a traceback


def test_a_page_count_that_lies_is_walked_only_while_pages_come(project):
    def claim(data: Any) -> Any:
        return {**data, "total_pages": 900}

    with provider(project) as bad:
        code, honest, _, _ = cli("plan", "--format", "json")
        asked = len(bad.seen)
        bad.seen.clear()
        bad.rules = [("GET", "/numbers", replaced(claim))]
        code2, lied, err, _ = cli("plan", "--format", "json")
    assert (code, code2) == (0, 0), err
    assert json.loads(lied)["changes"] == json.loads(honest)["changes"]
    assert len(bad.seen) == asked  # every first page is short: no page 2 is asked for


# --- 4. malformed is one line ------------------------------------------------------------


def _calls(value: bytes) -> Any:
    return rewritten(lambda body: re.sub(rb'"calls":\s*\d+', b'"calls": ' + value, body))


@pytest.mark.parametrize(
    ("scenario", "said"),
    [
        (replaced(b"[" * 200_000), "nested too deeply"),
        (_calls(b"1e400"), "the number 1e400 is out of range"),
        (_calls(b"NaN"), "NaN is not a number"),
        (_calls(b"-Infinity"), "-Infinity is not a number"),
        (replaced(b"\xff\xfe not json"), "not JSON (application/json)"),
        (replaced(lambda d: {**d, "numbers": {"not": "a list"}}), "no 'numbers' list"),
    ],
    ids=["deep", "overflow", "nan", "infinity", "bytes", "wrong-type"],
)
def test_a_malformed_answer_is_one_line(project, scenario, said):
    with provider(project) as bad:
        bad.rules = [("GET", "/numbers", scenario)]
        code, _, err, _ = cli("plan")
    line = one_error(code, err)
    assert re.search(r"ctm: GET /accounts/\d+/numbers: malformed response: ", line), line
    assert said in line


def test_a_malformed_re_read_after_the_writes_is_a_verification_failure(project):
    """Writes landed: the summary and the report still come, never a traceback."""
    with provider(project) as bad:
        poisoned = replaced(b"[" * 200_000)

        def after_writes(out: Any, status: int, body: bytes, stop: Any) -> None:
            wrote = any(m == "POST" for m, _ in bad.seen)
            (poisoned if wrote else replaced(lambda d: d))(out, status, body, stop)

        bad.rules = [("GET", "/numbers", after_writes)]
        code, out, err, _ = cli("apply", "--auto-approve", "--report", "r.json")
    assert code == 1 and "Traceback" not in out + err, out + err
    assert "Apply incomplete: 5 ok, 0 failed, 0 not started." in out
    assert "Verification failed: verification read failed: ctm: GET /accounts/" in out
    assert "malformed response: nested too deeply" in out
    report = json.loads((project / "r.json").read_text())
    assert "nested too deeply" in report["verification"]["error"]
    assert report["counts"]["ok"] == 5 == len(writes(project))
