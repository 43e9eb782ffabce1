"""Config loading and `reconciler validate`: every bad input gets file:line:col and exit 1."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.config import load_config
from reconciler.errors import ConfigError
from reconciler.yamlsafe import load_yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config"

GOOD_ACCOUNT = """\
account:
  id: 1001
  name: Acme Dental
numbers:
  - number: "+14105550101"
  - number: "+14105550102"
    calls: stopped
"""


def make_config(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    """A config dir with the given files (paths relative to it); a good account by default."""
    cfg = tmp_path / "cfg"
    (cfg / "accounts").mkdir(parents=True)
    files = {"accounts/a.yaml": GOOD_ACCOUNT, **files}
    for rel, content in files.items():
        if content is None:
            continue
        path = cfg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")
    return cfg


def validate(cfg: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", "--config", str(cfg)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def account(body: str) -> str:
    return textwrap.dedent(body)


# (id, files, file relative to cfg, line, message fragment)
BAD_CASES = [
    (
        "unknown-account-key",
        {"accounts/a.yaml": "account:\n  id: 1\n  stauts: stopped\n"},
        "accounts/a.yaml",
        3,
        "unknown key 'stauts'; did you mean 'status'?",
    ),
    (
        "unknown-top-key",
        {"accounts/a.yaml": "account:\n  id: 1\nnumber:\n  - number: '+14105550101'\n"},
        "accounts/a.yaml",
        3,
        "unknown key 'number'; did you mean 'numbers'?",
    ),
    (
        "unknown-number-key",
        {
            "accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '+14105550101'\n    active: false\n"
        },
        "accounts/a.yaml",
        4,
        "unknown key 'active'",
    ),
    (
        "duplicate-key",
        {"accounts/a.yaml": "account:\n  id: 1\n  status: active\n  status: stopped\n"},
        "accounts/a.yaml",
        4,
        "duplicate key 'status' (first at line 3)",
    ),
    (
        "calls-off",
        {
            "accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '+14105550101'\n    calls: off\n"
        },
        "accounts/a.yaml",
        4,
        "write calls: stopped",
    ),
    (
        "calls-on",
        {
            "accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '+14105550101'\n    calls: on\n"
        },
        "accounts/a.yaml",
        4,
        "write calls: allowed",
    ),
    (
        "swapping-no",
        {
            "accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '+14105550101'\n    swapping: no\n"
        },
        "accounts/a.yaml",
        4,
        "write swapping: paused",
    ),
    (
        "status-capitalised",
        {"accounts/a.yaml": "account:\n  id: 1\n  status: Stopped\n"},
        "accounts/a.yaml",
        3,
        "write 'stopped' in lowercase; one of active, paused, stopped",
    ),
    (
        "status-unknown",
        {"accounts/a.yaml": "account:\n  id: 1\n  status: disabled\n"},
        "accounts/a.yaml",
        3,
        "account.status must be one of active, paused, stopped (got disabled)",
    ),
    (
        "number-unquoted",
        {"accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: +14105550101\n"},
        "accounts/a.yaml",
        3,
        'quote the number: YAML reads an unquoted +14105550101 as an integer (without the +); write number: "+14105550101"',
    ),
    (
        "number-no-plus",
        {"accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '4105550101'\n"},
        "accounts/a.yaml",
        3,
        "not an E.164 number: '4105550101'",
    ),
    (
        "number-dashes",
        {"accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '+1-410-555-0101'\n"},
        "accounts/a.yaml",
        3,
        "not an E.164 number",
    ),
    (
        "number-too-long",
        {"accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '+1410555010112345'\n"},
        "accounts/a.yaml",
        3,
        "not an E.164 number",
    ),
    (
        "number-twice-same-file",
        {
            "accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '+14105550101'\n  - number: '+14105550101'\n"
        },
        "accounts/a.yaml",
        4,
        "number +14105550101 is listed twice: also at {cfg}/accounts/a.yaml:3",
    ),
    (
        "number-twice-two-files",
        {"accounts/b.yaml": "account: {id: 2}\nnumbers:\n  - number: '+14105550102'\n"},
        "accounts/b.yaml",
        3,
        "number +14105550102 is listed twice: also at {cfg}/accounts/a.yaml:6",
    ),
    (
        "account-in-two-files",
        {"accounts/b.yaml": "account:\n  id: '1001'\n"},
        "accounts/b.yaml",
        2,
        "account id 1001 is also managed in {cfg}/accounts/a.yaml:2",
    ),
    (
        "until-on-active-account",
        {"accounts/a.yaml": "account:\n  id: 1\n  until: 2027-01-01T00:00:00Z\n"},
        "accounts/a.yaml",
        3,
        "from/until only apply to a stop or pause: set status: stopped or paused",
    ),
    (
        "until-on-allowed-number",
        {
            "accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '+14105550101'\n    until: 2027-01-01T00:00:00Z\n"
        },
        "accounts/a.yaml",
        4,
        "from/until only apply to a stop or pause: set calls: stopped",
    ),
    (
        "from-on-active-account",
        {"accounts/a.yaml": "account:\n  id: 1\n  from: 2027-01-01T00:00:00Z\n"},
        "accounts/a.yaml",
        3,
        "from/until only apply to a stop or pause: set status: stopped or paused",
    ),
    (
        "from-not-before-until",
        {
            "accounts/a.yaml": "account:\n  id: 1\n  status: stopped\n"
            "  from: 2027-01-02T00:00:00Z\n  until: 2027-01-01T00:00:00Z\n"
        },
        "accounts/a.yaml",
        4,
        "from must be before until",
    ),
    (
        "from-equal-until-number",
        {
            "accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - number: '+14105550101'\n"
            "    calls: stopped\n    from: 2027-01-01T00:00:00Z\n    until: 2027-01-01T00:00:00Z\n"
        },
        "accounts/a.yaml",
        5,
        "from must be before until",
    ),
    (
        "until-beyond-utc",
        {
            "accounts/a.yaml": "account:\n  id: 1\n  status: stopped\n"
            "  until: '9999-12-31T23:59:59-23:59'\n"
        },
        "accounts/a.yaml",
        4,
        "until is outside the times UTC can represent",
    ),
    (
        "from-before-utc",
        {
            "accounts/a.yaml": "account:\n  id: 1\n  status: stopped\n"
            "  from: '0001-01-01T00:00:00+01:00'\n"
        },
        "accounts/a.yaml",
        4,
        "from is outside the times UTC can represent",
    ),
    (
        "until-leap-second",
        {
            "accounts/a.yaml": "account:\n  id: 1\n  status: stopped\n"
            "  until: '2026-12-31T23:59:60Z'\n"
        },
        "accounts/a.yaml",
        4,
        "until: a leap second (:60) cannot be represented; write the second before (:59)",
    ),
    (
        "from-without-timezone",
        {"accounts/a.yaml": "account:\n  id: 1\n  status: paused\n  from: 2027-01-01T00:00:00\n"},
        "accounts/a.yaml",
        4,
        "from needs a timezone: write e.g. from:",
    ),
    (
        "until-garbage",
        {"accounts/a.yaml": "account:\n  id: 1\n  status: stopped\n  until: next tuesday\n"},
        "accounts/a.yaml",
        4,
        "until must be an ISO-8601 time with timezone, e.g. until: 2026-12-01T17:00:00Z",
    ),
    (
        "until-no-timezone",
        {"accounts/a.yaml": "account:\n  id: 1\n  status: stopped\n  until: 2027-01-01T00:00:00\n"},
        "accounts/a.yaml",
        4,
        "until needs a timezone",
    ),
    (
        "missing-id",
        {"accounts/a.yaml": "account:\n  name: Acme\n"},
        "accounts/a.yaml",
        1,
        "account: missing `id`; write the provider's account id under account:, e.g. id: 1001",
    ),
    (
        "missing-account",
        {"accounts/a.yaml": "numbers: []\n"},
        "accounts/a.yaml",
        1,
        "no `account:` in this file; write the account it manages first, e.g.",
    ),
    (
        "numbers-not-list",
        {"accounts/a.yaml": "account: {id: 1}\nnumbers:\n  number: '+14105550101'\n"},
        "accounts/a.yaml",
        2,
        "numbers must be a list",
    ),
    (
        "number-entry-string",
        {"accounts/a.yaml": "account: {id: 1}\nnumbers:\n  - '+14105550101'\n"},
        "accounts/a.yaml",
        3,
        "numbers[1] must be a mapping of keys (got '+14105550101'); write each item as `number:`",
    ),
    (
        "protected-not-bool",
        {"accounts/a.yaml": "account:\n  id: 1\n  protected: yes please\n"},
        "accounts/a.yaml",
        3,
        "account.protected: write true or false",
    ),
    (
        "python-tag",
        {"accounts/a.yaml": "account:\n  id: !!python/object/apply:os.system ['true']\n"},
        "accounts/a.yaml",
        2,
        "is not allowed; remove the tag",
    ),
    (
        "custom-tag",
        {"accounts/a.yaml": "account:\n  id: 1\n  note: !secret x\n"},
        "accounts/a.yaml",
        3,
        "YAML tag '!secret' is not allowed",
    ),
    (
        "alias-bomb",
        {
            "accounts/a.yaml": "".join(
                [
                    f"{c}: &{c} [{','.join([('*' + chr(ord(c) - 1)) if c > 'a' else '1'] * 9)}]\n"
                    for c in "abcdefghi"
                ]
            )
        },
        "accounts/a.yaml",
        0,
        "alias bomb",
    ),
    (
        "huge-file",
        {"accounts/a.yaml": b"# " + b"x" * (10 * 1024 * 1024) + b"\n"},
        "accounts/a.yaml",
        0,
        "the limit is 10 MiB",
    ),
    (
        "latin1",
        {"accounts/a.yaml": "account:\n  id: 1\n  name: Caf\xe9\n".encode("latin-1")},
        "accounts/a.yaml",
        3,
        "not UTF-8 text (byte 0xe9); save it as UTF-8",
    ),
    (
        "binary",
        {"accounts/a.yaml": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"},
        "accounts/a.yaml",
        0,
        "binary file",
    ),
    (
        "empty-file",
        {"accounts/a.yaml": ""},
        "accounts/a.yaml",
        0,
        "no `account:` in this file (the file is empty); write the account it manages, e.g.",
    ),
    (
        "file-is-list",
        {"accounts/a.yaml": "- account: {id: 1}\n"},
        "accounts/a.yaml",
        1,
        "file is a list",
    ),
    (
        "two-documents",
        {"accounts/a.yaml": "account: {id: 1}\n---\naccount: {id: 2}\n"},
        "accounts/a.yaml",
        2,
        "one YAML document per file",
    ),
    (
        "syntax-error",
        {"accounts/a.yaml": "account:\n  id: 1\n name: x\n"},
        "accounts/a.yaml",
        3,
        "` name: x` is indented 1 space, under no key above it; indent it 2 spaces (under `id:`",
    ),
    (
        "tab-indent",
        {"accounts/a.yaml": "account:\n\tid: 1\n"},
        "accounts/a.yaml",
        2,
        "indent with spaces, not tabs",
    ),
    (
        "merge-key",
        {"accounts/a.yaml": "base: &b {id: 1}\naccount:\n  <<: *b\n"},
        "accounts/a.yaml",
        3,
        "merge keys (<<) are not supported",
    ),
    (
        "id-bool",
        {"accounts/a.yaml": "account:\n  id: yes\n"},
        "accounts/a.yaml",
        2,
        "account id must be a number or a non-empty string",
    ),
    (
        "note-not-text",
        {"accounts/a.yaml": "account:\n  id: 1\n  note: 12.5\n"},
        "accounts/a.yaml",
        3,
        'account.note must be text; YAML reads 12.5 as a number: quote it, note: "12.5"',
    ),
    (
        "settings-unknown-key",
        {"reconciler.yaml": "policy:\n  max_change_fraction: 0.3\n  unmanged: report\n"},
        "reconciler.yaml",
        3,
        "unknown key 'unmanged'; did you mean 'unmanaged'?",
    ),
    (
        "settings-unmanaged-enum",
        {"reconciler.yaml": "policy:\n  unmanaged: warn\n"},
        "reconciler.yaml",
        2,
        "unmanaged must be one of ignore, report, error",
    ),
    (
        "settings-fraction-range",
        {"reconciler.yaml": "policy:\n  max_change_fraction: 2\n"},
        "reconciler.yaml",
        2,
        "policy.max_change_fraction must be a number at least 0 and at most 1 (2 is out of range); write e.g. max_change_fraction: 0.3",
    ),
    (
        "settings-http-remote",
        {"reconciler.yaml": "provider:\n  type: ctm\n  base_url: http://api.example.com/api/v1\n"},
        "reconciler.yaml",
        3,
        "base_url must be an https:// URL",
    ),
    (
        "settings-currency",
        {"reconciler.yaml": "billing:\n  currency: usd\n"},
        "reconciler.yaml",
        2,
        "billing.currency",
    ),
    (
        "settings-concurrency-string",
        {"reconciler.yaml": "provider:\n  concurrency: '8'\n"},
        "reconciler.yaml",
        2,
        "provider.concurrency",
    ),
    (
        "settings-provider-type",
        {"reconciler.yaml": "provider:\n  type: twilio\n"},
        "reconciler.yaml",
        2,
        "type must be one of sandbox, ctm",
    ),
    (
        "settings-fee-not-money",
        {"reconciler.yaml": "billing:\n  default_number_monthly_fee: three\n"},
        "reconciler.yaml",
        2,
        'billing.default_number_monthly_fee must be an amount of money, at most 2 decimals (got three); write e.g. default_number_monthly_fee: "3.00"',
    ),
    (
        "no-account-files",
        {"accounts/a.yaml": None},
        "accounts",
        0,
        "no account files (*.yaml, *.yml)",
    ),
]


@pytest.mark.parametrize(
    ("files", "rel", "line", "fragment"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_is_located_and_exits_1(tmp_path, files, rel, line, fragment):
    cfg = make_config(tmp_path, files)
    code, out = validate(cfg)
    assert code == 1, out
    location = f"{cfg}/{rel}:{line}:" if line else f"{cfg}/{rel}"
    matching = [ln for ln in out.splitlines() if ln.startswith(location)]
    assert matching, f"no line starting with {location!r} in:\n{out}"
    assert any(fragment.format(cfg=cfg) in ln for ln in matching), out
    assert "Error: config is invalid" in out


def test_all_problems_of_a_run_are_listed(tmp_path):
    cfg = make_config(
        tmp_path,
        {
            "accounts/a.yaml": "account:\n  id: 1\n  status: Stopped\nnumbers:\n  - number: +14105550101\n",
            "accounts/b.yaml": "account:\n  id: 2\n  colour: red\n",
            "reconciler.yaml": "policy:\n  unmanaged: warn\n",
        },
    )
    code, out = validate(cfg)
    assert code == 1
    assert f"{cfg}/accounts/a.yaml:3:" in out and f"{cfg}/accounts/a.yaml:5:" in out
    assert f"{cfg}/accounts/b.yaml:3:" in out and f"{cfg}/reconciler.yaml:2:" in out
    assert "(4 problems)" in out


def test_missing_config_dir(tmp_path):
    code, out = validate(tmp_path / "nope")
    assert code == 1 and "config directory not found" in out


def test_example_config_is_valid():
    code, out = validate(EXAMPLE)
    assert code == 0, out
    assert "valid (4 accounts, 14 numbers, provider sandbox)" in out


def test_desired_state_from_example():
    desired = load_config(str(EXAMPLE))
    assert set(desired.accounts) == {"1001", "1002", "1003", "1004"}
    acme = desired.accounts["1001"]
    assert acme.name == "Acme Dental" and acme.status == "active"
    stopped = next(n for n in acme.numbers if n.number == "+14105550102")
    assert stopped.calls == "stopped" and stopped.source.line == 11
    assert stopped.field_lines["calls"] == 12
    bayside = desired.accounts["1002"].numbers[1]
    assert bayside.until is not None and bayside.until.isoformat() == "2027-01-05T08:00:00+00:00"
    assert desired.digest.startswith("sha256:") and len(desired.digest) == 71


def test_digest_changes_with_content(tmp_path):
    cfg = make_config(tmp_path, {})
    first = load_config(str(cfg)).digest
    (cfg / "accounts" / "a.yaml").write_text(GOOD_ACCOUNT.replace("Acme Dental", "Acme"))
    assert load_config(str(cfg)).digest != first


@pytest.mark.parametrize(
    "content",
    [
        "account:\n  id: acct-7\n",
        "account:\n  id: 7\n  status: paused\n  until: '2027-01-01T00:00:00+02:00'\n",
        "account: {id: 7}\nnumbers:\n  - number: '+442071838750'\n    swapping: paused\n    until: 2027-01-01T00:00:00Z\n",
        "account: {id: 7, protected: true}\nnumbers: []\n",
        '\ufeffaccount:\n  id: 7\n  note: "caf\u00e9 \u2014 ok"\n',
    ],
)
def test_valid_variants(tmp_path, content):
    cfg = make_config(tmp_path, {"accounts/a.yaml": content})
    code, out = validate(cfg)
    assert code == 0, out


def test_yml_extension_and_settings_defaults(tmp_path):
    cfg = make_config(tmp_path, {"accounts/a.yaml": None, "accounts/b.yml": GOOD_ACCOUNT})
    desired = load_config(str(cfg))
    assert list(desired.accounts) == ["1001"]
    assert desired.settings.provider.type == "sandbox"
    assert desired.settings.policy.max_change_fraction == 0.3
    assert str(desired.settings.billing.default_fee) == "3.00"


def test_alias_bomb_fails_fast(tmp_path):
    import time

    lines = ["a: &a [" + ",".join(["lol"] * 9) + "]"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(Exception, match="alias bomb"):
        load_yaml(str(path))
    assert time.perf_counter() - start < 5  # generous: the real figure is ~0.1 s


def test_config_error_lists_issues_sorted(tmp_path):
    cfg = make_config(tmp_path, {"accounts/a.yaml": "account:\n  id: 1\n  x: 1\n  y: 2\n"})
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg))
    assert [i.line for i in info.value.issues] == [3, 4]


# --- JSON Schemas ----------------------------------------------------------------------


def test_checked_in_schemas_are_up_to_date():
    result = CliRunner().invoke(main, ["schema", "--out", str(ROOT / "schemas"), "--check"])
    assert result.exit_code == 0, result.output


def test_schema_check_detects_stale(tmp_path):
    shutil.copytree(ROOT / "schemas", tmp_path / "s")
    (tmp_path / "s" / "account.schema.json").write_text("{}\n")
    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path / "s"), "--check"])
    assert result.exit_code == 1 and "account.schema.json: out of date" in result.output
    assert "plan.schema.json" not in result.output


def test_schema_check_of_an_empty_directory_says_missing(tmp_path):
    (tmp_path / "s").mkdir()
    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path / "s"), "--check"])
    assert result.exit_code == 1
    assert "account.schema.json: missing" in result.output and "out of date" not in result.output
    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0 and "wrote" in result.output
    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path / "s"), "--check"])
    assert result.exit_code == 0, result.output


def test_schema_out_under_a_regular_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path / "file" / "s")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(tmp_path / "file") in result.output


def _schema(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / name).read_text()))


def test_example_files_pass_an_independent_validator():
    account_schema = _schema("account.schema.json")
    for path in sorted((EXAMPLE / "accounts").glob("*.yaml")):
        data = load_yaml(str(path)).data
        assert not list(account_schema.iter_errors(data)), path
    settings = load_yaml(str(EXAMPLE / "reconciler.yaml")).data
    assert not list(_schema("settings.schema.json").iter_errors(settings))


SCHEMA_REJECTS = [
    c
    for c in BAD_CASES
    if c[0]
    in {
        "unknown-account-key",
        "unknown-top-key",
        "unknown-number-key",
        "calls-off",
        "status-capitalised",
        "status-unknown",
        "number-unquoted",
        "number-no-plus",
        "number-dashes",
        "until-on-active-account",
        "until-on-allowed-number",
        "missing-id",
        "missing-account",
        "numbers-not-list",
        "number-entry-string",
        "protected-not-bool",
        "id-bool",
        "note-not-text",
    }
]


@pytest.mark.parametrize("case", SCHEMA_REJECTS, ids=[c[0] for c in SCHEMA_REJECTS])
def test_schema_agrees_with_loader_on_bad_files(tmp_path, case):
    path = tmp_path / "a.yaml"
    path.write_text(case[1]["accounts/a.yaml"])
    data = load_yaml(str(path)).data
    assert list(_schema("account.schema.json").iter_errors(data)), "schema accepted a bad file"


def test_example_files_carry_the_schema_modeline():
    for path in (EXAMPLE / "accounts").glob("*.yaml"):
        assert path.read_text().startswith(
            "# yaml-language-server: $schema=../../schemas/account.schema.json\n"
        )
    assert (
        (EXAMPLE / "reconciler.yaml")
        .read_text()
        .startswith("# yaml-language-server: $schema=../schemas/settings.schema.json\n")
    )


@pytest.mark.parametrize("kind", ["dangling", "loop", "directory"])
def test_an_account_file_that_is_not_a_file_is_an_error_not_skipped(tmp_path, kind):
    cfg = tmp_path / "cfg"
    (cfg / "accounts").mkdir(parents=True)
    (cfg / "accounts" / "a.yaml").write_text("account:\n  id: 1\n")
    bad = cfg / "accounts" / "b.yaml"
    if kind == "dangling":
        bad.symlink_to(tmp_path / "gone.yaml")
    elif kind == "loop":
        bad.symlink_to(bad)
    else:
        bad.mkdir()
    result = CliRunner().invoke(main, ["validate", "--config", str(cfg)])
    assert result.exit_code == 1
    expected = {
        "dangling": "a dangling symlink",
        "loop": "a symlink loop",
        "directory": "a directory, not a file",
    }[kind]
    assert f"{bad}: {expected}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["dangling", "directory"])
def test_a_settings_file_that_is_not_a_file_never_falls_back_to_defaults(tmp_path, kind):
    cfg = tmp_path / "cfg"
    (cfg / "accounts").mkdir(parents=True)
    (cfg / "accounts" / "a.yaml").write_text("account:\n  id: 1\n")
    settings = cfg / "reconciler.yaml"
    if kind == "dangling":
        settings.symlink_to(tmp_path / "elsewhere.yaml")
    else:
        settings.mkdir()
    result = CliRunner().invoke(main, ["plan", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "the settings file must be a regular file" in result.output
    assert not (tmp_path / ".reconciler").exists()  # no sandbox seeded from defaults
