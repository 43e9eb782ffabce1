"""--shard K/N: every account in exactly one shard, stable when accounts are added."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.shard import in_shard, parse_shard, shard_of

ROOT = Path(__file__).resolve().parent.parent
IDS = [str(1000 + i) for i in range(2000)] + ["acct-x", "0042", "ABC"]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 10, 16, 31, 64])
def test_every_account_lands_in_exactly_one_shard(n):
    for account_id in IDS:
        assert sum(in_shard(account_id, (k, n)) for k in range(1, n + 1)) == 1
    sizes = [sum(shard_of(a, n) == k for a in IDS) for k in range(1, n + 1)]
    assert min(sizes) > 0.5 * len(IDS) / n  # roughly balanced


def test_adding_accounts_does_not_move_existing_ones():
    before = {a: shard_of(a, 8) for a in IDS[:1000]}
    after = {a: shard_of(a, 8) for a in IDS}  # 1,003 more accounts
    assert all(after[a] == s for a, s in before.items())


@pytest.mark.parametrize("bad", ["0/3", "4/3", "1/0", "x", "1-3", "", "-1/2"])
def test_bad_shard_values(bad):
    with pytest.raises(ValueError, match=r"K/N|between 1 and N"):
        parse_shard(bad)


def test_parse():
    assert parse_shard(" 2 / 4 ") == (2, 4)


def test_cli_shards_partition_the_plan(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    monkeypatch.chdir(tmp_path)
    seen: list[str] = []
    for k in (1, 2, 3):
        result = CliRunner().invoke(main, ["plan", "--format", "json", "--shard", f"{k}/3"])
        assert result.exit_code == 0, result.output
        seen += [a["id"] for a in json.loads(result.stdout)["accounts"]]
    assert sorted(seen) == ["1001", "1002", "1003", "1004"]


def test_bad_shard_on_the_cli_exits_1_not_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["plan", "--detailed-exitcode", "--shard", "5/4"])
    assert result.exit_code == 1  # 2 would read as "changes" to a pipeline
    assert "K must be between 1 and N" in result.output
