"""GitHub integration files: workflows and the composite action pass actionlint, follow
least privilege, never interpolate untrusted text into scripts; the pre-commit hook works."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / ".github" / "actions" / "reconciler" / "action.yml"


def actionlint() -> str:
    found = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(found).exists():
        pytest.fail("actionlint is not installed: pip install -e '.[test]'")
    return found


def lint(paths: list[Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint(), "-color=false", *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_all_workflows_pass_actionlint():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "plan.yml", "apply.yml", "drift.yml"}
    result = lint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_bad_use_of_the_action(tmp_path):
    """The check can fail: a wrong input name on the local action is reported."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / ".github", repo / ".github")
    subprocess.run(
        ["git", "init", "-q", str(repo)], check=True
    )  # actionlint finds the root by .git
    plan = repo / ".github" / "workflows" / "plan.yml"
    plan.write_text(plan.read_text().replace("command: validate", "comand: validate"))
    result = lint([plan], cwd=repo)
    assert result.returncode != 0 and "comand" in result.stdout


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_least_privilege(path):
    wf = load(path)
    assert wf["permissions"] == {"contents": "read"}, "top-level permissions must be read-only"
    for job in wf["jobs"].values():
        perms = job.get("permissions", {})
        assert set(perms.values()) <= {"read", "write"}
        assert "write-all" not in str(perms) and "contents: write" not in str(perms)


EXPECTED_WRITES = {
    "plan.yml": {"pull-requests"},
    "drift.yml": {"issues"},
    "apply.yml": set(),
    "schedule.yml": set(),
    "ci.yml": set(),
    "ledger.yml": set(),
}


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_only_the_writes_each_job_needs(path):
    writes = {
        k
        for job in load(path)["jobs"].values()
        for k, v in job.get("permissions", {}).items()
        if v == "write"
    }
    assert writes == EXPECTED_WRITES[path.name]


UNTRUSTED = re.compile(r"\$\{\{\s*(inputs\.|github\.event\.|github\.head_ref|steps\.[^}]*outputs)")


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=[p.name for p in [*WORKFLOWS, ACTION]])
def test_no_expression_interpolated_into_scripts(path):
    """Untrusted or step-produced text reaches scripts only through env variables."""
    data = load(path)
    steps = [s for job in data.get("jobs", {}).values() for s in job.get("steps", [])]
    steps += data.get("runs", {}).get("steps", [])
    for step in steps:
        for field in ("run", "script"):
            text = step.get(field) or (step.get("with") or {}).get(field) or ""
            assert not UNTRUSTED.search(text), f"{path.name}: {step.get('name')}: {field}"


def test_secrets_only_through_env_names_from_settings():
    for path in WORKFLOWS:
        text = path.read_text()
        for line in text.splitlines():
            if "secrets." in line:
                assert re.match(
                    r"\s+CTM_(ACCESS|SECRET)_KEY: \$\{\{ secrets\.CTM_\w+ \}\}$", line
                ), line


def test_apply_is_serialised_and_never_cancelled():
    wf = load(ROOT / ".github" / "workflows" / "apply.yml")
    assert wf["concurrency"] == {"group": "reconciler-apply", "cancel-in-progress": False}
    assert wf["jobs"]["apply"]["environment"] == "production"
    assert "workflow_dispatch" in wf[True]  # `on:` loads as True in YAML 1.1


def test_the_schedule_applies_only_what_is_due_queued_with_apply():
    wf = load(ROOT / ".github" / "workflows" / "schedule.yml")
    apply_wf = load(ROOT / ".github" / "workflows" / "apply.yml")
    assert wf["concurrency"] == apply_wf["concurrency"]  # one queue: never two applies at once
    assert wf[True]["schedule"] == [{"cron": "*/15 * * * *"}] and "workflow_dispatch" in wf[True]
    (job,) = wf["jobs"].values()
    assert job["environment"] == "production"
    step = next(s for s in job["steps"] if s.get("uses") == "./.github/actions/reconciler")
    assert step["with"]["command"] == "apply"
    assert step["with"]["args"].split() == ["--due", "--auto-approve"]
    summary = next(s for s in job["steps"] if s.get("name") == "Schedule summary")
    assert summary["if"] == "always()" and "GITHUB_STEP_SUMMARY" in summary["run"]


def test_composite_action_interface():
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"command", "config-dir", "format", "args"}
    assert set(action["outputs"]) >= {"exit-code", "checksum", "report"}
    for step in action["runs"]["steps"]:
        assert step["shell"] == "bash"


def test_workflows_use_the_composite_action_themselves():
    for name in ("plan.yml", "apply.yml", "drift.yml", "schedule.yml"):
        assert (
            "uses: ./.github/actions/reconciler" in (ROOT / ".github/workflows" / name).read_text()
        )


def test_pre_commit_hook_definition_runs_validate(tmp_path):
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "reconciler-validate" and hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    assert files.search("config/accounts/acme.yaml") and files.search("config/reconciler.yaml")
    assert not files.search("README.md")
    entry = hook["entry"].split()
    script = str(Path(sys.executable).with_name(entry[0]))
    ok = subprocess.run(
        [script, *entry[1:], "--config", str(ROOT / "config")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "cfg" / "accounts"
    bad.mkdir(parents=True)
    (bad / "a.yaml").write_text("account:\n  id: 1\n  status: off\n")
    failed = subprocess.run(
        [script, *entry[1:], "--config", str(tmp_path / "cfg")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1 and "a.yaml:3:" in failed.stderr


def test_the_pull_request_workflow_reads_live_state_once():
    """One plan step reads live; the Markdown comment is `show` of its saved plan."""
    steps = load(ROOT / ".github" / "workflows" / "plan.yml")["jobs"]["plan"]["steps"]
    ours = [s for s in steps if s.get("uses") == "./.github/actions/reconciler"]
    reads = [s for s in ours if s["with"]["command"] in ("plan", "drift", "apply")]
    assert [s["id"] for s in reads] == ["plan"]
    shown = [s for s in ours if s["with"]["command"] == "show"]
    assert [s["with"]["plan-file"] for s in shown] == ["${{ steps.plan.outputs.report }}"]


def test_the_ledger_workflow_is_monthly_with_the_whole_history():
    wf = load(ROOT / ".github" / "workflows" / "ledger.yml")
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads `on:` as True
    assert "workflow_dispatch" in triggers
    (cron,) = [t["cron"] for t in triggers["schedule"]]
    _, _, day, month, weekday = cron.split()
    assert day == "1" and month == "*" and weekday == "*"
    steps = wf["jobs"]["ledger"]["steps"]
    (checkout,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
    assert checkout["with"]["fetch-depth"] == 0
    (ours,) = [s for s in steps if s.get("uses") == "./.github/actions/reconciler"]
    assert ours["with"] == {"command": "ledger", "format": "markdown"}
    (upload,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload["with"]["path"] == "${{ steps.ledger.outputs.report }}"
    summary = [s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert summary and summary[0]["env"]["LEDGER_MD"] == "${{ steps.ledger.outputs.output }}"


def test_the_composite_action_runs_the_ledger(project, tmp_path):
    """The action's own script, run by bash as a runner would: Markdown on stdout (the
    `output` file), the CSV at the `report` output."""
    (step,) = [s for s in load(ACTION)["runs"]["steps"] if s.get("id") == "run"]
    temp, outputs = tmp_path / "runner", tmp_path / "github_output"
    temp.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "RUNNER_TEMP": str(temp),
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_RUN_ATTEMPT": "1",
        "RECONCILER_BIN": str(Path(sys.executable).with_name("reconciler")),
        "RECONCILER_LOCK_DIR": str(tmp_path / "locks"),
        "COMMAND": "ledger",
        "CONFIG_DIR": "config",
        "FORMAT": "markdown",
        "EXTRA_ARGS": "--at 2026-12-01T09:00:00Z",
        "OK_CODES": "0",
        "PLAN_FILE": "",
    }
    done = subprocess.run(
        ["bash", "-c", step["run"]],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert got["exit-code"] == "0" and got["report"].endswith("reconciler-ledger.csv")
    assert Path(got["report"]).read_text().startswith("address,kind,account_id,")
    assert Path(got["output"]).read_text().startswith("### Ledger: 2 resources cannot ring")
