"""Ids from the provider are validated before use (issue 13, case 5): a number id such as
`..` could make a write reach another route (`POST …/accounts/1001/update_number`). Through
the real CLI against `sandbox serve` behind the tampering proxy."""

from __future__ import annotations

from typing import Any

import pytest
from test_cli_e2e import audit
from test_effects import through_proxy


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "x?y", "1%2F2", "a\x00b", "x" * 201])
def test_an_unusable_number_id_is_one_line_and_nothing_is_written(project, monkeypatch, bad):
    def rename(method: str, path: str, data: Any) -> Any:
        if path.endswith("/accounts/1001/numbers"):
            for n in data["numbers"]:
                if n["number"] == "+14105550102":
                    n["id"] = bad
        return data

    code, out = through_proxy(project, monkeypatch, rename, "apply", "--auto-approve")
    assert code == 1
    assert "malformed response: unusable number id" in out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out
    assert audit(project) == []


def test_an_unusable_account_id_is_refused(project, monkeypatch):
    def rename(method: str, path: str, data: Any) -> Any:
        if path.endswith("/accounts/1002"):
            return dict(data, id=True)
        return data

    code, out = through_proxy(project, monkeypatch, rename, "plan", "--account", "1002")
    assert code == 1 and len(out.strip().splitlines()) == 1
    assert "the provider answered for another account" in out


def test_a_200_error_answer_to_a_write_keeps_its_reason(project, monkeypatch):
    def refuse(method: str, path: str, data: Any) -> Any:
        if method == "POST" and "TPN1001B" in path:
            return {"status": "error", "reason": "number is locked by billing"}
        return data

    code, out = through_proxy(project, monkeypatch, refuse, "apply", "--auto-approve")
    assert code == 1
    assert "the provider refused the write: number is locked by billing" in out


def test_an_empty_key_variable_is_called_empty(project, monkeypatch):
    from test_cli_e2e import run

    run("plan")
    (project / "config" / "reconciler.yaml").write_text(
        "provider:\n  type: ctm\n  base_url: http://127.0.0.1:9/api/v1\n"
    )
    monkeypatch.setenv("CTM_ACCESS_KEY", "ak")
    monkeypatch.setenv("CTM_SECRET_KEY", "")
    code, out = run("plan")
    assert code == 1 and "environment variable CTM_SECRET_KEY is empty" in out


@pytest.mark.parametrize("fee", ["NaN", "-3.00", "Infinity", "1e999999"])
def test_a_fee_that_is_not_money_is_one_line(project, monkeypatch, fee):
    def bad_fee(method: str, path: str, data: Any) -> Any:
        if path.endswith("/accounts/1002/numbers"):
            data["numbers"][0]["stats"]["renewal_costs"] = fee
        return data

    code, out = through_proxy(project, monkeypatch, bad_fee, "plan", "--account", "1002")
    assert code == 1 and "malformed response: bad amount" in out
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "flags", [["--latency-ms", "nan"], ["--latency-ms", "inf"], ["--rate-limit", "nan"]]
)
def test_fault_flags_must_be_finite(project, monkeypatch, flags):
    from test_cli_e2e import run

    run("plan")
    monkeypatch.setenv("RECONCILER_SANDBOX_ACCESS_KEY", "ak")
    monkeypatch.setenv("RECONCILER_SANDBOX_SECRET_KEY", "sk-long-enough")
    code, out = run("sandbox", "serve", "--db", ".reconciler/sandbox.db", "--port", "0", *flags)
    assert code == 1 and "must be" in out and "Traceback" not in out
