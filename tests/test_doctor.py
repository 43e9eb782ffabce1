"""`reconciler doctor` through the real CLI: against `sandbox serve`, a tampering proxy in
front of it, and a small fake CTM server for the headers (Date, rate limits)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import ACCESS_KEY, SECRET_KEY, small_fleet
from tamper_proxy import serving, tamper_proxy

from reconciler.cli import main
from reconciler.providers.sandbox.server import RunningServer
from reconciler.providers.sandbox.store import SandboxStore

ORDER = [
    "settings",
    "credentials",
    "connection",
    "tls",
    "authentication",
    "account list",
    "page size",
    "account",
    "account object",
    "account.id",
    "account.name",
    "account.status",
    "account.monthly_fee",
    "numbers",
    "number.id",
    "number.number",
    "number.formatted",
    "number.name",
    "number.active",
    "number.paused",
    "number.source",
    "number.source.online",
    "number.stats.calls",
    "number.stats.renewal_costs",
    "number.active_changed",
    "number.account_id",
    "clock",
    "rate limits",
]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["doctor", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def checks(*args: str) -> tuple[int, dict[str, dict[str, str]]]:
    """Exit code and the JSON checks by name (names are unique)."""
    code, out = run("--format", "json", *args)
    rows = json.loads(out)["checks"]
    assert len({r["name"] for r in rows}) == len(rows)
    return code, {r["name"]: r for r in rows}


def not_ok(found: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: row["status"] for name, row in found.items() if row["status"] != "ok"}


@pytest.fixture
def ctm(project: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Point the example config at a ctm base URL, with the right keys in the environment."""
    monkeypatch.setenv("CTM_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("CTM_SECRET_KEY", SECRET_KEY)

    def point(base_url: str) -> None:
        (project / "config" / "reconciler.yaml").write_text(
            f"provider:\n  type: ctm\n  base_url: {base_url}\n  requests_per_second: 200\n"
        )

    return point


def on_numbers(change: Callable[[dict], None]) -> Callable[[str, str, Any], Any]:
    """A tamper function that changes every number of every numbers page."""

    def tamper(method: str, path: str, data: Any) -> Any:
        if path.endswith("/numbers"):
            for num in data["numbers"]:
                change(num)
        return data

    return tamper


def on_path(path: str, change: Callable[[dict], None]) -> Callable[[str, str, Any], Any]:
    """A tamper function that changes the answer to GET `path` (below /api/v1)."""

    def tamper(method: str, got: str, data: Any) -> Any:
        if got == "/api/v1" + path:
            change(data)
        return data

    return tamper


def through(
    served: RunningServer, ctm: Callable[[str], None], tamper: Callable[[str, str, Any], Any]
) -> tuple[int, dict[str, dict[str, str]]]:
    """`checks()` through a tampering proxy in front of the served sandbox."""
    with tamper_proxy(served.url, tamper) as url:
        ctm(url)
        return checks()


# --- ok ---------------------------------------------------------------------------------


def test_all_ok_against_sandbox_serve(served: RunningServer, ctm) -> None:
    ctm(served.url)
    code, out = run("--format", "json")
    assert code == 0, out
    rows = json.loads(out)["checks"]
    assert [r["name"] for r in rows] == ORDER
    assert all(set(r) == {"name", "status", "detail"} for r in rows)
    assert {r["status"] for r in rows} == {"ok"}
    found = {r["name"]: r["detail"] for r in rows}
    assert "1001 (first managed account" in found["account"]
    assert found["tls"].startswith("does not apply")
    assert found["rate limits"].startswith("does not apply")
    assert found["page size"] == "per_page=150 honoured"
    assert '"+14105550101"' in found["number.number"]


def test_text_output_is_one_line_per_check_and_a_summary(served: RunningServer, ctm) -> None:
    ctm(served.url)
    code, out = run()
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(ORDER) + 1
    assert all(line.startswith("ok    ") for line in lines[:-1])
    assert lines[-1] == f"doctor: {len(ORDER)} checks, {len(ORDER)} ok, 0 warnings, 0 failures"


def test_embedded_sandbox_says_http_checks_do_not_apply(project: Path) -> None:
    code, found = checks()  # the database does not exist yet: its seed will make it
    assert code == 0 and not not_ok(found)
    assert "not created yet" in found["sandbox database"]["detail"]
    assert found["http"]["detail"].startswith("does not apply")
    assert not (project / ".reconciler" / "sandbox.db").exists()  # doctor created nothing
    CliRunner().invoke(main, ["plan"])  # now it does
    code, found = checks()
    assert code == 0 and not not_ok(found)
    assert list(found) == ["settings", "sandbox database", "http", "account", "account object"]
    assert "5 accounts" in found["sandbox database"]["detail"]


def test_embedded_sandbox_unknown_account_fails(project: Path) -> None:
    CliRunner().invoke(main, ["plan"])
    code, found = checks("--account", "4242")
    assert code == 1 and not_ok(found) == {"account object": "fail"}


# --- warnings: what the provider does not report ------------------------------------------


def test_numbers_without_paused_warn_that_swapping_is_not_reported(
    served: RunningServer, ctm
) -> None:
    code, found = through(served, ctm, on_numbers(lambda num: num.pop("paused")))
    assert code == 2
    assert not_ok(found) == {"number.paused": "warn"}
    assert found["number.paused"]["detail"] == (
        'missing on 2 of 2 numbers (e.g. "+14105550101"): swapping not reported: '
        "reconciler will not change swapping of such numbers"
    )


def test_numbers_without_active_or_stats_say_the_consequence(served: RunningServer, ctm) -> None:
    def change(num: dict) -> None:
        if num["id"] == "TPN1001A":
            del num["active"], num["stats"], num["source"]

    code, found = through(served, ctm, on_numbers(change))
    assert code == 2
    assert not_ok(found) == {
        "number.active": "warn",
        "number.source": "warn",
        "number.stats.calls": "warn",
        "number.stats.renewal_costs": "warn",
    }
    assert (
        "calls not reported: reconciler will not change calls" in found["number.active"]["detail"]
    )
    assert (
        "fall back to billing.default_number_monthly_fee (3.00)"
        in (found["number.stats.renewal_costs"]["detail"])
    )
    assert "present on 1 of 2 numbers" in found["number.active"]["detail"]
    assert "not_pausable" in found["number.source"]["detail"]


def test_unknown_account_status_warns_naming_it(served: RunningServer, ctm) -> None:
    code, found = through(
        served, ctm, on_path("/accounts/1001", lambda a: a.update(status="canceled"))
    )
    assert code == 2 and not_ok(found) == {"account.status": "warn"}
    assert '"canceled" is not active, paused or stopped' in found["account.status"]["detail"]
    assert "unsupported_status" in found["account.status"]["detail"]


def test_wrong_types_warn_or_fail_as_the_mapping_reads_them(served: RunningServer, ctm) -> None:
    def change(num: dict) -> None:
        num["paused"] = "no"  # the mapping refuses it
        num["stats"]["calls"] = "12"  # the mapping reads it as 12

    code, found = through(served, ctm, on_numbers(change))
    assert code == 1
    assert not_ok(found) == {"number.paused": "fail", "number.stats.calls": "warn"}
    assert 'not a boolean on 2 of 2 numbers ("no"): reads fail' in found["number.paused"]["detail"]


def test_a_smaller_page_size_than_asked_warns(served: RunningServer, ctm) -> None:
    code, found = through(served, ctm, on_path("/accounts", lambda page: page.update(per_page=10)))
    assert code == 2 and not_ok(found) == {"page size": "warn"}
    assert "answers per_page=10" in found["page size"]["detail"]


def test_a_short_first_page_without_per_page_warns(served: RunningServer, ctm) -> None:
    def change(page: dict) -> None:
        del page["per_page"]
        page["accounts"] = page["accounts"][:1]

    code, found = through(served, ctm, on_path("/accounts", change))
    assert code == 2 and not_ok(found) == {"page size": "warn"}
    assert "page 1 holds 1 of 3 accounts (no per_page)" in found["page size"]["detail"]


# --- failures -------------------------------------------------------------------------------


def test_wrong_secret_fails_naming_the_variables_never_the_value(
    served: RunningServer, ctm, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctm(served.url)
    monkeypatch.setenv("CTM_SECRET_KEY", "wrong-secret-value")
    code, out = run()
    assert code == 1
    assert "wrong-secret-value" not in out and SECRET_KEY not in out
    fail = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1 and "authentication" in fail[0] and "401" in fail[0]
    assert "CTM_ACCESS_KEY and CTM_SECRET_KEY" in fail[0]
    assert "account list" not in out  # nothing after a failed authentication


def test_missing_key_variable_fails_naming_it(
    project: Path, ctm, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctm("https://api.example.com/api/v1")
    monkeypatch.delenv("CTM_SECRET_KEY")
    code, found = checks()
    assert code == 1 and list(found) == ["settings", "credentials"]
    assert found["credentials"]["status"] == "fail"
    assert "environment variable CTM_SECRET_KEY is not set" in found["credentials"]["detail"]


def test_server_down_fails_the_connection(project: Path, ctm) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctm(f"http://127.0.0.1:{port}/api/v1")
    code, found = checks()
    assert code == 1 and list(found) == ["settings", "credentials", "connection"]
    assert found["connection"]["status"] == "fail"
    assert "connection refused" in found["connection"]["detail"]


def test_unknown_account_fails(served: RunningServer, ctm) -> None:
    ctm(served.url)
    code, found = checks("--account", "4242")
    assert code == 1 and not_ok(found) == {"account object": "fail"}
    assert "the provider has no account 4242" in found["account object"]["detail"]
    assert found["clock"]["status"] == "ok"  # the header checks still run


def test_without_account_files_the_first_listed_account_is_checked(
    served: RunningServer, ctm, project: Path
) -> None:
    ctm(served.url)
    for path in (project / "config" / "accounts").iterdir():
        path.unlink()
    code, found = checks()
    assert code == 0
    assert (
        found["account"]["detail"]
        == "no account is managed yet: checking the first listed account 1001"
    )
    (project / "config" / "accounts" / "bad.yaml").write_text("account: [\n")
    code, found = checks()
    assert code == 2 and not_ok(found) == {"account": "warn"}
    assert found["account"]["detail"].startswith("the account files have 1 problem")
    assert found["account.id"]["detail"] == "present: 1001"


def test_invalid_settings_fail(project: Path) -> None:
    (project / "config" / "reconciler.yaml").write_text("provider:\n  type: nope\n")
    code, found = checks()
    assert code == 1 and list(found) == ["settings"] and found["settings"]["status"] == "fail"
    assert "reconciler.yaml:2" in found["settings"]["detail"]


# --- safety -----------------------------------------------------------------------------------


def test_doctor_never_writes(served: RunningServer, ctm, sandbox_db: Path) -> None:
    seen: list[str] = []

    def record(method: str, path: str, data: Any) -> Any:
        seen.append(method)
        return data

    with tamper_proxy(served.url, record) as url:
        ctm(url)
        assert run()[0] == 0
        assert run("--account", "1002")[0] == 0
    assert seen == ["GET"] * 6  # the list, the account, its numbers: twice
    assert served.stats.snapshot()["writes"] == 0
    with SandboxStore(sandbox_db) as store:
        assert store.audit() == []


def test_provider_text_is_neutralised_and_the_secret_redacted(served: RunningServer, ctm) -> None:
    def change(acc: dict) -> None:
        acc["name"] = "\u202eEvil\x1b]0;owned\x07 " + SECRET_KEY

    with tamper_proxy(served.url, on_path("/accounts/1001", change)) as url:
        ctm(url)
        for fmt in ("text", "json"):
            code, out = run("--format", fmt)
            assert code == 0
            assert not {"\x1b", "\x07", "\u202e"} & set(out) and SECRET_KEY not in out
            assert "\\u202eEvil" in out and "]0;owned" in out  # shown, as escapes


# --- headers: a fake provider -------------------------------------------------------------


@contextmanager
def fake_ctm(date: str | None, headers: dict[str, str] | None = None) -> Iterator[str]:
    """A minimal CTM-shaped server over the small fleet that sends `date` as its Date
    header (none when None) and `headers` on every answer."""
    fleet = small_fleet()["accounts"]
    accounts = {str(a["id"]): a for a in fleet}

    def body(path: str) -> Any:
        parts = path.split("?")[0].removeprefix("/api/v1/").split("/")
        if parts == ["accounts"]:
            items = [{k: v for k, v in a.items() if k != "numbers"} for a in fleet]
            return {"accounts": items, "page": 1, "per_page": 150, "total_entries": len(items)}
        if len(parts) == 2:
            return {k: v for k, v in accounts[parts[1]].items() if k != "numbers"}
        numbers = accounts[parts[1]]["numbers"]
        return {"numbers": numbers, "page": 1, "per_page": 150, "total_entries": len(numbers)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def send_response(self, code: int, message: str | None = None) -> None:
            self.send_response_only(code, message)  # no automatic Date header
            if date is not None:
                self.send_header("Date", date)

        def do_GET(self) -> None:
            out = json.dumps(body(self.path)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(out)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    with serving(httpd) as url:
        yield url


@pytest.mark.parametrize(
    ("date", "status", "says"),
    [
        ("Mon, 01 Jan 2001 00:00:00 GMT", "warn", "behind this machine's clock"),
        ("yesterday-ish", "warn", "unreadable Date header"),
        (None, "ok", "does not apply: the provider sends no Date header"),
    ],
)
def test_clock_skew_from_the_date_header(project: Path, ctm, date, status, says) -> None:
    with fake_ctm(date) as url:
        ctm(url)
        code, found = checks()
    assert found["clock"]["status"] == status and says in found["clock"]["detail"]
    assert code == (2 if status == "warn" else 0)
    assert not_ok(found) == ({"clock": "warn"} if status == "warn" else {})


def test_rate_limit_headers_are_shown(project: Path, ctm) -> None:
    from email.utils import formatdate

    sent = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "97"}
    with fake_ctm(formatdate(usegmt=True), sent) as url:
        ctm(url)
        code, found = checks()
    assert code == 0
    assert found["rate limits"]["detail"] == (
        "X-RateLimit-Limit: 100, X-RateLimit-Remaining: 97; "
        "the client keeps to requests_per_second=200"
    )
