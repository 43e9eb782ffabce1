"""Fuzzed provider answers through the real CLI (issue 13): whatever the provider sends,
`apply` never shows a traceback and never writes outside the plan it showed.

Each example poisons one kind of read (the account list, one account, or a numbers page)
with one hostile change: a field set to a random JSON value, a field removed, random bytes,
or random page counts. `apply --auto-approve --force` then runs against `sandbox serve`
behind tests/hostile_server.py on a fresh copy of the database; every write the database
recorded must be an action of the apply's own report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hostile_server import Scenario, hostile, replaced
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli_e2e import run
from test_hostile_provider import ACCESS, SECRET, write_settings

from reconciler.cli import main
from reconciler.providers.sandbox.server import start_server
from reconciler.providers.sandbox.store import SandboxStore

pytestmark = pytest.mark.slow

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
ROUTES = ["/accounts", "/accounts/100", "/numbers"]
KEYS = ["total_pages", "total_entries", "per_page", "next_page", "page"]


@st.composite
def poisons(draw: Any) -> tuple[str, Scenario]:
    route = draw(st.sampled_from(ROUTES))
    kind = draw(st.sampled_from(["field", "drop", "bytes", "paging"]))
    if kind == "bytes":
        return route, replaced(draw(st.binary(max_size=200)))
    pick, value = draw(st.integers(0, 10**6)), draw(values)
    key = draw(st.sampled_from(KEYS))

    def poison(data: Any) -> Any:
        if kind == "paging":
            data[key] = value
            return data
        items = data.get("numbers") or data.get("accounts") or [data]
        item = items[pick % len(items)]
        if isinstance(item, dict) and item:
            name = sorted(item)[pick % len(item)]
            if kind == "drop":
                del item[name]
            else:
                item[name] = value
        return data

    return route, replaced(poison)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project with its sandbox database seeded once."""
    root = tmp_path_factory.mktemp("seeded")
    shutil.copytree(Path(__file__).resolve().parent.parent / "config", root / "config")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert run("plan")[0] == 0
    return root


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(poison=poisons())
def test_no_answer_gives_a_traceback_or_a_write_outside_the_plan(
    seeded, tmp_path_factory, monkeypatch, poison
):
    route, scenario = poison
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(seeded / "config", root / "config")
    db = root / "live.db"
    shutil.copy(seeded / ".reconciler" / "sandbox.db", db)
    monkeypatch.chdir(root)
    monkeypatch.setenv("CTM_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("CTM_SECRET_KEY", SECRET)
    with (
        start_server(db, access_key=ACCESS, secret_key=SECRET) as server,
        hostile(server.url) as bad,
    ):
        write_settings(root, bad.url)
        bad.rules = [("GET", route, scenario)]
        result = CliRunner().invoke(
            main, ["apply", "--auto-approve", "--force", "--report", "r.json"]
        )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output and result.exit_code in (0, 1), result.output
    with SandboxStore(db) as store:
        written = {w["resource"] for w in store.audit()}
    report = root / "r.json"
    planned = (
        {a["address"] for a in json.loads(report.read_text())["actions"]}
        if report.exists()
        else set()
    )
    assert written <= planned, (written - planned, result.output)
