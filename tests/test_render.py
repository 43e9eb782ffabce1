"""Renderers only read the plan: text, JSON (schema-valid), Markdown (escaped, bounded), GitHub."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
from factories import NOW, dacc, dnum, lacc, lnum, plan_of

from reconciler.render import render
from reconciler.render.github import annotation
from reconciler.render.markdown import GITHUB_COMMENT_LIMIT, esc, render_markdown

ROOT = Path(__file__).resolve().parent.parent
N1, N2 = "+14105550101", "+14105550102"


@pytest.fixture
def sample():
    return plan_of(
        [
            dacc(
                [
                    dnum(N1, calls="stopped", note="campaign | ended `now` <b>"),
                    dnum(N2, swapping="paused", line=20, until=NOW + timedelta(days=2)),
                ],
                name="Acme",
            )
        ],
        [lacc([lnum(N1, recent_calls=3), lnum(N2), lnum("+14105550199")])],
    )


def test_text_reads_like_terraform(sample):
    out = render(sample, "text")
    assert "  ~ number +14105550101 (Acme)  calls: allowed -> stopped" in out
    assert "Plan: 1 to stop, 0 to allow, 1 to pause, 0 to resume; 1 unchanged." in out
    assert "Charges: stopping calls does not stop charges." in out
    assert (
        "Now 0.00 USD/month billed for stopped resources; once applied 3.00 "
        "(+3.00 newly stopped, −0.00 resumed)." in out
    )
    assert "until 2026-11-28T10:00:00Z (2d 0h left)" in out
    assert "! recent_calls:" in out and "\x1b[" not in out  # no colour unless asked


def test_text_colour_only_when_asked(sample):
    assert "\x1b[" in render(sample, "text", color=True)


def test_text_no_changes():
    out = render(plan_of([dacc()], [lacc()]), "text")
    assert out.startswith("No changes. Live matches the config (1 resources checked).")


def test_drift_framing(sample):
    out = render(sample, "text", mode="drift")
    assert "Live differs from the config:" in out
    assert "calls: live allowed, config stopped" in out and "Drift: 2 differences" in out


def test_json_matches_spec_and_schema(sample):
    data = json.loads(render(sample, "json"))
    assert data["format_version"] == 1
    assert data["changes"][0]["from"] == "allowed" and "from_" not in data["changes"][0]
    assert data["charges"]["stopped_monthly_total"] == "3.00"
    assert data["summary"] == {"stop": 1, "allow": 0, "pause": 1, "resume": 0, "unchanged": 1}
    assert data["unmanaged"] == ["number.+14105550199"]
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    jsonschema.validate(data, schema)


def test_markdown_escapes_table_breakers(sample):
    md = render(sample, "markdown")
    row = next(line for line in md.splitlines() if line.startswith("| stop |"))
    assert row.count("|") == 8  # 7 cells: the pipe in the note did not split the row
    assert "&lt;b&gt;" in row and "&#96;now&#96;" in row and "<b>" not in row
    assert "<details><summary>Accounts (1)" in md and "</details>" in md
    assert md.startswith("<!-- reconciler-plan -->")


def test_esc():
    assert esc("a|b`c<d>&\nе") == "a&#124;b&#96;c&lt;d&gt;&amp; е"


def test_markdown_of_a_large_plan_stays_under_githubs_limit():
    nums = [f"+1410{i:07d}" for i in range(3000)]
    p = plan_of(
        [dacc([dnum(n, calls="stopped", note="x" * 40) for n in nums])],
        [lacc([lnum(n) for n in nums])],
    )
    md = render_markdown(p)
    assert len(md) < GITHUB_COMMENT_LIMIT
    assert "**Truncated:**" in md
    assert md.rstrip().endswith("</sub>")


def test_markdown_threshold_is_prominent():
    nums = [f"+1410{i:07d}" for i in range(10)]
    p = plan_of([dacc([dnum(n, calls="stopped") for n in nums])], [lacc([lnum(n) for n in nums])])
    md = render_markdown(p)
    assert "> [!CAUTION]\n> **threshold_exceeded**" in md


def test_github_annotations_point_at_config_lines(sample, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = render(sample, "github")
    assert "::warning file=acc.yaml,line=11,title=reconciler%3A recent_calls::" in out
    assert "::notice file=acc.yaml,line=11,title=reconciler will stop::" in out
    assert "<!-- reconciler-plan -->" in summary.read_text()


def test_github_errors_are_error_annotations():
    p = plan_of([dacc([dnum(N1, swapping="paused")])], [lacc([lnum(N1, online=False)])])
    out = render(p, "github")
    assert "::error file=acc.yaml,line=12,title=reconciler%3A not_pausable::" in out


def test_annotation_escapes_data():
    line = annotation("warning", "50% done\nnext", "a,b:c.yaml:3", "t")
    assert line == "::warning file=a%2Cb%3Ac.yaml,line=3,title=t::50%25 done%0Anext"


def test_a_plan_saved_before_the_live_figures_still_loads_and_renders(sample):
    from reconciler.plan_model import Plan

    old = sample.to_json_dict()
    for key in ("live_stopped_monthly", "resumed_monthly", "resumed_items"):
        del old["charges"][key]
    plan = Plan.model_validate(old)
    assert plan.format_version == 1 and plan.charges.live_stopped_monthly is None
    out = render(plan, "text")
    assert (
        "Once applied, 3.00 USD/month keeps billing for 1 stopped resource that cannot ring." in out
    )
    assert "| – | 3.00 USD/month |" in render(plan, "markdown")
