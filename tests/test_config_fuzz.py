"""Property tests: random mutations of a valid config never escape as a traceback, and no
message repeats PyYAML's or pydantic's own wording."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main

ROOT = Path(__file__).resolve().parent.parent
VALID = (ROOT / "config" / "accounts" / "acme-dental.yaml").read_text()
LINES = VALID.splitlines(keepends=True)

YAML_SNIPPETS = [
    "off",
    "yes",
    "null",
    "~",
    "[]",
    "{}",
    "&a x",
    "*a",
    "!!str 1",
    "!x y",
    "'",
    '"',
    "- ",
    ": ",
    "+14105550101",
    "1e9",
    "0x1F",
    "2026-13-45",
    "\t",
    "\x00",
    "\u2028",
    "<<: {}",
    "? ",
    "|",
    ">",
    "%YAML 1.2",
    "---",
    "...",
    "#",
    "@",
    "`",
    "\\",
]


# what the libraries say; every message is rewritten in plain words (test_config_hints.py)
LIBRARY_PHRASES = (
    "Input should",
    "Value error",
    "did not find expected",
    "could not find expected",
    "mapping values are not allowed",
    "while parsing",
    "while scanning",
    "cannot start any token",
    "unable to parse",
    "Field required",
    "Extra inputs",
    "String should",
    "Keys should be strings",
    "errors.pydantic.dev",
    "invalid YAML",
)


def run_validate(text: str | bytes, name: str = "accounts/fuzz.yaml") -> None:
    """`validate` on a config whose file `name` holds `text` (the rest is valid)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp)
        (cfg / "accounts").mkdir()
        if name != "accounts/fuzz.yaml":
            (cfg / "accounts" / "a.yaml").write_text(VALID)
        target = cfg / name
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text, encoding="utf-8", errors="surrogatepass")
        result = CliRunner().invoke(main, ["validate", "--config", str(cfg)])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    leaked = [p for p in LIBRARY_PHRASES if p in result.output]
    assert not leaked, result.output
    if result.exit_code == 1:
        assert Path(name).name in result.output, result.output


mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, len(LINES) - 1), st.just("")),
    st.tuples(st.just("insert"), st.integers(0, len(LINES)), st.sampled_from(YAML_SNIPPETS)),
    st.tuples(
        st.just("replace_value"), st.integers(0, len(LINES) - 1), st.sampled_from(YAML_SNIPPETS)
    ),
    st.tuples(st.just("char"), st.integers(0, len(VALID)), st.text(min_size=1, max_size=3)),
)


def apply_mutations(mutations: list[tuple[str, int, str]]) -> str:
    lines = list(LINES)
    for kind, pos, payload in mutations:
        if kind == "delete" and lines:
            del lines[pos % len(lines)]
        elif kind == "insert":
            lines.insert(pos % (len(lines) + 1), payload + "\n")
        elif kind == "replace_value" and lines:
            i = pos % len(lines)
            head, sep, _ = lines[i].partition(":")
            lines[i] = f"{head}{sep or ':'} {payload}\n"
        elif kind == "char":
            text = "".join(lines)
            pos %= len(text) + 1
            lines = (text[:pos] + payload + text[pos:]).splitlines(keepends=True)
    return "".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutations_of_a_valid_file_never_raise(mutations):
    run_validate(apply_mutations(mutations))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["active", "stopped", "+14105550101"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "account",
                    "numbers",
                    "id",
                    "status",
                    "number",
                    "calls",
                    "swapping",
                    "until",
                    "note",
                    "protected",
                    "name",
                    "x",
                ]
            ),
            children,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_yaml_documents_never_raise(doc):
    run_validate(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(raw):
    run_validate(raw)


SETTINGS = (ROOT / "config" / "reconciler.yaml").read_text()
SETTINGS_LINES = SETTINGS.splitlines(keepends=True)
settings_mutation = st.tuples(
    st.sampled_from(["delete", "insert", "replace_value"]),
    st.integers(0, len(SETTINGS_LINES)),
    st.sampled_from([*YAML_SNIPPETS, "-1", "1e400", "http://x", "ctm", "USD", '"3.001"']),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(settings_mutation, min_size=1, max_size=4))
def test_mutations_of_the_settings_file_never_raise(mutations):
    lines = list(SETTINGS_LINES)
    for kind, pos, payload in mutations:
        if kind == "delete" and lines:
            del lines[pos % len(lines)]
        elif kind == "insert":
            lines.insert(pos % (len(lines) + 1), payload + "\n")
        elif lines:
            i = pos % len(lines)
            head, sep, _ = lines[i].partition(":")
            lines[i] = f"{head}{sep or ':'} {payload}\n"
    run_validate("".join(lines), "reconciler.yaml")


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=8))
def test_many_mutations_never_raise(mutations):
    run_validate(apply_mutations(mutations))


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_many_random_documents_never_raise(doc):
    run_validate(yaml.safe_dump(doc, allow_unicode=True))
