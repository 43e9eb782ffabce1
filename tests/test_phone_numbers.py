"""Phone numbers by libphonenumber's metadata (issue 14, part 3): config errors that say
why, a fast path equal to the library, live numbers normalised, generated numbers valid,
and international numbers through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import phonenumbers
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_e2e import run

from reconciler import phone
from reconciler.errors import ProviderError
from reconciler.providers.sandbox.generate import generate_rows
from reconciler.providers.wire import number_from_wire, numbers_from_wire


def library(number: str) -> bool:
    """The reference: phonenumbers itself, and the number written as its E.164 form."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(parsed) and (
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == number
    )


# --- config errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        ('"+1410"', 'not a valid phone number: "+1410" is too short for +1 (US'),
        (
            '"+15555550100"',
            'not a valid phone number: "+15555550100" has no such area code or number range '
            "for +1 (US",
        ),
        ('"+44123"', 'not a valid phone number: "+44123" is too short for +44 (GB/GG/IM/JE)'),
        ('"+1410555O1O1"', 'not an E.164 number: "+1410555O1O1"'),
        ('"14105550101"', 'not an E.164 number: "14105550101"'),
        ('"+114105550101"', 'it reads as +14105550101; write number: "+14105550101"'),
        ('"+999123456"', "has a calling code no country uses"),
    ],
    ids=["too-short", "no-area-code", "gb-too-short", "letters", "no-plus", "not-canonical", "cc"],
)
def test_a_bad_number_is_an_error_at_its_line_saying_why(tmp_path, written, fragment):
    accounts = tmp_path / "cfg" / "accounts"
    accounts.mkdir(parents=True)
    (accounts / "a.yaml").write_text(
        'account: {id: 1}\nnumbers:\n  - number: "+14105550101"\n'
        f"  - number: {written}\n    calls: stopped\n"
    )
    code, out = run("validate", "--config", str(tmp_path / "cfg"))
    assert code == 1, out
    line = next(ln for ln in out.splitlines() if ln.startswith(f"{accounts / 'a.yaml'}:4:"))
    assert fragment in line, out
    assert "e.g." in line or "write number" in line  # what to write instead


def test_international_and_toll_free_numbers_are_valid(tmp_path):
    accounts = tmp_path / "cfg" / "accounts"
    accounts.mkdir(parents=True)
    numbers = ["+442079460958", "+61291234567", "+18005550100", "+14105550101"]
    body = "".join(f'  - number: "{n}"\n' for n in numbers)
    (accounts / "a.yaml").write_text(f"account: {{id: 1}}\nnumbers:\n{body}")
    code, out = run("validate", "--config", str(tmp_path / "cfg"))
    assert code == 0, out


# --- the fast path is the library -------------------------------------------------------

digits = st.text("0123456789", min_size=1, max_size=14)
country = st.sampled_from(["1", "44", "61", "49", "39", "7", "86", "91", "800", "33", "1"])


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.builds(lambda c, d: f"+{c}{d}"[:16], country, digits),
        st.builds(lambda d: f"+{d}", digits),
        # NANP-shaped: area code and exchange from the valid-looking range, many prefixes shared
        st.builds(
            lambda a, e, n: f"+1{a}{e}{n:04d}",
            st.integers(200, 999),
            st.integers(100, 999),
            st.integers(0, 9999),
        ),
    )
)
def test_the_fast_path_gives_exactly_the_librarys_answer(number):
    assert phone.is_valid_e164(number) == library(number), number
    assert phone.is_valid_e164(number) == (phone.problem(number) is None), number


EXAMPLES = [
    *sorted(
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        for region in phonenumbers.SUPPORTED_REGIONS
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE)
        if (example := phonenumbers.example_number_for_type(region, kind)) is not None
    ),
    *("+13052080000", "+15056400000", "+19832000000"),  # NANP ranges with few free digits
]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(EXAMPLES),
    st.integers(1, 8),
    st.lists(st.integers(0, 10**8 - 1), min_size=2, max_size=30),
)
def test_numbers_sharing_a_cache_key_each_get_the_librarys_answer(base, changed, tails):
    """Variants of real numbers that differ only in their last digits, checked one after
    the other: a cache key that ignored a digit that matters would answer one wrongly."""
    phone._cache.clear()
    keep = max(len(base) - changed, 2)
    for tail in tails:
        number = base[:keep] + f"{tail:08d}"[-(len(base) - keep) :]
        assert phone.is_valid_e164(number) == library(number), number


def test_the_cache_key_length_is_proven_for_the_nanp_and_not_claimed_where_it_fails():
    k, reach = phone._free_tail(1)
    assert 1 <= k <= 4 and reach <= 10 - k  # +1: patterns end in >= 3 free digits
    assert phone._free_tail(44)[0] == 0  # GB's metadata has a path without free digits


# --- live numbers -----------------------------------------------------------------------


def wire_number(number: object, **extra: object) -> dict:
    return {"id": "TPN1", "number": number, "active": True, "paused": False, **extra}


@pytest.mark.parametrize(
    ("sent", "e164"),
    [
        ("+14105550101", "+14105550101"),
        ("+1 410-555-0101", "+14105550101"),
        ("+1 (410) 555-0101", "+14105550101"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+61 2 9123 4567", "+61291234567"),
    ],
)
def test_a_live_number_in_any_formatting_becomes_e164(sent, e164):
    assert number_from_wire(wire_number(sent)).number == e164
    assert [n.number for n in numbers_from_wire([wire_number(sent)], "1001")] == [e164]


@pytest.mark.parametrize("sent", ["(410) 555-0101", "call us", 14105550101, None])
def test_a_live_number_that_does_not_parse_is_a_one_line_malformed_response(sent):
    with pytest.raises(ProviderError) as caught:
        number_from_wire(wire_number(sent))
    text = str(caught.value)
    assert text.startswith("malformed response: number") and "\n" not in text


def test_a_live_number_is_shown_formatted_when_the_provider_gives_no_format():
    assert number_from_wire(wire_number("+14105550101")).display() == "(410) 555-0101"
    assert number_from_wire(wire_number("+442079460958")).display() == "+44 20 7946 0958"
    given_format = wire_number("+14105550101", formatted="410.555.0101")
    assert number_from_wire(given_format).display() == "410.555.0101"


# --- sandbox generate -------------------------------------------------------------------


def test_generated_fleet_numbers_are_all_valid():
    _, rows = generate_rows(50, 200, seed=7)
    invalid = [row[2] for row in rows if not library(row[2])]
    assert invalid == []
    assert all(row[3] == phone.display(row[2]) for row in rows)  # formatted as the library


# --- international numbers end to end ----------------------------------------------------

FLEET = {
    "accounts": [
        {
            "id": 2001,
            "name": "Thames Dental",
            "status": "active",
            "numbers": [
                {"number": "+442079460958", "source": {"name": "Website", "online": True}},
                {"number": "+61291234567", "source": {"name": "Print Ad", "online": False}},
                {"number": "+14105550101"},
            ],
        }
    ]
}
ACCOUNT = """\
account:
  id: 2001
  name: Thames Dental
numbers:
  - number: "+442079460958"
    swapping: paused
  - number: "+61291234567"
    calls: stopped
  - number: "+14105550101"
"""


def test_international_numbers_plan_apply_drift_and_import(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    cfg = tmp_path / "config"
    (cfg / "accounts").mkdir(parents=True)
    (cfg / "fleet.yaml").write_text(yaml.safe_dump(FLEET))
    (cfg / "reconciler.yaml").write_text(
        "provider:\n  type: sandbox\n  database: ../sandbox.db\n  seed: fleet.yaml\n"
    )
    (cfg / "accounts" / "thames.yaml").write_text(ACCOUNT)
    db = str(tmp_path / "sandbox.db")

    code, out = run("plan", "--config", str(cfg), "--format", "json")
    assert code == 0, out
    changes = {(c["number"], c["field"], c["to"]) for c in json.loads(out)["changes"]}
    assert changes == {
        ("+442079460958", "swapping", "paused"),
        ("+61291234567", "calls", "stopped"),
    }

    code, out = run("apply", "--config", str(cfg), "--auto-approve")
    assert code == 0, out
    assert run("drift", "--config", str(cfg))[0] == 0

    code, out = run("sandbox", "set", "--db", db, "number.+61291234567", "calls=allowed")
    assert code == 0, out
    code, out = run("drift", "--config", str(cfg))
    assert code == 2 and "+61291234567" in out, out

    code, out = run("sandbox", "show", "--db", db)
    assert code == 0, out
    shown = {n["number"]: n["formatted"] for n in json.loads(out)["accounts"][0]["numbers"]}
    assert shown == {
        "+442079460958": "+44 20 7946 0958",
        "+61291234567": "+61 2 9123 4567",
        "+14105550101": "(410) 555-0101",
    }

    (cfg / "accounts" / "thames.yaml").unlink()  # import refuses an account already managed
    code, out = run("import", "--config", str(cfg), "--account", "2001", "--out", "imported")
    assert code == 0, out
    written = next(Path("imported").glob("*.yaml")).read_text()
    assert '- number: "+442079460958"  # +44 20 7946 0958' in written
    assert '- number: "+61291234567"  # +61 2 9123 4567' in written
