"""Every config mistake says what to write (issue 15, item 6), through the real CLI.

Each test writes a small config, runs `reconciler validate` (and `plan` where it matters),
and checks the exact useful parts of the message: file, line and column, what is wrong and
what to write; and that no library wording (PyYAML's, pydantic's) reaches the user.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_config import GOOD_ACCOUNT

from reconciler.cli import main

# What PyYAML and pydantic say; none of it may reach a user.
LIBRARY_PHRASES = (
    "Value error",
    "Input should",
    "pydantic",
    "did not find expected",
    "could not find expected",
    "mapping values are not allowed",
    "expected <block end>",
    "while parsing",
    "while scanning",
    "cannot start any token",
    "unable to parse",
    "Field required",
    "Extra inputs are not permitted",
    "String should",
    "Keys should be strings",
    "errors.pydantic.dev",
    "invalid YAML",
    "Traceback",
    "(got True)",
    "(got False)",
    "(got None)",
)
ACCOUNT = GOOD_ACCOUNT


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    cfg = tmp_path / "cfg"
    (cfg / "accounts").mkdir(parents=True)
    for rel, content in {"accounts/a.yaml": ACCOUNT, **files}.items():
        (cfg / rel).write_text(textwrap.dedent(content), encoding="utf-8")
    return cfg


def run(cfg: Path, command: str = "validate") -> list[str]:
    """The CLI's problem lines (paths relative to the config dir); asserts exit 1, no
    traceback and no library wording."""
    result = CliRunner().invoke(main, [command, "--config", str(cfg)])
    out = result.output
    assert result.exit_code == 1, out
    assert result.exception is None or isinstance(result.exception, SystemExit), out
    for phrase in LIBRARY_PHRASES:
        assert phrase not in out, f"{phrase!r} in:\n{out}"
    assert out.rstrip().splitlines()[-1].startswith("Error: config is invalid"), out
    return [ln.replace(f"{cfg}/", "") for ln in out.rstrip().splitlines()[:-1]]


def one(cfg: Path, command: str = "validate") -> str:
    lines = run(cfg, command)
    assert len(lines) == 1, lines
    return lines[0]


def account(body: str) -> dict[str, str]:
    return {"accounts/a.yaml": body}


# --- 1. YAML booleans where a word is meant --------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "  status: off",
            "accounts/a.yaml:3:3: account.status: YAML reads off as a boolean (false), not a "
            "word; write status: stopped (one of active, paused, stopped)",
        ),
        ("  status: no", "account.status: YAML reads no as a boolean (false)"),
        ("  status: on", "write status: active (one of active, paused, stopped)"),
        ("  status: yes", "write status: active"),
        (
            "  name: yes",
            'account.name must be text; YAML reads yes as a boolean: quote it, name: "yes"',
        ),
        (
            "  note: off",
            'account.note must be text; YAML reads off as a boolean: quote it, note: "off"',
        ),
        ("  protected: maybe", "account.protected: write true or false (got maybe)"),
        (
            '  protected: "true"',
            'account.protected: write true or false without quotes (got "true")',
        ),
    ],
)
def test_a_yaml_boolean_for_an_account_word_says_what_to_write(tmp_path, line, expected):
    cfg = write(tmp_path, account(f"account:\n  id: 1\n{line}\n"))
    got = one(cfg)
    assert got.startswith("accounts/a.yaml:3:3: ") and expected in got, got


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "    calls: off",
            "numbers[1] (+14105550101).calls: YAML reads off as a boolean (false), not a word; write calls: stopped",
        ),
        ("    calls: yes", "write calls: allowed"),
        (
            "    swapping: off",
            "numbers[1] (+14105550101).swapping: YAML reads off as a boolean (false), not a word; write swapping: paused",
        ),
        ("    swapping: on", "write swapping: active"),
    ],
)
def test_a_yaml_boolean_for_a_number_word_says_what_to_write(tmp_path, line, expected):
    body = f'account:\n  id: 1\nnumbers:\n  - number: "+14105550101"\n{line}\n'
    got = one(write(tmp_path, account(body)))
    assert got.startswith("accounts/a.yaml:5:5: ") and expected in got, got


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            "policy:\n  unmanaged: off\n",
            "reconciler.yaml:2:3: policy.unmanaged: YAML reads off as a boolean (false), not a "
            "word; write unmanaged: ignore (one of ignore, report, error)",
        ),
        (
            "provider:\n  type: no\n",
            "reconciler.yaml:2:3: provider.type: YAML reads no as a boolean (false), not a word; "
            "write one of sandbox, ctm",
        ),
        (  # a float setting no longer reads yes as 1.0
            "provider:\n  timeout_seconds: yes\n",
            "reconciler.yaml:2:3: provider.timeout_seconds must be a number more than 0 and at "
            "most 600 (YAML reads yes as a boolean); write e.g. timeout_seconds: 30",
        ),
    ],
)
def test_a_yaml_boolean_in_the_settings_says_what_to_write(tmp_path, settings, expected):
    assert one(write(tmp_path, {"reconciler.yaml": settings})) == expected


def test_a_yaml_boolean_for_the_account_id_says_so(tmp_path):
    got = one(write(tmp_path, account("account:\n  id: yes\n")))
    assert got == (
        "accounts/a.yaml:2:3: account id must be a number or a non-empty string (got yes, and "
        "YAML reads yes as a boolean); write e.g. id: 1001"
    )


# --- 2. indentation and other YAML syntax ----------------------------------------------

RULE = (
    "keys of one mapping line up under each other, and list items start with `- ` at the "
    "same indentation"
)
SYNTAX = [
    (
        "key-indented-more",
        "account:\n  id: 1\n   name: x\n",
        "accounts/a.yaml:3:4: `   name: x` is indented 3 spaces, more than `id:` above it "
        f"(line 2); indent it 2 spaces: {RULE}",
    ),
    (
        "key-indented-less",
        "account:\n  id: 1\n name: x\n",
        "accounts/a.yaml:3:2: ` name: x` is indented 1 space, under no key above it; indent it "
        f"2 spaces (under `id:`, line 2) or 0 spaces (under `account:`, line 1): {RULE}",
    ),
    (
        "item-key-at-the-dash",
        'account:\n  id: 1\nnumbers:\n  - number: "+14105550101"\n  calls: stopped\n',
        "accounts/a.yaml:5:3: `  calls: stopped` is indented 2 spaces; to belong to the list "
        "item above (line 4), indent it 4 spaces, under `number:`, or start a new item with "
        f"`- `: {RULE}",
    ),
    (
        "item-key-one-off",
        'account:\n  id: 1\nnumbers:\n  - number: "+14105550101"\n   calls: stopped\n',
        "accounts/a.yaml:5:4: `   calls: stopped` is indented 3 spaces; to belong to the list "
        "item above (line 4), indent it 4 spaces, under `number:`",
    ),
    (
        "item-key-too-deep",
        'account:\n  id: 1\nnumbers:\n  - number: "+14105550101"\n    calls: stopped\n'
        "     note: x\n",
        "accounts/a.yaml:6:6: `     note: x` is indented 5 spaces, more than `calls:` above it "
        f"(line 5); indent it 4 spaces: {RULE}",
    ),
    (
        "list-item-deeper",
        'account:\n  id: 1\nnumbers:\n  - number: "+14105550101"\n   - number: "+14105550102"\n',
        'accounts/a.yaml:5:4: `   - number: "+14105550102"` is indented 3 spaces, the list '
        f"item above it (line 4) 2 spaces; indent it 2 spaces: {RULE}",
    ),
    (
        "list-item-shallower",
        'account:\n  id: 1\nnumbers:\n  - number: "+14105550101"\n - number: "+14105550102"\n',
        'accounts/a.yaml:5:2: ` - number: "+14105550102"` is indented 1 space, the list item '
        "above it (line 4) 2 spaces; indent it 2 spaces",
    ),
    (
        "list-under-a-mapping",
        "account:\n  id: 1\n  - x\n",
        "accounts/a.yaml:3:3: `  - x` is indented 2 spaces; put a list under a key that ends "
        f"with `:`: {RULE}",
    ),
    (
        "key-without-colon",
        "account:\n  id: 1\n  name\n  status: active\n",
        "accounts/a.yaml:3:3: `  name` has no `:`; write `key: value`",
    ),
    (
        "colon-in-a-value",
        "account:\n  id: 1\n  name: Acme: Dental\n",
        "accounts/a.yaml:3:13: a second `: ` in `  name: Acme: Dental`; quote a value that "
        'contains `: ` (e.g. name: "Acme: Dental"), and put each key on its own line',
    ),
    (
        "two-keys-on-a-line",
        "account:\n  id: 1 name: x\n",
        "accounts/a.yaml:2:13: a second `: ` in `  id: 1 name: x`",
    ),
    (
        "unclosed-quote-at-the-end",
        'account:\n  id: 1\n  name: "Acme\n',
        'accounts/a.yaml:3:9: a quote opened in `  name: "Acme` is not closed; end the value '
        "with the same quote on that line",
    ),
    (
        "unclosed-quote-in-the-middle",
        'account:\n  id: 1\nnumbers:\n  - number: "+14105550101"\n    note: "ended\n'
        '    calls: stopped\n  - number: "+14105550102"\n',
        'accounts/a.yaml:5:5: a quote opened in `    note: "ended` is not closed',
    ),
    (
        "text-after-a-quote",
        'account:\n  id: 1\n  note: "x" y\n',
        'accounts/a.yaml:3:13: unexpected text after the value in `  note: "x" y`; quote the '
        "whole value",
    ),
    (
        "unclosed-flow",
        "account: {id: 1\n",
        "accounts/a.yaml:2:1: the `{` opened at line 1 is not closed; close it with `}`",
    ),
    (
        "tab",
        "account:\n\tid: 1\n",
        "accounts/a.yaml:2:1: a tab character here; indent with spaces, not tabs",
    ),
    (
        "at-sign",
        "account:\n  id: 1\n  note: @me\n",
        "accounts/a.yaml:3:9: a value cannot start with '@'; quote it, e.g. note: \"@me\"",
    ),
    (
        "list-on-the-key-line",
        'account:\n  id: 1\nnumbers: - number: "+14105550101"\n',
        "accounts/a.yaml:3:10: a list cannot start on the same line as its key; put each `- ` "
        "item on its own line",
    ),
    (
        "bad-escape",
        'account:\n  id: 1\n  note: "C:\\path"\n',
        "accounts/a.yaml:3:9: in double quotes a backslash starts an escape",
    ),
    (
        "undefined-alias",
        "account:\n  id: *a\n",
        "accounts/a.yaml:2:7: an alias (`*name`) refers to no anchor (`&name`) above it",
    ),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in SYNTAX], ids=[c[0] for c in SYNTAX])
def test_a_yaml_syntax_error_names_the_line_and_what_to_write(tmp_path, body, expected):
    got = one(write(tmp_path, account(body)))
    assert got.startswith(expected), got


def test_a_syntax_error_reads_the_same_through_plan(tmp_path):
    cfg = write(tmp_path, account("account:\n  id: 1\n name: x\n"))
    assert one(cfg, "plan") == one(cfg, "validate")
    assert not (tmp_path / ".reconciler").exists()  # nothing was opened


def test_the_pure_python_parser_gets_the_same_hints(tmp_path, monkeypatch):
    """Without libyaml PyYAML words its errors differently; the hints do not change."""
    import yaml

    from reconciler import yamlsafe

    cases = [c for c in SYNTAX if c[0] not in ("unclosed-flow",)]  # marks differ by a line
    with_c = [one(write(tmp_path / c[0], account(c[1]))) for c in cases]

    class Pure(yaml.SafeLoader):
        yaml_implicit_resolvers = yamlsafe._Loader.yaml_implicit_resolvers

    monkeypatch.setattr(yamlsafe, "_Loader", Pure)
    pure = [one(write(tmp_path / ("p" + c[0]), account(c[1]))) for c in cases]
    assert [p.replace("/pcfg", "/cfg") for p in pure] == with_c


# --- 3. no library wording: settings and account values --------------------------------

SETTINGS = [
    (
        "provider:\n  type: ctm\n  base_url: http://api.example.com/api/v1\n",
        "reconciler.yaml:3:3: provider.base_url must be an https:// URL (http:// only for "
        "localhost, 127.0.0.1 or ::1) (got http://api.example.com/api/v1); write e.g. "
        "base_url: https://api.calltrackingmetrics.com/api/v1",
    ),
    (
        "provider:\n  timeout_seconds: abc\n",
        "reconciler.yaml:2:3: provider.timeout_seconds must be a number more than 0 and at most "
        "600 (abc is text); write e.g. timeout_seconds: 30",
    ),
    (
        "provider:\n  timeout_seconds: '30'\n",
        "reconciler.yaml:2:3: provider.timeout_seconds must be a number more than 0 and at most "
        "600 ('30' is text, not a number: remove the quotes); write e.g. timeout_seconds: 30",
    ),
    (
        "provider:\n  concurrency: 100\n",
        "reconciler.yaml:2:3: provider.concurrency must be a whole number at least 1 and at most "
        "64 (100 is out of range); write e.g. concurrency: 8",
    ),
    (
        "provider:\n  concurrency: 2.5\n",
        "reconciler.yaml:2:3: provider.concurrency must be a whole number at least 1 and at most "
        "64 (2.5 is not a whole number); write e.g. concurrency: 8",
    ),
    (
        'provider:\n  concurrency: "8"\n',
        "reconciler.yaml:2:3: provider.concurrency must be a whole number at least 1 and at "
        'most 64 ("8" is text, not a number: remove the quotes); write e.g. concurrency: 8',
    ),
    (
        "provider:\n  requests_per_second: 0\n",
        "reconciler.yaml:2:3: provider.requests_per_second must be a number more than 0 and at "
        "most 10000 (0 is out of range); write e.g. requests_per_second: 10",
    ),
    (
        "provider:\n  retry_budget_seconds: .nan\n",
        "reconciler.yaml:2:3: provider.retry_budget_seconds must be a number more than 0 and at "
        "most 3600 (.nan is not a number); write e.g. retry_budget_seconds: 120",
    ),
    (
        "provider:\n  access_key_env: 1KEY\n",
        "reconciler.yaml:2:3: provider.access_key_env must be the name of an environment "
        "variable (letters, digits and _, not starting with a digit), e.g. access_key_env: "
        "CTM_ACCESS_KEY (got 1KEY)",
    ),
    (
        "provider:\n  database: [a, b]\n",
        "reconciler.yaml:2:3: provider.database must be one line of text (got [a, b]); write "
        "e.g. database: some text",
    ),
    (
        "policy:\n  max_change_fraction: lots\n",
        "reconciler.yaml:2:3: policy.max_change_fraction must be a number at least 0 and at "
        "most 1 (lots is text); write e.g. max_change_fraction: 0.3",
    ),
    (
        "policy:\n  stale_stop_days: -1\n",
        "reconciler.yaml:2:3: policy.stale_stop_days must be a whole number at least 0 (-1 is "
        "out of range); write e.g. stale_stop_days: 30",
    ),
    (
        "policy:\n  unmanaged: warn\n",
        "reconciler.yaml:2:3: policy.unmanaged must be one of ignore, report, error (got warn)",
    ),
    (
        "billing:\n  currency: usd\n",
        "reconciler.yaml:2:3: billing.currency must be a three-letter ISO 4217 code in "
        "capitals, e.g. currency: USD (got usd)",
    ),
    (
        "billing:\n  default_number_monthly_fee: -1\n",
        "reconciler.yaml:2:3: billing.default_number_monthly_fee must be an amount of money, at "
        'most 2 decimals (got -1); write e.g. default_number_monthly_fee: "3.00"',
    ),
    (
        'billing:\n  default_account_monthly_fee: "49.999"\n',
        "reconciler.yaml:2:3: billing.default_account_monthly_fee must be an amount of money, "
        'at most 2 decimals (got "49.999"); write e.g. default_account_monthly_fee: "3.00"',
    ),
    (
        "provider: sandbox\n",
        "reconciler.yaml:1:1: provider must be a mapping of keys (got sandbox); write provider: "
        "then type: sandbox on the next line, indented",
    ),
    (
        "policy:\n  unmanged: report\n",
        "reconciler.yaml:2:3: unknown key 'unmanged'; did you mean 'unmanaged'? allowed here: "
        "max_change_fraction, unmanaged, stale_stop_days, due_grace_minutes",
    ),
]


@pytest.mark.parametrize(("settings", "expected"), SETTINGS)
def test_a_settings_mistake_is_plain_words(tmp_path, settings, expected):
    assert one(write(tmp_path, {"reconciler.yaml": settings})) == expected


def test_account_mistakes_are_plain_words(tmp_path):
    body = (
        "account:\n  id: 1\n  colour: red\n"
        "numbers:\n  - calls: stopped\n  - number: '+14105550102'\n    nmber: x\n"
    )
    assert run(write(tmp_path, account(body))) == [
        "accounts/a.yaml:3:3: unknown key 'colour'; allowed here: id, name, status, from, "
        "until, note, protected",
        "accounts/a.yaml:5:5: numbers[1]: missing `number:`; write it first in the item, e.g. "
        '- number: "+14105550101"',
        "accounts/a.yaml:7:5: unknown key 'nmber'; did you mean 'number'? allowed here: number, "
        "calls, swapping, from, until, note, protected",
    ]


def test_an_empty_key_is_plain_words(tmp_path):
    got = one(write(tmp_path, account("account:\n  id: 1\n? \n")))
    assert (
        got.startswith("accounts/a.yaml:3:2: a key is empty")
        and "write one of account, numbers" in got
    )


# --- 4. positions are 1-based and name the number -------------------------------------


def test_a_position_is_1_based_and_names_the_items_number(tmp_path):
    body = "account:\n  id: 1\nnumbers:\n" + "".join(
        f'  - number: "+1410555010{i}"\n' for i in range(1, 4)
    )
    body += '  - number: "+14105550104"\n    protected: maybe\n    note: 12\n'
    assert run(write(tmp_path, account(body))) == [
        "accounts/a.yaml:8:5: numbers[4] (+14105550104).protected: write true or false (got maybe)",
        "accounts/a.yaml:9:5: numbers[4] (+14105550104).note must be text; YAML reads 12 as a "
        'number: quote it, note: "12"',
    ]


# --- 5. an item that is not a mapping shows the item's form -----------------------------


def test_an_item_that_is_not_a_mapping_shows_the_form_to_write(tmp_path):
    body = 'account:\n  id: 1\nnumbers:\n  - "+14105550101"\n  -\n'
    result = CliRunner().invoke(main, ["validate", "--config", str(write(tmp_path, account(body)))])
    out = result.output.replace(f"{tmp_path}/cfg/", "")
    assert result.exit_code == 1
    assert (
        'accounts/a.yaml:4:5: numbers[1] must be a mapping of keys (got "+14105550101"); write '
        "each item as `number:` and its settings, e.g.\n"
        '    - number: "+14105550101"\n'
        "      calls: stopped\n"
        "accounts/a.yaml:5:4: numbers[2] is empty (a `-` with nothing after it); write each item "
        "as `number:` and its settings, e.g.\n"
        '    - number: "+14105550101"\n'
        "      calls: stopped\n"
    ) in out


def test_a_dash_without_a_space_is_named(tmp_path):
    body = 'account:\n  id: 1\nnumbers:\n  -number: "+14105550101"\n'
    got = one(write(tmp_path, account(body)))
    assert got == (
        "accounts/a.yaml:3:1: numbers: a list item needs a space after the `-`; write - number: "
        '"+14105550101"'
    )


# --- 6. the value as written ---------------------------------------------------------


def test_a_value_is_echoed_as_written(tmp_path):
    body = (
        "account:\n  id: 1\n  status: Stopped\nnumbers:\n  - number: 14105550188\n"
        "  - number: +14105550189\n  - number: 4105550190\n  - number: '+1 410 555 0191'\n"
    )
    assert run(write(tmp_path, account(body))) == [
        "accounts/a.yaml:3:3: account.status: write 'stopped' in lowercase; one of active, "
        "paused, stopped",
        "accounts/a.yaml:5:5: number 14105550188 is not quoted and has no +: YAML reads it as an "
        'integer; write it quoted, with + and the country code: number: "+14105550188"',
        "accounts/a.yaml:6:5: quote the number: YAML reads an unquoted +14105550189 as an "
        'integer (without the +); write number: "+14105550189"',
        "accounts/a.yaml:7:5: number 4105550190 is not quoted and has no +: YAML reads it as an "
        'integer; write it quoted, with + and the country code: number: "+14105550190"',
        "accounts/a.yaml:8:5: not an E.164 number: '+1 410 555 0191'; write it quoted with + and "
        'the country code, digits only, e.g. number: "+14105550101"',
    ]


# --- 7. every duplicate key ------------------------------------------------------------


def test_every_duplicate_key_is_reported_and_the_rest_still_checked(tmp_path):
    body = (
        "account:\n  id: 1\n  status: stopped\n  status: paused\n  name: a\n  name: b\n"
        'numbers:\n  - number: "+14105550101"\n    calls: stopped\n    calls: allowed\n'
        "    swapping: off\n"
    )
    assert run(write(tmp_path, account(body))) == [
        "accounts/a.yaml:4:3: duplicate key 'status' (first at line 3); keep only one",
        "accounts/a.yaml:6:3: duplicate key 'name' (first at line 5); keep only one",
        "accounts/a.yaml:10:5: duplicate key 'calls' (first at line 9); keep only one",
        "accounts/a.yaml:11:5: numbers[1] (+14105550101).swapping: YAML reads off as a boolean "
        "(false), not a word; write swapping: paused (one of active, paused)",
    ]


def test_duplicate_keys_are_reported_with_a_fatal_error_after_them(tmp_path):
    body = "account:\n  id: 1\n  id: 2\n  note: !secret x\n"
    assert run(write(tmp_path, account(body))) == [
        "accounts/a.yaml:3:3: duplicate key 'id' (first at line 2); keep only one",
        "accounts/a.yaml:4:9: YAML tag '!secret' is not allowed; remove the tag (only plain "
        "values, lists and mappings)",
    ]


# --- 8. a missing id hides nothing ----------------------------------------------------


def test_a_missing_id_does_not_hide_the_other_problems(tmp_path):
    files = {
        "accounts/b.yaml": (
            "account:\n  name: Bayside\n  status: disabled\n"
            'numbers:\n  - number: "+14105550101"\n  - number: "+14105550199"\n'
            "    calls: off\n"
        )
    }
    assert run(write(tmp_path, files)) == [
        "accounts/b.yaml:1:1: account: missing `id`; write the provider's account id under "
        "account:, e.g. id: 1001",
        "accounts/b.yaml:3:3: account.status must be one of active, paused, stopped (got disabled)",
        "accounts/b.yaml:5:1: number +14105550101 is listed twice: also at accounts/a.yaml:5; "
        "list each number once, under its account",
        "accounts/b.yaml:7:5: numbers[2] (+14105550199).calls: YAML reads off as a boolean "
        "(false), not a word; write calls: stopped (one of allowed, stopped)",
    ]


def test_a_file_with_errors_still_claims_its_account_id(tmp_path):
    files = {"accounts/b.yaml": "account:\n  id: 1001\n  status: Paused\n"}
    lines = run(write(tmp_path, files))
    assert lines == [
        "accounts/b.yaml:2:1: account id 1001 is also managed in accounts/a.yaml:2; keep one "
        "file per account",
        "accounts/b.yaml:3:3: account.status: write 'paused' in lowercase; one of active, "
        "paused, stopped",
    ]


# --- 9. empty and comment-only files --------------------------------------------------


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (
            "# yaml-language-server: $schema=../../schemas/account.schema.json\n# todo\n",
            "it holds only comments",
        ),
        ("", "the file is empty"),
        ("\n\n   \n", "the file is empty"),
    ],
)
def test_a_file_without_an_account_says_so(tmp_path, content, why):
    result = CliRunner().invoke(
        main, ["validate", "--config", str(write(tmp_path, {"accounts/b.yaml": content}))]
    )
    assert result.exit_code == 1
    assert (
        f"{tmp_path}/cfg/accounts/b.yaml: no `account:` in this file ({why}); write the account "
        "it manages, e.g.\n    account:\n      id: 1001\n"
    ) in result.output


def test_a_file_without_account_but_with_numbers_says_so(tmp_path):
    body = 'numbers:\n  - number: "+14105550155"\n'
    got = run(write(tmp_path, {"accounts/b.yaml": body}))
    assert (
        got[0]
        == "accounts/b.yaml:1:1: no `account:` in this file; write the account it manages first, e.g."
    )


# --- 10. validate checks provider.seed ------------------------------------------------


def test_validate_checks_that_the_seed_exists(tmp_path):
    cfg = write(tmp_path, {"reconciler.yaml": "provider:\n  seed: no-such-fleet.yaml\n"})
    result = CliRunner().invoke(main, ["validate", "--config", str(cfg)])
    assert result.exit_code == 1
    assert f"provider.seed names {cfg}/no-such-fleet.yaml, which is not a file" in result.output


# --- the real entry point ------------------------------------------------------------


def test_python_dash_m_prints_the_hint_without_a_traceback(tmp_path):
    cfg = write(
        tmp_path,
        account('account:\n  id: 1\nnumbers:\n  - number: "+14105550101"\n  calls: stopped\n'),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{cfg}/accounts/a.yaml:5:3: `  calls: stopped` is indented 2 spaces" in proc.stderr
