"""The sandbox HTTP server: real HTTP on 127.0.0.1 ephemeral ports, real SQLite."""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml
from openapi_spec_validator import validate as validate_openapi

from reconciler.providers.sandbox.create import create_database
from reconciler.providers.sandbox.server import RunningServer, start_server
from reconciler.providers.sandbox.store import Row, SandboxStore

REPO = Path(__file__).resolve().parents[1]
OPENAPI = yaml.safe_load((REPO / "schemas" / "provider-api.openapi.yaml").read_text())
AUTH = ("test-access", "test-secret")


def conforms(schema_name: str, payload: Any) -> None:
    """Validate a response body against a component schema of the OpenAPI document."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": OPENAPI["components"]}
    jsonschema.Draft202012Validator(schema).validate(payload)


def test_the_openapi_document_is_valid() -> None:
    validate_openapi(OPENAPI)
    for path in ("/accounts", "/accounts/{account_id}/numbers/{number_id}/update_number"):
        assert path in OPENAPI["paths"] and f"{path}.json" in OPENAPI["paths"]


# --- reads, envelopes and conformance ---------------------------------------------------


def test_reads_conform_to_the_openapi_document(served: RunningServer, api: requests.Session):
    accounts = api.get(f"{served.url}/accounts").json()
    conforms("AccountList", accounts)
    assert [a["id"] for a in accounts["accounts"]] == [1001, 1002, 1003]
    conforms("Account", api.get(f"{served.url}/accounts/1001").json())
    numbers = api.get(f"{served.url}/accounts/1001/numbers").json()
    conforms("NumberList", numbers)
    assert numbers["per_page"] == 10  # the documented default, as the real API
    number = api.get(f"{served.url}/accounts/1001/numbers/TPN1001A").json()
    conforms("Number", number)
    assert number["stats"] == {"renewal_costs": "3.00", "calls": 212}


def test_the_schemas_can_reject(served: RunningServer, api: requests.Session) -> None:
    number = api.get(f"{served.url}/accounts/1001/numbers/TPN1001A").json()
    number["stats"]["renewal_costs"] = 3.0  # money must be a string
    with pytest.raises(jsonschema.ValidationError):
        conforms("Number", number)


@pytest.mark.parametrize(
    "path",
    [
        "/accounts.json",
        "/accounts/1001.json",
        "/accounts/1001/numbers.json",
        "/accounts/1001/numbers/TPN1001A.json",
    ],
)
def test_every_read_path_takes_a_json_suffix(
    served: RunningServer, api: requests.Session, path: str
) -> None:
    plain = api.get(served.url + path.replace(".json", ""))
    suffixed = api.get(served.url + path)
    assert suffixed.status_code == plain.status_code == 200
    assert suffixed.json() == plain.json()
    assert suffixed.headers["Content-Type"].startswith("application/json")


def _fleet_with_sizes(path: Path, sizes: list[int]) -> None:
    """One account per size, with exactly that many numbers."""
    accounts: list[Row] = []
    numbers: list[Row] = []
    for k, size in enumerate(sizes):
        account_id = str(5000 + k)
        accounts.append((account_id, 1, f"Size {size}", "active", "49.00", None))
        for i in range(size):
            number = f"+1410{k:03d}{i:04d}"
            numbers.append(
                (
                    f"N{k}x{i}",
                    account_id,
                    number,
                    number,
                    "n",
                    1,
                    0,
                    "Web",
                    1,
                    "3.00",
                    0,
                    None,
                    None,
                )
            )
    create_database(path, accounts, numbers)


@pytest.fixture(scope="module")
def sized_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("sized") / "sized.db"
    _fleet_with_sizes(db, [0, 1, 150, 151, 1000])
    with start_server(db) as server:
        yield server


@pytest.mark.parametrize(
    ("account", "size", "pages"),
    [(5000, 0, 0), (5001, 1, 1), (5002, 150, 1), (5003, 151, 2), (5004, 1000, 7)],
)
def test_pagination_walks_every_number_once(
    sized_server: RunningServer, account: int, size: int, pages: int
) -> None:
    seen: list[str] = []
    url = f"{sized_server.url}/accounts/{account}/numbers"
    at = f"{url}?page={{}}&per_page=150"
    page = 1
    next_url: str | None = at.format(1)
    with requests.Session() as session:
        session.auth = AUTH
        while next_url is not None:  # follow next_page, a full URL as the real API sends
            body = session.get(next_url).json()
            conforms("NumberList", body)
            assert (body["page"], body["per_page"]) == (page, 150)
            assert (body["total_entries"], body["total_pages"]) == (size, pages)
            assert body["previous_page"] == (at.format(page - 1) if page > 1 else None)
            assert body["next_page"] == (at.format(page + 1) if page < pages else None)
            assert len(body["numbers"]) == min(150, max(0, size - (page - 1) * 150))
            seen += [n["id"] for n in body["numbers"]]
            next_url, page = body["next_page"], page + 1
    assert seen == [f"N{account - 5000}x{i}" for i in range(size)]


def test_a_page_past_the_end_is_empty(sized_server: RunningServer) -> None:
    body = requests.get(
        f"{sized_server.url}/accounts/5004/numbers?page=99999999999999999999&per_page=150",
        auth=AUTH,
    ).json()
    assert body["numbers"] == [] and body["next_page"] is None
    assert body["previous_page"].endswith("?page=99999999999999999998&per_page=150")


def test_an_empty_account_list(tmp_path: Path) -> None:
    create_database(tmp_path / "empty.db", [], [])
    with start_server(tmp_path / "empty.db") as server:
        body = requests.get(f"{server.url}/accounts", auth=AUTH).json()
    assert body == {
        "accounts": [],
        "page": 1,
        "per_page": 10,
        "total_entries": 0,
        "total_pages": 0,
        "next_page": None,
        "previous_page": None,
    }


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("per_page=151", "per_page limit is 150"),
        ("per_page=0", "per_page must be a positive integer"),
        ("page=abc", "page must be a positive integer"),
        ("page=-1", "page must be a positive integer"),
        ("page=" + "9" * 5000, "page must be a positive integer"),
    ],
)
def test_bad_paging_is_400(
    served: RunningServer, api: requests.Session, query: str, reason: str
) -> None:
    for path in ("/accounts", "/accounts/1001/numbers"):
        response = api.get(f"{served.url}{path}?{query}")
        assert response.status_code == 400
        assert response.json() == {"status": "error", "reason": reason}


# --- auth -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic " + base64.b64encode(b"test-access:wrong").decode(),
        "Basic " + base64.b64encode(b"wrong:test-secret").decode(),
        "Basic " + base64.b64encode(b"test-access").decode(),
        "Basic !!!not-base64!!!",
        "Bearer test-secret",
    ],
)
def test_missing_or_wrong_credentials_are_401(served: RunningServer, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/accounts"), ("POST", "/accounts/1001/status")):
        response = requests.request(
            method, served.url + path, headers=headers, json={"status": "stopped"}
        )
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
        conforms("Error", response.json())
    with SandboxStore(served.store.path) as store:
        assert store.audit() == []


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/accounts/9999", 404),
        ("GET", "/accounts/9999/numbers", 404),
        ("GET", "/accounts/1002/numbers/TPN1001A", 404),  # exists, but in another account
        ("GET", "/accounts/..%2F..%2Fetc/numbers", 404),
        ("GET", "/accounts/../../etc/passwd", 404),
        ("GET", "/accounts/%00", 404),
        ("GET", "/accounts/" + "9" * 10_000, 404),
        ("GET", "/accounts/1001/numbers/" + "x" * 10_000, 404),
        ("POST", "/accounts/" + "9" * 10_000 + "/status", 404),
        ("GET", "/nope", 404),
        ("GET", "/api/v2/accounts", 404),
        ("GET", "/api/v1", 404),
        ("GET", "/api/v1accounts", 404),
        ("GET", "/accounts/1001/nope", 404),
        ("GET", "/accounts/", 404),
        ("DELETE", "/accounts/1001", 405),
        ("GET", "/accounts/1001/status", 405),
        ("PUT", "/accounts/1001/numbers/TPN1001A/update_number", 405),
    ],
)
def test_unknown_things_are_404_and_wrong_methods_405(
    served: RunningServer, api: requests.Session, method: str, path: str, status: int
) -> None:
    root = served.url.removesuffix("/api/v1")
    url = root + path if path.startswith("/api") or path == "/nope" else served.url + path
    response = api.request(method, url, json={"status": "active"})
    assert response.status_code == status
    conforms("Error", response.json())
    if status == 405:
        assert response.headers["Allow"] in ("GET", "POST")


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/accounts/1001/status", b"{not json", "malformed JSON"),
        ("/accounts/1001/status", b"", "JSON object"),
        ("/accounts/1001/status", b"[1, 2]", "JSON object"),
        ("/accounts/1001/status", b'{"status": "off"}', "status must be one of"),
        ("/accounts/1001/status", b'{"status": null}', "status must be one of"),
        ("/accounts/1001/status", b'{"status": "stopped", "why": 1}', "unknown key 'why'"),
        ("/accounts/1001/status", b"\xff\xfe\x00garbage", "malformed JSON"),
        ("/accounts/1001/status", b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
        ("/accounts/1001/numbers/TPN1001A/update_number", b"{}", "nothing to update"),
        ("/accounts/1001/numbers/TPN1001A/update_number", b'{"active": 0}', "true or false"),
        ("/accounts/1001/numbers/TPN1001A/update_number", b'{"paused": "yes"}', "true or false"),
        ("/accounts/1001/numbers/TPN1001A/update_number", b'{"calls": "on"}', "unknown key"),
    ],
)
def test_bad_write_bodies_are_400_and_change_nothing(
    served: RunningServer, api: requests.Session, path: str, body: bytes, reason: str
) -> None:
    response = api.post(served.url + path, data=body)
    assert response.status_code == 400, response.text
    assert response.json()["status"] == "error" and reason in response.json()["reason"]
    assert served.store.audit() == []


def test_an_oversized_body_is_413(served: RunningServer, api: requests.Session) -> None:
    response = api.post(f"{served.url}/accounts/1001/status", data=b" " * (1024 * 1024 + 1))
    assert response.status_code == 413
    conforms("Error", response.json())
    # the connection was closed; the session carries on with a fresh one
    assert api.get(f"{served.url}/accounts/1001").status_code == 200


def test_pausing_an_offline_number_is_409(served: RunningServer, api: requests.Session) -> None:
    response = api.post(
        f"{served.url}/accounts/1001/numbers/TPN1001B/update_number", json={"paused": True}
    )
    assert response.status_code == 409
    assert "not online" in response.json()["reason"]


# --- writes -----------------------------------------------------------------------------


def test_writes_conform_and_are_audited_once(served: RunningServer, api: requests.Session) -> None:
    for _ in range(2):  # the second is a retry: same answer, no new audit row
        response = api.post(f"{served.url}/accounts/1001/status.json", json={"status": "stopped"})
        assert response.status_code == 200
        conforms("AccountWriteResult", response.json())
        assert response.json()["account"]["status"] == "stopped"
    response = api.post(
        f"{served.url}/accounts/1001/numbers/TPN1001A/update_number",
        json={"active": False, "paused": True},
    )
    conforms("NumberWriteResult", response.json())
    assert (response.json()["number"]["active"], response.json()["number"]["paused"]) == (
        False,
        True,
    )
    rows = served.store.audit()
    assert [(r["resource"], r["field"], r["to"], r["via"]) for r in rows] == [
        ("account.1001", "status", "stopped", "http"),
        ("number.+14105550101", "active", "false", "http"),
        ("number.+14105550101", "paused", "true", "http"),
    ]
    assert api.get(f"{served.url}/accounts/1001").json()["status"] == "stopped"


# --- fault injection --------------------------------------------------------------------


def test_latency_is_added(sandbox_db: Path) -> None:
    with start_server(sandbox_db, latency_ms=150) as server, requests.Session() as session:
        session.auth = AUTH
        session.get(f"{server.url}/accounts")  # connect outside the measurement
        started = time.perf_counter()
        session.get(f"{server.url}/accounts")
        assert time.perf_counter() - started >= 0.15
        assert server.stats.faults["latency"] == 2


def test_error_rate_1_answers_503_before_doing_anything(sandbox_db: Path) -> None:
    with start_server(sandbox_db, error_rate=1.0) as server:
        for method, path in (("GET", "/accounts"), ("POST", "/accounts/1001/status")):
            response = requests.request(
                method, server.url + path, auth=AUTH, json={"status": "stopped"}
            )
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            conforms("Error", response.json())
        # before auth, too
        assert requests.get(f"{server.url}/accounts").status_code == 503
        assert server.store.audit() == []
        assert server.stats.faults["error"] == 3
        assert server.stats.by_status == {503: 3}


def test_drop_rate_1_commits_then_closes_without_a_response(sandbox_db: Path) -> None:
    with start_server(sandbox_db, drop_rate=1.0) as server:
        with pytest.raises(requests.ConnectionError):
            requests.post(
                f"{server.url}/accounts/1001/status", auth=AUTH, json={"status": "stopped"}
            )
        # reads are never dropped, and the write is there
        account = requests.get(f"{server.url}/accounts/1001", auth=AUTH).json()
        assert account["status"] == "stopped"
        # the client retries the dropped write: still exactly one audit row
        with pytest.raises(requests.ConnectionError):
            requests.post(
                f"{server.url}/accounts/1001/status", auth=AUTH, json={"status": "stopped"}
            )
        assert len(server.store.audit("account.1001")) == 1
        assert server.stats.faults["drop"] == 2


def test_rate_limit_answers_429_with_retry_after(sandbox_db: Path) -> None:
    with start_server(sandbox_db, rate_limit=5) as server, requests.Session() as session:
        session.auth = AUTH
        statuses = [session.get(f"{server.url}/accounts").status_code for _ in range(15)]
        refused = session.get(f"{server.url}/accounts")
        while refused.status_code != 429:
            refused = session.get(f"{server.url}/accounts")
        assert statuses.count(200) >= 5 and 429 in statuses
        assert int(refused.headers["Retry-After"]) >= 1
        conforms("Error", refused.json())
        time.sleep(0.5)  # tokens come back at 5 per second
        assert session.get(f"{server.url}/accounts").status_code == 200
        assert server.stats.faults["rate_limit"] == server.stats.by_status[429]


def test_faults_are_reproducible_with_a_seed(sandbox_db: Path) -> None:
    def run() -> list[int]:
        server = start_server(sandbox_db, error_rate=0.5, rng_seed=42)
        with server, requests.Session() as session:
            session.auth = AUTH
            return [session.get(f"{server.url}/accounts").status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert {200, 503} == set(first)


def test_bad_fault_settings_are_refused(sandbox_db: Path) -> None:
    for kwargs in ({"error_rate": 1.5}, {"drop_rate": -0.1}, {"latency_ms": -1}, {"rate_limit": 0}):
        with pytest.raises(ValueError):
            start_server(sandbox_db, **kwargs)


# --- connections and concurrency ----------------------------------------------------------


def test_clients_are_served_concurrently(sandbox_db: Path) -> None:
    """8 requests with 200 ms latency each: together in well under 8 x 200 ms."""
    with start_server(sandbox_db, latency_ms=200) as server:
        results: list[int] = []

        def one() -> None:
            results.append(requests.get(f"{server.url}/accounts", auth=AUTH).status_code)

        threads = [threading.Thread(target=one) for _ in range(8)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    assert results == [200] * 8
    assert elapsed < 0.8, elapsed


def test_keep_alive_reuses_one_connection(served: RunningServer) -> None:
    conn = http.client.HTTPConnection(served.host, served.port, timeout=5)
    token = base64.b64encode(b"test-access:test-secret").decode()
    for path in ("/api/v1/accounts", "/api/v1/accounts/1001", "/api/v1/nope"):
        conn.request("GET", path, headers={"Authorization": f"Basic {token}"})
        response = conn.getresponse()
        response.read()
        assert response.getheader("Connection") != "close"
    assert conn.sock is not None  # still the same socket
    conn.close()


def test_an_idle_connection_does_not_block_others(served: RunningServer) -> None:
    idle = socket.create_connection((served.host, served.port))
    idle.sendall(b"GET /api/v1/accounts HTTP/1.1\r\n")  # ...and never finishes
    try:
        started = time.perf_counter()
        assert requests.get(f"{served.url}/accounts", auth=AUTH).status_code == 200
        assert time.perf_counter() - started < 1
    finally:
        idle.close()


def test_malformed_requests_get_json_errors(served: RunningServer) -> None:
    raw = socket.create_connection((served.host, served.port))
    raw.sendall(b"GARBAGE\r\n\r\n")
    reply = raw.recv(4096)
    raw.close()
    assert reply.startswith(b"HTTP/1.1 400") or b'"status":"error"' in reply


def test_stop_closes_the_port_and_open_connections(sandbox_db: Path) -> None:
    server = start_server(sandbox_db)
    session = requests.Session()
    session.auth = AUTH
    assert session.get(f"{server.url}/accounts").status_code == 200
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        session.get(f"{server.url}/accounts", timeout=2)
    session.close()


def test_stats_count_requests(served: RunningServer, api: requests.Session) -> None:
    api.get(f"{served.url}/accounts")
    api.post(f"{served.url}/accounts/1001/status", json={"status": "paused"})
    api.get(f"{served.url}/accounts/9999")
    snap = served.stats.snapshot()
    assert (snap["total"], snap["reads"], snap["writes"]) == (3, 2, 1)
    assert snap["by_status"] == {200: 2, 404: 1}
    served.reset_stats()
    assert served.stats.total == 0 and served.stats.by_status == {}


def test_access_log_never_shows_credentials(
    sandbox_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with start_server(sandbox_db, access_log=True, secret_key="s3cr3t-value") as server:
        requests.get(f"{server.url}/accounts?page=1", auth=("test-access", "s3cr3t-value"))
        requests.get(f"{server.url}/accounts", auth=("test-access", "wrong-guess"))
        server_header = requests.get(f"{server.url}/accounts").headers["Server"]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("reconciler.sandbox")]
    assert "GET /api/v1/accounts 200" in " ".join(lines)
    assert any(" 401 " in line for line in lines)
    text = "\n".join(lines)
    for secret in ("s3cr3t-value", "wrong-guess", "Authorization", "Basic "):
        assert secret not in text
    assert base64.b64encode(b"test-access:s3cr3t-value").decode() not in text
    assert "Python" not in server_header
