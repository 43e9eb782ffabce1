"""API fuzzing: schemathesis against a real sandbox server, checked against the OpenAPI document.

Every operation of `schemas/provider-api.openapi.yaml` (GET and POST, plain and `.json`) gets
schemathesis' phases (its coverage phase: boundary and invalid values, missing and unexpected
parameters, undeclared methods; then fuzzing, positive and negative inputs) sent over real
HTTP to `start_server` on 127.0.0.1. Every response must conform to the document: no 5xx,
a documented status code, `application/json`, the documented body schema and headers.
Runs are reproducible: a fixed seed, derandomized Hypothesis, no example database.

The fleet adds accounts and numbers whose ids ("0", "1", "A") are the ones generation tends to
produce, so fuzzed requests reach real rows (200, 409) and not only 404s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from conftest import ACCESS_KEY, SECRET_KEY, small_fleet
from schemathesis import Config
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reconciler.providers.sandbox.fleet import init_database
from reconciler.providers.sandbox.server import RunningServer, start_server

DOCUMENT = Path(__file__).resolve().parents[1] / "schemas" / "provider-api.openapi.yaml"
SEED = 20261126
DEFAULT_EXAMPLES = 50  # per operation and fuzzing run; the coverage phase adds its own cases
SLOW_EXAMPLES = 300


def _config(max_examples: int, auth: bool) -> Config:
    data: dict[str, Any] = {
        "seed": SEED,
        "generation": {
            "mode": "all",  # positive and negative inputs
            "max-examples": max_examples,
            "deterministic": True,
            "database": "none",
        },
    }
    if auth:
        data["auth"] = {"basic": {"username": ACCESS_KEY, "password": SECRET_KEY}}
    return Config.from_dict(data)


def _schema(max_examples: int, auth: bool) -> Any:
    return schemathesis.openapi.from_path(DOCUMENT, config=_config(max_examples, auth))


with_auth = _schema(DEFAULT_EXAMPLES, auth=True)
with_auth_slow = _schema(SLOW_EXAMPLES, auth=True)
# The `.json` twins run the same code as their plain paths: fuzzed once above is enough here.
without_auth = _schema(25, auth=False).exclude(path_regex=r"\.json$")
under_faults = _schema(20, auth=True).exclude(path_regex=r"\.json$")

CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# examples run per (test, operation), and response statuses, for the summary at the end
EXAMPLES: Counter[tuple[str, str]] = Counter()
STATUSES: Counter[tuple[str, int]] = Counter()


def _fuzz_fleet() -> dict[str, Any]:
    fleet = small_fleet()
    online, offline = {"name": "Website", "online": True}, {"name": "Print", "online": False}
    fleet["accounts"] += [
        {
            "id": 0,
            "name": "Zero",
            "numbers": [
                {"id": "0", "number": "+14105550900", "source": online},
                {"id": "1", "number": "+14105550901", "source": offline},  # pause: 409
            ],
        },
        {
            "id": "A",
            "name": "Letter",
            "numbers": [{"id": "A", "number": "+14105550902", "source": online}],
        },
    ]
    return fleet


def _serve(tmp: Path) -> RunningServer:
    (tmp / "fleet.yaml").write_text(yaml.safe_dump(_fuzz_fleet(), sort_keys=False))
    init_database(tmp / "fuzz.db", tmp / "fleet.yaml")
    return start_server(tmp / "fuzz.db", access_key=ACCESS_KEY, secret_key=SECRET_KEY)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with _serve(tmp_path_factory.mktemp("fuzz")) as running:
        yield running
        _print_summary(running, "default", "slow")


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own for the runs without credentials: its audit must stay empty."""
    with _serve(tmp_path_factory.mktemp("fuzz-noauth")) as running:
        yield running
        _print_summary(running, "no-auth")


@pytest.fixture(scope="module")
def faulty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Injected 503s and a tight rate limit (429s); seeded dice."""
    tmp = tmp_path_factory.mktemp("fuzz-faults")
    (tmp / "fleet.yaml").write_text(yaml.safe_dump(_fuzz_fleet(), sort_keys=False))
    init_database(tmp / "fuzz.db", tmp / "fleet.yaml")
    with start_server(
        tmp / "fuzz.db",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        error_rate=0.2,
        rate_limit=100,
        rng_seed=SEED,
    ) as running:
        yield running
        _print_summary(running, "faults")


def _print_summary(server: RunningServer, *tests: str) -> None:
    """Figures for `pytest -s`: examples run, statuses seen, the server's own counts."""
    stats = server.stats.snapshot()
    for test in tests:
        examples = {label: n for (t, label), n in EXAMPLES.items() if t == test}
        statuses = {status: n for (t, status), n in sorted(STATUSES.items()) if t == test}
        if examples:
            print(
                f"\nfuzz {test}: {sum(examples.values())} examples over {len(examples)} "
                f"operations (min {min(examples.values())}), statuses {statuses}"
            )
    print(f"  server: {stats['total']} requests (checks probe too), faults {stats['faults']}")


def _record(test: str, case: Any, status: int) -> None:
    EXAMPLES[(test, case.operation.label)] += 1
    STATUSES[(test, status)] += 1


# --- with credentials ----------------------------------------------------------------------


@with_auth.parametrize()
def test_every_operation_conforms(case: Any, server: RunningServer) -> None:
    """No 5xx; status code, content type, body and headers as the document says."""
    response = case.call_and_validate(base_url=server.url)
    _record("default", case, response.status_code)


@pytest.mark.slow
@with_auth_slow.parametrize()
def test_every_operation_conforms_many_examples(case: Any, server: RunningServer) -> None:
    response = case.call_and_validate(base_url=server.url)
    _record("slow", case, response.status_code)


# --- without credentials ---------------------------------------------------------------------


@without_auth.parametrize()
def test_without_credentials_every_operation_is_401(
    case: Any, locked_server: RunningServer
) -> None:
    """Whatever is sent without credentials: a documented 401 with a challenge, nothing written."""
    with requests.Session() as session:  # no auth: nothing for requests to add
        response = case.call_and_validate(base_url=locked_server.url, session=session)
    _record("no-auth", case, response.status_code)
    if response.status_code != 405:  # an undeclared method is refused before auth matters
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"][0].startswith("Basic ")
    assert locked_server.store.audit() == []


# --- under injected faults -------------------------------------------------------------------


@under_faults.parametrize()
def test_injected_503_and_429_conform_too(case: Any, faulty_server: RunningServer) -> None:
    """The refusals a client must ride out are documented: JSON error and Retry-After.

    Only the conformance checks: the probing ones (auth enforced, bad input rejected) would
    meet the 503s and 429s that are, by design, answered before auth and validation.
    """
    response = case.call_and_validate(base_url=faulty_server.url, checks=CONFORMANCE)
    _record("faults", case, response.status_code)
    if response.status_code in (429, 503):
        assert int(response.headers["retry-after"][0]) >= 1
    else:
        assert response.status_code < 500, response.text
