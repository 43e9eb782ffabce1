"""A big config is parsed in a worker process while live state is read: the same result.

The thresholds are lowered so a small config takes that path; `_can_fork` is forced
because pytest may have threads of its own running (the worker only parses files).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from reconciler import config
from reconciler.config import load_config
from reconciler.errors import ConfigError


def write_config(root: Path, accounts: int, numbers: int) -> Path:
    (root / "accounts").mkdir(parents=True)
    for a in range(accounts):
        lines = [f"account:\n  id: {1001 + a}\n  name: Account {a}\nnumbers:\n"]
        for n in range(numbers):
            lines.append(f'  - number: "+1410{200 + a:03d}{n:04d}"\n')
            if n % 3 == 0:
                lines.append("    calls: stopped\n    note: ended\n")
        (root / "accounts" / f"a{a:03d}.yaml").write_text("".join(lines))
    return root


@pytest.fixture(autouse=True)
def worker_for_small_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "WORKER_MIN_BYTES", 1)
    monkeypatch.setattr(config, "WORKER_CHUNK_BYTES", 500)
    monkeypatch.setattr(config, "_can_fork", lambda: True)


def _load_via_worker(path: Path, caplog: pytest.LogCaptureFixture) -> tuple[object, list[str]]:
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="reconciler.config"):
        state = load_config(str(path), on_account=lambda s, p, account: seen.append(account.id))
    assert "parsing 30 files in a worker process" in caplog.text
    return state, seen


def test_the_worker_gives_the_same_desired_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path / "config", 30, 12)
    here = load_config(str(path))  # no hook: parsed in this process
    there, seen = _load_via_worker(path, caplog)
    assert there == here  # accounts, numbers, sources, digest
    assert seen == list(here.accounts)  # each account announced as it comes, in file order
    for account in here.accounts.values():
        other = there.accounts[account.id]  # type: ignore[attr-defined]
        assert other.field_lines == account.field_lines
        assert [n.field_lines for n in other.numbers] == [n.field_lines for n in account.numbers]


def test_the_worker_reports_the_same_problems(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path / "config", 30, 4)
    (path / "accounts" / "a007.yaml").write_text("account:\n  id: 1007\n  status: off\n")
    (path / "accounts" / "a019.yaml").write_text("account: [\n")
    with pytest.raises(ConfigError) as here:
        load_config(str(path))
    with pytest.raises(ConfigError) as there:
        _load_via_worker(path, caplog)
    assert [str(i) for i in there.value.issues] == [str(i) for i in here.value.issues]
    # a007's id 1007 is a006's too: reported although a007 has another error
    assert [i.message.split(";")[0] for i in here.value.issues] == [
        "account id 1007 is also managed in " + str(path / "accounts" / "a006.yaml") + ":2",
        "account.status: YAML reads off as a boolean (false), not a word",
        "the file ends inside a `[` or `{` that is not closed",
    ]


_load_chunk = config._load_chunk


def _dies_on_a015(paths: list[str], config_dir: str) -> list[object]:
    """config._load_chunk, except that the worker dies on the chunk holding a015.yaml."""
    if any(p.endswith("a015.yaml") for p in paths):
        os._exit(3)  # as if the worker were killed
    return _load_chunk(paths, config_dir)  # type: ignore[return-value]


def test_a_worker_that_dies_is_replaced_by_parsing_here(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path / "config", 30, 12)
    here = load_config(str(path))
    monkeypatch.setattr(config, "_load_chunk", _dies_on_a015)
    there, seen = _load_via_worker(path, caplog)
    assert "the worker process died; parsing the rest here" in caplog.text
    assert there == here and seen == list(here.accounts)
