"""Provider text is neutralised in every output (issue 13, case 6): an account name with
ESC sequences, BEL or a newline followed by a GitHub workflow command is shown escaped,
never raw, in text, Markdown, the GitHub format and its job summary, and apply's lines."""

from __future__ import annotations

import pytest
from test_cli_e2e import run

HOSTILE = "Cedar\x1b]0;pwned\x07\n::error file=x::forged\u202e"


@pytest.fixture
def hostile(project):
    fleet = project / "config" / "sandbox-fleet.yaml"
    escaped = HOSTILE.encode("unicode_escape").decode().replace("\\x1b", "\\e")
    text = fleet.read_text()
    assert "name: Cedar Law Group" in text
    fleet.write_text(text.replace("name: Cedar Law Group", f'name: "{escaped}"'))
    return project


def assert_neutral(out: str) -> None:
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert not any(line.startswith("::error file=x") for line in out.splitlines())


@pytest.mark.parametrize("fmt", ["text", "markdown", "github"])
def test_plan_output_never_carries_control_characters(hostile, fmt, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out = run("plan", "--format", fmt)
    assert code == 0, out
    assert_neutral(out)
    assert "Cedar\\x1b]0;pwned\\x07\\x0a::error file=x::forged\\u202e" in out
    if fmt == "github":
        assert_neutral(summary.read_text())


def test_drift_and_apply_lines_are_neutral(hostile):
    code, out = run("drift")
    assert code == 2 and "\\x1b" in out
    assert_neutral(out)
    code, out = run("apply", "--auto-approve")
    assert code == 0
    assert_neutral(out)


@pytest.mark.parametrize(
    "char", ["\x00", "\x07", "\x1b", "\n", "\r", "\x7f", "\x85", "\u2028", "\u202e", "\u2066"]
)
def test_every_unsafe_character_is_found_and_escaped(char):
    from factories import dacc, lacc, plan_of

    from reconciler.render import render

    plan = plan_of([dacc(status="stopped")], [lacc(name=f"Acme{char}Dental")])
    for fmt in ("text", "markdown", "github"):
        out = render(plan, fmt)
        code = ord(char)
        shown = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
        assert f"Acme{shown}Dental" in out
        if char != "\n":  # output lines end in newlines of their own
            assert char not in out
