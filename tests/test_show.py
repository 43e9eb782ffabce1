"""`reconciler show` renders a saved plan exactly as `plan` printed it, reading neither live
state nor the config (issue 15, item 1); `-v` works before the subcommand (item 4)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_e2e import audit, run

from reconciler.providers.sandbox.server import start_server

AT = "2026-12-01T09:00:00Z"


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "github"])
def test_show_prints_what_plan_printed(project, fmt):
    code, printed = run("plan", "--at", AT, "--format", fmt, "--no-color", "--out", "plan.json")
    assert code == 0
    shutil.rmtree(project / "config")  # no config, and no way to reach live state
    shutil.rmtree(project / ".reconciler")
    code, shown = run("show", "plan.json", "--format", fmt, "--no-color")
    assert code == 0
    assert shown == printed.replace("Saved the plan to plan.json.\n", "")
    assert not (project / ".reconciler").exists()  # nothing was opened or seeded


def test_show_of_a_plan_with_errors_exits_1(project):
    (project / "config" / "accounts" / "acme-dental.yaml").write_text(
        (project / "config" / "accounts" / "acme-dental.yaml")
        .read_text()
        .replace("id: 1001", "id: 9999")
    )
    code, _ = run("plan", "--out", "plan.json")
    assert code == 1
    code, out = run("show", "plan.json")
    assert code == 1 and "Plan has 1 error(s) and cannot be applied" in out


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("[" * 100_000, "nested too deeply"),
        ("not json", "not JSON"),
        ('{"format_version": 2}', "format_version 1"),
        ('{"format_version": 1, "changes": "x"}', "not a reconciler plan ("),
    ],
    ids=["deep", "text", "version", "types"],
)
def test_a_file_that_is_not_a_plan_is_one_line(project, content, said):
    (project / "p.json").write_text(content)
    code, out = run("show", "p.json")
    assert code == 1 and "Traceback" not in out
    assert out.strip().splitlines() == [out.strip().splitlines()[-1]]
    assert out.startswith("Error: p.json: ") and said in out


def test_show_of_a_missing_file_is_one_line(project):
    code, out = run("show", "nope.json")
    assert (
        code == 1 and out.strip() == "Error: nope.json: cannot read it (No such file or directory)"
    )


def test_verbose_before_the_subcommand_is_accepted_and_logs(project):
    run("plan")  # seed the database
    with start_server(
        project / ".reconciler" / "sandbox.db", access_key="ak", secret_key="sk-show-0123"
    ) as server:
        (project / "config" / "reconciler.yaml").write_text(
            f"provider:\n  type: ctm\n  base_url: {server.url}\n  requests_per_second: 500\n"
        )
        env = {**os.environ, "CTM_ACCESS_KEY": "ak", "CTM_SECRET_KEY": "sk-show-0123"}
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "-vv", "plan", "--account", "1001"],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "request: method=GET path=/accounts/1001" in done.stderr
    assert audit(project) == []


def test_validate_refuses_a_seed_that_does_not_exist(project):
    settings = project / "config" / "reconciler.yaml"
    settings.write_text(settings.read_text().replace("sandbox-fleet.yaml", "no-such-fleet.yaml"))
    code, out = run("validate")
    assert code == 1 and "provider.seed names" in out and "no-such-fleet.yaml" in out
    assert code == 1 and not (project / ".reconciler").exists()


def test_shell_completion_offers_the_config_account_ids(project):
    env = {
        **os.environ,
        "_RECONCILER_COMPLETE": "bash_complete",
        "COMP_WORDS": "reconciler plan --account 100",
        "COMP_CWORD": "3",
    }
    script = str(Path(sys.executable).with_name("reconciler"))  # the installed entry point
    done = subprocess.run([script], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["plain,1001", "plain,1002", "plain,1003", "plain,1004"]


def test_apply_of_a_saved_plan_keeps_its_scope(project):
    code, _ = run("plan", "--account", "1001", "--out", "p.json")
    assert code == 0
    # account 1003 has a change too: the saved plan of 1001 alone is not stale for that
    code, out = run("apply", "--plan", "p.json", "--auto-approve")
    assert code == 0, out
    assert "Re-planning in the saved plan's scope: accounts 1001." in out
    assert {w["resource"].split(".")[0] for w in audit(project)} == {"number"}
    assert all(w["resource"].startswith("number.+1410") for w in audit(project))


def test_apply_of_a_saved_plan_refuses_another_scope(project):
    run("plan", "--account", "1001", "--out", "p.json")
    code, out = run("apply", "--plan", "p.json", "--account", "1003", "--auto-approve")
    assert code == 1
    assert out.strip().splitlines()[-1] == (
        "Error: the saved plan p.json covers accounts 1001; run plan again with the scope you "
        "want to apply (nothing was applied)"
    )
    assert audit(project) == []
    code, out = run("apply", "--plan", "p.json", "--account", "1001", "--auto-approve")
    assert code == 0, out  # the same scope, given again, is the saved one


def test_a_sharded_saved_plan_keeps_its_shard(project):
    code, _ = run("plan", "--shard", "1/2", "--format", "json", "--out", "p.json")
    assert code == 0
    saved = json.loads((project / "p.json").read_text())
    assert saved["shard"] == "1/2"
    code, out = run("apply", "--plan", "p.json", "--auto-approve")
    assert code == 0, out
    assert "Re-planning in the saved plan's scope: all accounts, shard 1/2." in out
    assert {w["resource"] for w in audit(project)} == {c["address"] for c in saved["changes"]}
