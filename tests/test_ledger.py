"""`reconciler ledger` through the real CLI on the bundled sandbox, with provenance from a
real temporary git repository (commits by known authors, a `(#N)` subject and a merged
pull request), without git, with a shallow clone, and with git refusing."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from reconciler.cli import main

ROOT = Path(__file__).resolve().parent.parent
AT = "2026-12-01T09:00:00Z"
JANE = ("Jane Ops", "jane@example.com", "2026-06-01T10:00:00Z")
SAM = ("Sam Lead", "sam@example.com", "2026-11-20T15:30:00Z")
KIM = ("Kim Dev", "kim@example.com", "2026-11-25T08:00:00Z")


def git(cwd: Path, *args: str, who: tuple[str, str, str] = JANE) -> str:
    name, email, date = who
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_COMMITTER_DATE": date,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def repo(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example project as a git repository with this history:

    1. Jane, 2026-06-01: the example config, but account 1003 active and +14105550105 allowed;
    2. Sam, 2026-11-20, squash-merged "(#131)": `status: stopped` for account 1003;
    3. Kim, 2026-11-25, on a branch: `calls: stopped` for +14105550105, merged by
       "Merge pull request #42 from ops/yellow-pages" (a merge-commit workflow).

    Then `apply` for accounts 1001 and 1003 with the sandbox clock at 2026-11-30 12:00.
    """
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    cedar = project / "config" / "accounts" / "cedar-law.yaml"
    acme = project / "config" / "accounts" / "acme-dental.yaml"
    edit(cedar, "status: stopped", "status: active")
    edit(acme, '  - number: "+14105550105"\n    calls: stopped\n', '  - number: "+14105550105"\n')
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "config")
    git(project, "commit", "-q", "-m", "Manage call states as code")
    edit(cedar, "status: active", "status: stopped")
    git(project, "commit", "-q", "-am", "Stop Cedar Law: offboarding (#131)", who=SAM)
    git(project, "checkout", "-q", "-b", "ops/yellow-pages", who=KIM)
    edit(acme, '  - number: "+14105550105"\n', '  - number: "+14105550105"\n    calls: stopped\n')
    git(project, "commit", "-q", "-am", "Stop the Yellow Pages number", who=KIM)
    git(project, "checkout", "-q", "main", who=KIM)
    merge = "Merge pull request #42 from ops/yellow-pages"
    git(project, "merge", "-q", "--no-ff", "-m", merge, "ops/yellow-pages", who=KIM)
    assert (ROOT / "config" / "accounts" / "acme-dental.yaml").read_text() == acme.read_text()
    clock = {"RECONCILER_SANDBOX_CLOCK": "2026-11-30T12:00:00Z"}
    code, out, _ = run(
        "apply", "--auto-approve", "--account", "1001", "--account", "1003", env=clock
    )
    assert code == 0, out
    return project


def ledger_json(*args: str, env: dict[str, str] | None = None) -> dict:
    code, out, err = run("ledger", "--at", AT, "--format", "json", *args, env=env)
    assert code == 0, out + err
    data = json.loads(out)
    schema = json.loads((ROOT / "schemas" / "ledger.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    return data


def by_address(items: list[dict]) -> dict[str, dict]:
    return {i["address"]: i for i in items}


def test_the_ledger_lists_what_is_stopped_with_who_set_it(repo: Path) -> None:
    data = ledger_json()
    items = by_address(data["items"])
    assert list(items) == [  # fee highest first, then account and address
        "account.1003",
        "number.+18885550123",
        "number.+14105550102",
        "number.+14105550105",
        "number.+12025550121",
        "number.+12025550122",
    ]
    assert data["total_monthly"] == "116.00" and data["currency"] == "USD"
    assert sum(Decimal(i["monthly_fee"]) for i in data["items"]) == Decimal("116.00")
    account = items["account.1003"]
    assert account["provenance"]["author"] == "Sam Lead"
    assert account["provenance"]["pr"] == 131
    assert account["provenance"]["date"] == "2026-11-20T15:30:00Z"
    assert account["provenance"]["subject"] == "Stop Cedar Law: offboarding (#131)"
    assert account["source"] == "config/accounts/cedar-law.yaml:5"
    assert (account["state"], account["since"], account["days"]) == (
        "account stopped",
        "2026-11-30T12:00:00Z",
        0,
    )
    # a number under the stopped account: the account's status line set it
    under = items["number.+18885550123"]
    assert under["provenance"]["pr"] == 131 and under["state"] == "account stopped"
    # merged through a merge commit: the line's commit is Kim's, the PR is the merge's
    yp = items["number.+14105550105"]
    assert yp["provenance"]["author"] == "Kim Dev" and yp["provenance"]["pr"] == 42
    assert yp["provenance"]["subject"] == "Stop the Yellow Pages number"
    assert yp["stale"] is True and yp["days"] == 182 and yp["since"].startswith("2026-06-01")
    # Jane's initial commit has no PR at all
    campaign = items["number.+14105550102"]
    assert campaign["provenance"]["author"] == "Jane Ops" and campaign["provenance"]["pr"] is None
    assert data["provenance_note"] is None
    paused = by_address(data["paused"])
    assert set(paused) == {"account.1004", "number.+14105550103", "number.+13015550132"}
    assert data["format_version"] == 1 and data["evaluated_at"] == AT


def test_text_output_has_the_total_and_provenance_in_short(repo: Path) -> None:
    code, out, _ = run("ledger", "--at", AT)
    assert code == 0
    assert out.startswith("Ledger: 6 resources cannot ring and still bill 116.00 USD/month.")
    assert "set by Sam Lead on 2026-11-20 in #131" in out
    assert "set by Kim Dev on 2026-11-25 in #42" in out
    assert "Total: 116.00 USD/month for 6 resources." in out
    assert "reconciler never does either" in out


def test_the_csv_reads_back_for_a_spreadsheet(repo: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "ledger.csv"
    code, out, err = run("ledger", "--at", AT, "--format", "markdown", "--csv-out", str(out_file))
    assert code == 0 and out.startswith("### Ledger: 6 resources") and "ledger.csv" in err
    rows = list(csv.DictReader(io.StringIO(out_file.read_text(), newline="")))
    code, stdout_csv, _ = run("ledger", "--at", AT, "--format", "csv")
    assert stdout_csv == out_file.read_text()
    header = stdout_csv.split("\r\n", 1)[0].split(",")
    assert header[:8] == [
        "address", "kind", "account_id", "account_name", "state", "since", "days", "monthly_fee"
    ]  # fmt: skip
    assert len(rows) == 6
    assert sum(Decimal(r["monthly_fee"]) for r in rows) == Decimal("116.00")
    assert all(r["monthly_fee"] == f"{Decimal(r['monthly_fee']):.2f}" for r in rows)
    first = rows[0]
    assert first["address"] == "account.1003" and first["pr"] == "131"
    assert first["since"] == "2026-11-30T12:00:00Z" and first["date"] == "2026-11-20T15:30:00Z"
    assert first["currency"] == "USD" and first["stale"] == "false"


def test_git_is_run_once_per_file_that_holds_items(repo: Path, tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    log = tmp_path / "git.log"
    real = shutil.which("git")
    (shim / "git").write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    (shim / "git").chmod(0o755)
    env = {"PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    ledger_json(env=env)
    blames = [line for line in log.read_text().splitlines() if line.startswith("blame")]
    files = sorted(line.rsplit("/", 1)[-1] for line in blames)
    # cedar-law and acme-dental hold stopped items; delta-auto only paused ones
    assert files == ["acme-dental.yaml", "cedar-law.yaml", "delta-auto.yaml"], blames
    assert "bayside-plumbing.yaml" not in log.read_text()


def test_scope_by_account(repo: Path) -> None:
    data = ledger_json("--account", "1003")
    assert {i["account_id"] for i in data["items"]} == {"1003"}
    assert data["total_monthly"] == "110.00" and data["paused"] == []
    code, _, err = run("ledger", "--account", "4242")
    assert code == 1 and "--account 4242: not managed" in err


def test_without_git_provenance_is_null_and_says_how(project: Path) -> None:
    data = ledger_json()
    assert data["items"] and all(i["provenance"] is None for i in data["items"])
    assert "not in a git work tree" in data["provenance_note"]
    code, out, _ = run("ledger", "--at", AT)
    assert "Provenance: config is not in a git work tree" in out
    code, out, _ = run("ledger", "--at", AT, env={"PATH": str(project / "no-bin")})
    assert code == 0 and "git is not installed" in out


def test_a_shallow_clone_has_no_provenance_and_says_fetch_depth_0(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    shutil.copytree(repo / ".reconciler", clone / ".reconciler")
    monkeypatch.chdir(clone)
    data = ledger_json()
    assert data["items"] and all(i["provenance"] is None for i in data["items"])
    assert "shallow" in data["provenance_note"] and "fetch-depth: 0" in data["provenance_note"]


def test_drift_and_uncommitted_lines_are_not_attributed(repo: Path) -> None:
    db = str(repo / ".reconciler" / "sandbox.db")
    # stopped in the provider's UI, behind the config's back
    code, _, _ = run("sandbox", "set", "--db", db, "number.+14435550113", "calls=stopped")
    assert code == 0
    # a stop written but not committed yet
    acme = repo / "config" / "accounts" / "acme-dental.yaml"
    edit(acme, '  - number: "+14105550104"\n', '  - number: "+14105550104"\n    calls: stopped\n')
    run("apply", "--auto-approve", "--account", "1001")
    items = by_address(ledger_json()["items"])
    drifted = items["number.+14435550113"]
    assert drifted["provenance"] is None
    assert drifted["why_no_provenance"] == "live differs from the config (changed outside it)"
    fresh = items["number.+14105550104"]
    assert fresh["provenance"] is None and fresh["why_no_provenance"] is None
    assert "not committed yet" in ledger_json()["provenance_note"]


def test_hostile_names_are_neutral_in_text_markdown_and_csv(repo: Path) -> None:
    import sqlite3

    con = sqlite3.connect(repo / ".reconciler" / "sandbox.db")
    con.execute("UPDATE accounts SET name = ? WHERE id = '1003'", ("=HYPERLINK(x)|\x1b]0;t\x07",))
    con.commit()
    con.close()
    _, text, _ = run("ledger", "--at", AT)
    assert "\x1b" not in text and "\\x1b" in text
    _, md, _ = run("ledger", "--at", AT, "--format", "markdown")
    assert "\x1b" not in md and "=HYPERLINK(x)&#124;" in md
    _, table, _ = run("ledger", "--at", AT, "--format", "csv")
    (row,) = [r for r in csv.DictReader(io.StringIO(table)) if r["address"] == "account.1003"]
    assert row["account_name"].startswith("'=HYPERLINK")


def test_a_bad_sandbox_clock_is_one_line(project: Path) -> None:
    code, _, err = run("ledger", env={"RECONCILER_SANDBOX_CLOCK": "tomorrow"})
    assert code == 1 and "RECONCILER_SANDBOX_CLOCK='tomorrow': expected an ISO-8601" in err


def test_the_plan_says_who_set_each_standing_stop(repo: Path, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    code, out, _ = run("plan", "--at", AT, "--out", str(saved))
    assert code == 0
    (stale,) = [line for line in out.splitlines() if "stale_stop:" in line]
    assert stale.endswith(
        "set by Kim Dev on 2026-11-25 in #42  (config/accounts/acme-dental.yaml:19)"
    )
    assert "account stopped  (since 2026-11-30; set by Sam Lead on 2026-11-20 in #131)" in out
    data = json.loads(saved.read_text())
    items = by_address(data["charges"]["items"])
    assert items["number.+14105550105"]["set_by"] == "set by Kim Dev on 2026-11-25 in #42"
    assert items["number.+14435550112"]["new"] and items["number.+14435550112"]["set_by"] is None
    code, md, _ = run("plan", "--at", AT, "--format", "markdown", "--out", str(saved))
    assert code == 0 and "set by Sam Lead on 2026-11-20 in #131" in md
    _, shown, _ = run("show", str(saved), "--format", "markdown")
    assert shown == md  # the saved plan carries it: `show` renders it the same


def test_the_plan_without_git_names_nobody(project: Path) -> None:
    code, out, _ = run("plan", "--at", AT)
    assert code == 0 and "set by" not in out and "stale_stop:" in out


def test_in_github_actions_the_markdown_links_the_pr_and_the_line(repo: Path) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    env = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/call-states",
        "GITHUB_SHA": sha,
    }
    _, md, _ = run("ledger", "--at", AT, "--format", "markdown", env=env)
    assert "in [#131](https://github.com/acme/call-states/pull/131)" in md
    line = f"(https://github.com/acme/call-states/blob/{sha}/config/accounts/cedar-law.yaml#L5)"
    assert f"[config/accounts/cedar-law.yaml:5]{line}" in md
    _, plain, _ = run("ledger", "--at", AT, "--format", "markdown")
    assert "](" not in plain  # no GitHub variables: no links
