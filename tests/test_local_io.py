"""Local I/O errors are one line naming the path, exit 1, never a traceback, and no
temporary file is left (issue 13, case 8, in part). CI runs as root, so an unwritable
place is a path under a regular file, not a chmod."""

from __future__ import annotations

import json

from test_cli_e2e import audit, run


def test_plan_out_under_a_file_is_one_line(project):
    (project / "afile").write_text("x")
    code, out = run("plan", "--out", "afile/plan.json")
    assert code == 1
    assert out.strip().splitlines()[-1].startswith("Error: afile/plan.json: cannot write it (")


def test_a_report_that_cannot_be_written_comes_after_the_summary(project):
    (project / "afile").write_text("x")
    code, out = run("apply", "--auto-approve", "--report", "afile/report.json")
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[-1].startswith("Error: afile/report.json: cannot write it (")
    assert any(line.startswith("Apply complete: 5 ok") for line in lines)  # summary first
    assert len(audit(project)) == 5  # the writes landed and are reported as such


def test_a_bad_step_summary_path_is_one_line(project, monkeypatch):
    (project / "afile").write_text("x")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(project / "afile" / "summary.md"))
    code, out = run("plan", "--format", "github")
    assert code == 1
    assert "cannot append the job summary" in out.strip().splitlines()[-1]


def test_no_temporary_file_is_left_behind(project):
    code, _ = run("plan", "--out", "p.json")
    assert code == 0 and json.loads((project / "p.json").read_text())["format_version"] == 1
    assert not list(project.glob(".reconciler-*.tmp"))


def test_a_hostile_saved_plan_is_one_line_and_applies_nothing(project):
    for name, content in [
        ("deep.json", "[" * 200_000),
        ("types.json", '{"format_version": 1, "checksum": "x", "provider": [1]}'),
    ]:
        (project / name).write_text(content)
        code, out = run("apply", "--plan", name, "--auto-approve")
        assert code == 1 and "Traceback" not in out
        assert out.strip().splitlines()[-1].startswith(f"Error: {name}: ")
    # refused before the provider is opened: no database was even seeded
    assert not (project / ".reconciler" / "sandbox.db").exists()


def test_import_into_a_directory_under_a_file_is_one_line(project):
    (project / "afile").write_text("x")
    code, out = run("import", "--account", "1005", "--out", "afile/accounts")
    assert code == 1 and "Traceback" not in out
    assert out.strip().splitlines()[-1].startswith("Error: ") and "afile/accounts" in out
    assert "cannot write it (Not a directory)" in out
