"""Reading ahead: the engine hands accounts to the HTTP provider while the config loads.

The plan and the request count must be exactly those of loading first and reading after;
only accounts in scope are read; a config error still wins, and nothing is left running.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconciler import config as config_module
from reconciler.config import load_config
from reconciler.engine import make_plan, open_for
from reconciler.errors import ConfigError, ProviderAuthError
from reconciler.providers.ctm import CtmProvider
from reconciler.providers.sandbox.fleet import init_database
from reconciler.providers.sandbox.server import RunningServer, start_server

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)
KEYS = {"CTM_ACCESS_KEY": "ak", "CTM_SECRET_KEY": "sk-read-ahead"}


@pytest.fixture
def served_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, RunningServer]]:
    """The example config pointed at `sandbox serve` over its own seed fleet."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    db = tmp_path / "live.db"
    init_database(db, config / "sandbox-fleet.yaml")
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    with start_server(
        db, access_key=KEYS["CTM_ACCESS_KEY"], secret_key=KEYS["CTM_SECRET_KEY"]
    ) as server:
        (config / "reconciler.yaml").write_text(
            f"provider:\n  type: ctm\n  base_url: {server.url}\n  requests_per_second: 1000\n"
        )
        yield config, server


@pytest.fixture
def prefetched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The account ids handed to CtmProvider.prefetch, in order."""
    seen: list[str] = []
    original = CtmProvider.prefetch

    def spy(self: CtmProvider, account_id: str) -> None:
        seen.append(account_id)
        original(self, account_id)

    monkeypatch.setattr(CtmProvider, "prefetch", spy)
    return seen


def _ctm_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ctm")]


@pytest.mark.parametrize(
    ("accounts", "shard", "expected"),
    [
        ((), None, ["1001", "1002", "1003", "1004"]),
        (("1002",), None, ["1002"]),
        ((), (1, 2), None),  # whatever shard 1 of 2 holds, and nothing else
    ],
)
def test_the_plan_and_the_requests_are_those_of_reading_after_loading(
    served_config: tuple[Path, RunningServer],
    prefetched: list[str],
    accounts: tuple[str, ...],
    shard: tuple[int, int] | None,
    expected: list[str] | None,
) -> None:
    config, server = served_config
    desired = load_config(str(config))
    with open_for(desired) as provider:  # loaded first, read after: no read-ahead
        after = make_plan(
            str(config), accounts, provider=provider, desired=desired, shard=shard, now=NOW
        )
    requests_after = server.stats.snapshot()["total"]
    assert prefetched == []
    server.reset_stats()

    ahead = make_plan(str(config), accounts, shard=shard, now=NOW)
    ahead.provider.close()

    assert server.stats.snapshot()["total"] == requests_after
    assert ahead.plan.to_json_dict() == after.plan.to_json_dict()
    assert prefetched == (expected if expected is not None else list(ahead.desired.accounts))
    assert prefetched and _ctm_threads() == []


def test_a_big_config_parsed_in_a_worker_plans_the_same(
    served_config: tuple[Path, RunningServer],
    prefetched: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The example config is made "big" so that it is parsed in a worker process."""
    config, server = served_config
    desired = load_config(str(config))
    with open_for(desired) as provider:
        after = make_plan(str(config), provider=provider, desired=desired, now=NOW)
    requests_after = server.stats.snapshot()["total"]
    server.reset_stats()
    monkeypatch.setattr(config_module, "WORKER_MIN_BYTES", 1)
    monkeypatch.setattr(config_module, "_can_fork", lambda: True)  # server threads run here
    with caplog.at_level(logging.DEBUG, logger="reconciler.config"):
        ahead = make_plan(str(config), now=NOW)
    ahead.provider.close()
    assert "parsing 4 files in a worker process" in caplog.text
    assert server.stats.snapshot()["total"] == requests_after
    assert ahead.plan.to_json_dict() == after.plan.to_json_dict()
    assert prefetched == ["1001", "1002", "1003", "1004"]


def test_a_config_error_wins_and_nothing_is_left_running(
    served_config: tuple[Path, RunningServer], prefetched: list[str]
) -> None:
    config, _ = served_config
    (config / "accounts" / "zz-broken.yaml").write_text("account:\n  id: 1999\n  status: off\n")
    with pytest.raises(ConfigError):
        make_plan(str(config))
    assert prefetched  # the files before the broken one were being read
    assert _ctm_threads() == []


def test_a_missing_key_is_reported_after_the_config_is_checked(
    served_config: tuple[Path, RunningServer],
    prefetched: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, server = served_config
    monkeypatch.delenv("CTM_SECRET_KEY")
    (config / "accounts" / "zz-broken.yaml").write_text("account:\n  id: 1999\n  status: off\n")
    with pytest.raises(ConfigError):
        make_plan(str(config))
    (config / "accounts" / "zz-broken.yaml").unlink()
    with pytest.raises(ProviderAuthError, match="CTM_SECRET_KEY is not set"):
        make_plan(str(config))
    assert prefetched == [] and server.stats.snapshot()["total"] == 0


def test_the_sandbox_is_not_opened_before_the_config_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "accounts" / "zz-broken.yaml").write_text("account:\n  id: 1999\n  status: off\n")
    with pytest.raises(ConfigError):
        make_plan(str(config))
    assert not (tmp_path / ".reconciler" / "sandbox.db").exists()  # not seeded early
