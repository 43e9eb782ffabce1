"""The plan as a PR comment reads at a glance (issue 15, item 7): each Source links to its
line at the commit under review, warnings are grouped by code with counts (consequential
first), `charges_continue` is folded into Charges, and `--format github` puts the charge
on the changed line's one annotation. All through the real CLI on the example project."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cmarkgfm
import pytest
from click.testing import CliRunner
from cmarkgfm.cmark import Options
from factories import dacc, dnum, lacc, lnum, plan_of

from reconciler.cli import main
from reconciler.render.markdown import GITHUB_COMMENT_LIMIT, esc, render_markdown, source_linker

AT = "2026-12-01T09:00:00Z"
SHA = "0123456789abcdef0123456789abcdef01234567"
BLOB = f"https://github.com/acme/call-states/blob/{SHA}/"
STOP_102 = "config/accounts/acme-dental.yaml:12"


def github_env(project: Path, **over: str) -> dict[str, str]:
    env = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/call-states",
        "GITHUB_SHA": SHA,
        "GITHUB_WORKSPACE": str(project),
    }
    return {**env, **over}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


def plan_md(env: dict[str, str] | None = None, *args: str) -> str:
    code, out = run("plan", "--at", AT, "--format", "markdown", *args, env=env)
    assert code in (0, 1), out
    return out


def section(md: str, title: str) -> str:
    """The lines of `#### title` up to the next heading or <details>."""
    match = re.search(rf"^#### {title}\n(.*?)(?=^#### |^<details>|\Z)", md, re.S | re.M)
    assert match, f"no {title} section in:\n{md}"
    return match.group(1)


def html(md: str) -> str:
    """As GitHub renders a comment (cmark-gfm with its extensions), raw HTML kept."""
    return cmarkgfm.github_flavored_markdown_to_html(md, options=Options.CMARK_OPT_UNSAFE)


# --- source links ----------------------------------------------------------------------------


def test_sources_link_to_their_line_at_the_commit_under_review(project):
    md = plan_md(github_env(project))
    link = f"[{STOP_102}]({BLOB}config/accounts/acme-dental.yaml#L12)"
    row = next(line for line in section(md, "Changes").splitlines() if "+14105550102" in line)
    assert row.endswith(f"| {link} |")
    assert link in section(md, "Charges")  # the folded charges_continue keeps its line
    assert f"({BLOB}config/accounts/acme-dental.yaml#L19)" in section(md, "Warnings")
    rendered = html(md)
    assert f'<a href="{BLOB}config/accounts/acme-dental.yaml#L12">{STOP_102}</a>' in rendered
    changes = rendered.split("<table>")[2].split("</table>")[0]
    for tr in re.findall(r"<tr>(.*?)</tr>", changes, re.S)[1:]:
        assert tr.count("<td") == 7  # the link did not break the table


def test_the_errors_table_links_its_sources(project):
    acme = project / "config" / "accounts" / "acme-dental.yaml"
    acme.write_text(acme.read_text().replace('"+14105550104"', '"+14105550177"'))
    md = plan_md(github_env(project))
    errors = section(md, "Errors")
    assert "unknown_number" in errors
    assert f"]({BLOB}config/accounts/acme-dental.yaml#L" in errors


def test_without_github_variables_sources_are_plain_text(project):
    md = plan_md()
    assert "](http" not in md and "<a " not in html(md)
    assert f"| {STOP_102} |" in section(md, "Changes")


@pytest.mark.parametrize("missing", ["GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_SHA"])
def test_all_three_variables_are_needed_for_a_link(project, missing):
    env = github_env(project)
    env[missing] = ""
    assert "](http" not in plan_md(env)


@pytest.mark.parametrize(
    "name, value",
    [
        ("GITHUB_SERVER_URL", "javascript:alert(1)"),
        ("GITHUB_SERVER_URL", "https://github.com/x)<img src=x onerror=alert(1)>"),
        ("GITHUB_SERVER_URL", 'https://evil.example"><script>'),
        ("GITHUB_SERVER_URL", "https://user:pw@github.com"),
        ("GITHUB_SERVER_URL", "ftp://github.com"),
        ("GITHUB_REPOSITORY", "acme/call-states/../../evil"),
        ("GITHUB_REPOSITORY", "acme/x)[click](https://evil.example"),
        ("GITHUB_REPOSITORY", "../.."),
        ("GITHUB_REPOSITORY", "acme"),
        ("GITHUB_SHA", "main"),
        ("GITHUB_SHA", SHA + ")"),
        ("GITHUB_SHA", SHA[:-1]),
    ],
)
def test_hostile_github_variables_give_plain_text(project, name, value):
    md = plan_md(github_env(project, **{name: value}))
    assert "](http" not in md and "evil" not in md and "<img" not in md and "<script" not in md
    assert "<a " not in html(md)
    assert f"| {STOP_102} |" in section(md, "Changes")


def test_absolute_sources_link_relative_to_the_workspace(project):
    md = plan_md(github_env(project), "--config", str(project / "config"))
    link = f"[{STOP_102}]({BLOB}config/accounts/acme-dental.yaml#L12)"
    assert link in section(md, "Changes")
    assert str(project) not in md  # no runner's checkout directory in the comment


def test_sources_outside_the_workspace_are_plain_text(project):
    md = plan_md(github_env(project, GITHUB_WORKSPACE=str(project / "elsewhere")))
    assert "](http" not in md
    md = plan_md(
        github_env(project, GITHUB_WORKSPACE=str(project / "elsewhere")),
        "--config",
        str(project / "config"),
    )
    assert "](http" not in md


@pytest.mark.parametrize(
    "source, link",
    [
        ("config/a (b)#c.yaml:3", "config/a%20%28b%29%23c.yaml#L3"),
        ("./config/x.yaml:7", "config/x.yaml#L7"),
        ("config/../../etc/passwd:1", None),
        ("../x.yaml:1", None),
        ("/etc/passwd:1", None),
        ("config/x.yaml", None),
        ("config/x.yaml:0", None),
        ("[x](https://evil.example)]:1", "%5Bx%5D%28https%3A/evil.example%29%5D#L1"),
    ],
)
def test_link_paths_are_percent_encoded_and_never_leave_the_repository(source, link):
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/call-states"}
    out = source_linker({**env, "GITHUB_SHA": SHA})(source)
    if link is None:
        assert out == esc(source)
        assert "<a " not in html(f"| x |\n|---|\n| {out} |\n")
    else:
        assert out.endswith(f"]({BLOB}{link})")
        hrefs = re.findall(r'href="([^"]*)"', html(f"| x |\n|---|\n| {out} |\n"))
        assert hrefs == [BLOB + link]  # one link, to the file: none injected by its name


def test_show_renders_the_links_as_plan_did(project):
    env = github_env(project)
    code, printed = run("plan", "--at", AT, "--format", "markdown", "--out", "p.json", env=env)
    assert code == 0 and "](http" in printed
    code, shown = run("show", "p.json", "--format", "markdown", env=env)
    assert shown == printed.replace("Saved the plan to p.json.\n", "")


# --- warnings grouped ------------------------------------------------------------------------


def headings(warnings: str) -> list[str]:
    return re.findall(r"^\*\*(\w+)\*\* \((\d+)\)", warnings, re.M)


def test_warnings_are_grouped_by_code_consequential_first_with_counts(project):
    md = plan_md()
    warnings = section(md, "Warnings")
    assert headings(warnings) == [
        ("recent_calls", "3"),
        ("not_effective", "1"),
        ("stale_stop", "1"),
        ("unmanaged", "1"),
        ("window_ends", "2"),
        ("window_starts", "1"),
        ("charges_continue", "4"),
    ]
    group = warnings.split("**recent_calls** (3)\n")[1].split("\n\n")[0].splitlines()
    assert len(group) == 3 and all(line.startswith("- ") for line in group)
    assert group[0].startswith("- number +14105550102: stopping +14105550102 silences")
    assert group[0].endswith(f"({STOP_102})")
    rendered = html(md).split("<h4>Warnings</h4>")[1]
    assert rendered.startswith("\n<p><strong>recent_calls</strong> (3)</p>\n<ul>\n<li>")
    assert rendered.count("<ul>") == 6  # each group its own list; charges_continue one line


def test_threshold_exceeded_comes_second_and_stays_a_caution_box():
    nums = [f"+1410{i:07d}" for i in range(10)]
    p = plan_of(
        [dacc([dnum(n, calls="stopped") for n in nums])],
        [lacc([lnum(n, recent_calls=i % 2) for i, n in enumerate(nums)])],
    )
    md = render_markdown(p)
    assert "> [!CAUTION]\n> **threshold_exceeded**" in md
    groups = headings(section(md, "Warnings"))
    assert groups[:2] == [("recent_calls", "5"), ("threshold_exceeded", "1")]
    assert groups[-1] == ("charges_continue", "10")


def test_a_large_group_is_capped_and_the_budget_still_holds():
    nums = [f"+1410{i:07d}" for i in range(3000)]
    p = plan_of(
        [dacc([dnum(n, calls="stopped") for n in nums])],
        [lacc([lnum(n, recent_calls=2) for n in nums])],
    )
    md = render_markdown(p)
    assert len(md) < GITHUB_COMMENT_LIMIT and md.rstrip().endswith("</sub>")
    assert "**Truncated:**" in md
    small = render_markdown(p, limit=10_000_000)
    warnings = section(small, "Warnings")
    assert "**recent_calls** (3000)" in warnings
    assert "- … and 2980 more recent_calls (in the JSON artifact" in warnings
    assert warnings.count("\n- number ") == 20


# --- charges_continue folded into Charges ----------------------------------------------------


def test_charges_continue_is_folded_into_charges_not_repeated_under_warnings(project):
    md = plan_md()
    charges, warnings = section(md, "Charges"), section(md, "Warnings")
    assert "does not stop charges:" not in warnings and "does not stop charges (" not in warnings
    assert "**charges_continue** (4): what each stop or pause leaves billing is under Charges." in (
        warnings
    )
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in charges.splitlines()}
    assert rows["number +14105550102 Google Ads Spring"].endswith(
        f"| 3.00 USD | calls stopped | **new** | {STOP_102} |"
    )
    assert rows["account 1003 Cedar Law Group"].endswith(
        "| 99.00 USD | account stopped | **new** | config/accounts/cedar-law.yaml:5 |"
    )
    assert (
        "Pausing does not stop charges either:\n- number +14105550103, swapping → paused: "
        "still billed 3.00 USD/month; calls still connect (config/accounts/acme-dental.yaml:15)"
    ) in charges


def test_every_charges_continue_figure_is_in_the_charges_section(project):
    _, out = run("plan", "--at", AT, "--format", "json")
    folded = [w for w in json.loads(out)["warnings"] if w["code"] == "charges_continue"]
    assert len(folded) == 4
    charges = section(plan_md(), "Charges")
    for w in folded:
        fee = re.search(r"(\d+\.\d\d) USD/month", w["message"]).group(1)
        line = next(line for line in charges.splitlines() if w["source"] in line)
        assert fee in line, (w, line)


def test_a_drift_report_lists_what_the_config_would_stop_as_still_billed(project):
    code, md = run("drift", "--at", AT, "--format", "markdown")
    assert code == 2
    charges = section(md, "Charges")
    assert (
        "Also still billed:\n- number +14105550102, calls → stopped: still billed 3.00 USD/month "
        f"until released ({STOP_102})"
    ) in charges
    assert "does not stop charges:" not in section(md, "Warnings")


def test_json_keeps_every_finding(project):
    _, plain = run("plan", "--at", AT, "--format", "json")
    _, in_ci = run("plan", "--at", AT, "--format", "json", env=github_env(project))
    plain_data, ci_data = json.loads(plain), json.loads(in_ci)
    for data in (plain_data, ci_data):
        del data["generated_at"]
    assert ci_data == plain_data  # GitHub's variables change no byte of the JSON
    codes = [w["code"] for w in plain_data["warnings"]]
    assert len(codes) == 13 and codes.count("charges_continue") == 4
    assert "](" not in in_ci


# --- --format github: the charge on the changed line's one annotation ------------------------


def test_changed_lines_carry_what_stays_billed_in_one_annotation(project, tmp_path):
    env = {**github_env(project), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    code, out = run("plan", "--at", AT, "--format", "github", env=env)
    assert code == 0
    notices = [line for line in out.splitlines() if line.startswith("::notice ")]
    assert (
        "::notice file=config/accounts/acme-dental.yaml,line=12,title=reconciler will stop::"
        "number +14105550102: calls allowed -> stopped (stop); still billed 3.00 USD/month "
        "until released"
    ) in notices
    assert (
        "::notice file=config/accounts/acme-dental.yaml,line=15,title=reconciler will pause::"
        "number +14105550103: swapping active -> paused (pause); still billed 3.00 USD/month; "
        "calls still connect"
    ) in notices
    assert any(
        "line=5,title=reconciler will stop::account 1003: status active -> stopped (stop); "
        "still billed: subscription 99.00 USD/month and every number's fee" in n
        for n in notices
    )
    allow = next(n for n in notices if "+14105550104" in n)
    assert "billed" not in allow  # an allow stops nothing
    places = [n.split(",title=")[0] for n in notices]
    assert len(places) == len(set(places)) == 5  # one annotation per changed line
    assert "charges_continue::" not in out and "title=reconciler%3A charges_continue" not in out
    summary = (tmp_path / "summary.md").read_text()
    assert f"]({BLOB}config/accounts/acme-dental.yaml#L12)" in summary
