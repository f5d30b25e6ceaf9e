"""Pure: why a platform payload is quarantined, as one of a small fixed set of reason codes (a metric label)."""

from __future__ import annotations

import pytest
from leadbridge_intake.quarantine import REASONS, Unusable, validated, without_secrets


def meta(**answers: str) -> dict:
    return {"id": "1", "field_data": [{"name": k, "values": [v]} for k, v in answers.items()]}


@pytest.mark.parametrize("answers,reason", [
    ({"email": "a@b.io", "phone_number": "call me maybe"}, "invalid_phone"),
    ({"email": "not an email"}, "invalid_email"),
    ({"email": "a@b.io", "country": "Germany, mostly"}, "invalid_country"),
    ({"email": "a@b.io", "what_do_you_need?": "x" * 2001}, "too_long"),
    ({"email": "a@b.io", "company_name": "x" * 201}, "too_long"),
    ({"email": "a@b.io", "company_size": "about a hundred"}, "invalid_company_size"),
    ({"full_name": "No Contact"}, "missing_contact"),
])
def test_reason_codes(answers, reason):
    with pytest.raises(Unusable) as info:
        validated("meta", meta(**answers), region="US")
    assert info.value.reason == reason and reason in REASONS
    assert all(set(e) == {"field", "message", "type"} for e in info.value.errors)


def test_unreadable_payloads_and_corrections():
    with pytest.raises(Unusable) as info:
        validated("linkedin", {"response": {"leadMetadata": {"sponsoredLeadMetadata": "?"}}}, region="US")
    assert info.value.reason == "unmappable"
    submission, is_test = validated("meta", meta(email="a@b.io", phone_number="0151 12345678"), region="US",
                                    corrections={"phone": "+49 151 12345678"})
    assert submission.phone == "+4915112345678" and not is_test
    assert without_secrets({"google_key": "s", "lead_id": "1"}) == {"lead_id": "1"}
