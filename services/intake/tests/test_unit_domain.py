"""Fast unit tests of the pure parts: normalization, platform mapping, signatures, rate limits, follow-up rules."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest
from leadbridge_contracts.events import FollowUpOutcome
from leadbridge_intake.fetcher import backoff_seconds
from leadbridge_intake.followups import FollowUpConflict, FollowUpRequest, check_can_follow_up, status_after
from leadbridge_intake.mapping import linkedin_form_id, map_google_lead, map_linkedin_lead, map_meta_lead
from leadbridge_intake.normalize import (
    InvalidValue,
    normalize_email,
    normalize_phone,
    normalize_token,
    parse_bool,
    parse_company_size,
    validated_email,
)
from leadbridge_intake.ratelimit import RateLimiter, retry_after_header
from leadbridge_intake.signatures import (
    SignatureProblem,
    check_google_key,
    hash_api_key,
    linkedin_challenge,
    meta_handshake,
    new_api_key,
    verify_linkedin_signature,
    verify_meta_signature,
)
from leadbridge_intake.submission import NUL_FREE, LeadSubmission, channel_label, from_flat_fields, nul_free
from pydantic import ValidationError


@pytest.mark.parametrize("raw,expected", [("Jane.Doe@Example.COM", "jane.doe@example.com"),
                                          ("  a@b.io ", "a@b.io")])
def test_email_normalized(raw, expected):
    assert normalize_email(raw) == expected


def _outcome(normalize, raw):
    try:
        return normalize(raw)
    except InvalidValue as exc:
        return ("invalid", str(exc))


def test_plain_address_shortcut_answers_as_email_validator():
    """normalize_email's shortcut for plain ASCII addresses gives email-validator's answer, valid or not."""
    rnd = random.Random(16)
    pieces = ["a", "Z", "0", "9", "-", "--", ".", "..", "_", "+", "!", "'", "`", "~", "@", "xn--", "ab--", " ", "é",
              "ü", "\"", "(", "[", "]", ":", ",", "com", "io", "local", "test", "arpa", "localhost", "onion",
              "invalid", "123", "x" * 63, "y" * 64, "ä.com", "ＡＢ", "\u3002"]
    corpus = ["Jane.Roe@Example.com", "vp-1x2@company-1x2.example", "a@b.io", "a@b.c", "a@b.c1", "a@1.io", "a@-b.io",
              "a@b-.io", "a@b..io", ".a@b.io", "a.@b.io", "a@b.io.", "a@localhost", "a@x.local", "a@x.test",
              "a@test", "a@onion.io", "a@x.arpa", "postmaster@x.io", "POSTMASTER@X.IO", "a@xn--bcher-kva.de",
              "a@ab--cd.io", "a@abc--d.io", "x" * 64 + "@b.io", "x" * 65 + "@b.io", "a@" + "b" * 63 + ".io",
              "a@" + "b" * 64 + ".io", "a@" + ".".join(["c" * 63] * 4) + ".io", "a@" + ".".join(["c" * 60] * 4) + ".io",
              "a@" + ".".join(["c" * 61] * 4) + ".io"]
    for _ in range(4000):
        local = "".join(rnd.choice(pieces[:16]) for _ in range(rnd.randint(1, 4)))
        labels = ["".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 3))) for _ in range(rnd.randint(1, 3))]
        corpus.append(f"{local}@{'.'.join(labels)}")
        corpus.append(f"{local}@{labels[0]}.{rnd.choice(['com', 'io', 'de', 'c0m', 'x-y'])}")
    plain = 0
    for raw in filter(None, (c.strip() for c in corpus)):  # normalize_email strips; validated_email does not
        assert _outcome(normalize_email, raw) == _outcome(validated_email, raw), raw
        plain += not isinstance(_outcome(validated_email, raw), tuple)
    assert plain > 500  # the generated addresses are valid often enough to test the shortcut


@pytest.mark.parametrize("raw", ["nope", "a@", "@b.com", "a b@c.com"])
def test_bad_email_rejected(raw):
    with pytest.raises(InvalidValue):
        normalize_email(raw)


@pytest.mark.parametrize("raw,region,expected", [("+1 (415) 555-0123", None, "+14155550123"),
                                                 ("030 1234567", "DE", "+49301234567"),
                                                 ("0049 30 1234567", None, "+49301234567"),
                                                 ("(650) 253-0000", "US", "+16502530000")])
def test_phone_normalized_to_e164(raw, region, expected):
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["12", "hello", "+1 000"])
def test_bad_phone_rejected(raw):
    with pytest.raises(InvalidValue):
        normalize_phone(raw, "US")


def test_company_size_tokens_and_bools():
    assert parse_company_size("51-200") == 51 and parse_company_size("1000+") == 1000
    assert parse_company_size("10,000") == 10000 and parse_company_size(12) == 12 and parse_company_size("") is None
    with pytest.raises(InvalidValue):
        parse_company_size("lots")
    assert normalize_token("Demo Request") == "demo_request" and normalize_token("  ") is None
    assert parse_bool("on") is True and parse_bool("0") is False
    assert channel_label("paid") == "paid" and channel_label("tiktok-xyz") == "other" and channel_label(None) == "unknown"


def test_submission_needs_contact_and_reports_fields():
    with pytest.raises(ValidationError) as err:
        LeadSubmission.model_validate({"name": "x"})
    assert "email or phone is required" in str(err.value)
    with pytest.raises(ValidationError) as err:
        LeadSubmission.model_validate({"email": "x", "phone": "1", "country": "Germany"})
    assert {e["loc"][0] for e in err.value.errors()} == {"email", "phone", "country"}
    sub = LeadSubmission.model_validate({"phone": "0151 12345678", "country": "de", "first_name": "A", "last_name": "B"})
    profile = sub.profile(source="api")
    assert profile.contact.phone == "+4915112345678" and profile.contact.name == "A B" and profile.country == "DE"


def test_flat_form_fields():
    data = from_flat_fields({"Email": "a@b.io", "utm_source": "x", "custom[plan]": "pro", "custom.seats": "3",
                             "other": "y", "consent": "yes", "api_key": "secret", "company": ""})
    assert data == {"email": "a@b.io", "utm": {"utm_source": "x"}, "custom": {"plan": "pro", "seats": "3", "other": "y"},
                    "consent": True, "company": None}


def test_meta_google_linkedin_mapping():
    meta = map_meta_lead({"id": "1", "form_id": "9", "field_data": [
        {"name": "email", "values": ["m@x.io"]}, {"name": "full_name", "values": ["M X"]},
        {"name": "favourite?", "values": ["blue"]}]})
    assert meta["email"] == "m@x.io" and meta["name"] == "M X" and meta["custom[favourite?]"] == "blue"
    assert meta["channel"] == "paid" and meta["custom[meta_form_id]"] == "9"
    google = map_google_lead({"lead_id": "L", "form_id": 1, "campaign_id": 7, "user_column_data": [
        {"column_id": "EMAIL", "string_value": "g@x.io"}, {"column_id": "WORK_EMAIL", "string_value": "w@x.io"},
        {"column_id": "JOB_TITLE", "string_value": "CTO"}, {"column_name": "Budget", "string_value": "5k"}]})
    assert google["email"] == "g@x.io" and google["job_title"] == "CTO" and google["custom[Budget]"] == "5k"
    assert google["campaign"] == "7"
    response = {"versionedLeadGenFormUrn": "urn:li:versionedLeadGenForm:(urn:li:leadGenForm:77,3)",
                "formResponse": {"answers": [
                    {"questionId": 1, "answerDetails": {"textQuestionAnswer": {"answer": "l@x.io"}}},
                    {"questionId": 2, "answerDetails": {"multipleChoiceAnswer": {"options": [1, 2]}}}]}}
    form = {"content": {"questions": [{"questionId": 1, "predefinedField": "EMAIL"}, {"questionId": 2, "name": "size"}]}}
    assert linkedin_form_id(response) == "77"
    assert map_linkedin_lead(response, form)["email"] == "l@x.io"
    assert map_linkedin_lead(response, form)["custom[size]"] == "1,2"


def test_meta_signature_and_handshake():
    body = b'{"object":"page"}'
    good = "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()
    verify_meta_signature("s", body, good)
    with pytest.raises(SignatureProblem) as missing:
        verify_meta_signature("s", body, None)
    assert missing.value.status == 401
    with pytest.raises(SignatureProblem) as wrong:
        verify_meta_signature("s", body + b" ", good)
    assert wrong.value.status == 403
    assert meta_handshake("t", "subscribe", "t", "42") == "42"
    with pytest.raises(SignatureProblem):
        meta_handshake("t", "subscribe", "x", "42")


def test_linkedin_and_google_checks():
    body = b"{}"
    digest = hmac.new(b"c", body, hashlib.sha256).hexdigest()
    verify_linkedin_signature("c", body, digest)
    verify_linkedin_signature("c", body, "hmacsha256=" + digest)
    with pytest.raises(SignatureProblem):
        verify_linkedin_signature("c", body, "00")
    assert linkedin_challenge("c", "abc")["challengeResponse"] == hmac.new(b"c", b"abc", hashlib.sha256).hexdigest()
    check_google_key({"1": "k"}, 1, "k")
    check_google_key({"*": "any"}, 5, "any")
    for keys, given, status in (({"1": "k"}, None, 401), ({"1": "k"}, "x", 403), ({"2": "k"}, "k", 403)):
        with pytest.raises(SignatureProblem) as problem:
            check_google_key(keys, 1, given)
        assert problem.value.status == status


def test_api_keys_hashed():
    secret, key_id = new_api_key()
    assert secret.startswith(key_id) and len(hash_api_key(secret)) == 64 and hash_api_key(secret) != secret


def test_rate_limiter_token_bucket():
    limiter = RateLimiter(per_minute=60, burst=2)
    assert limiter.take("k", 0.0) == 0 and limiter.take("k", 0.0) == 0
    wait = limiter.take("k", 0.0)
    assert wait == pytest.approx(1.0) and retry_after_header(wait) == "1"
    assert limiter.take("other", 0.0) == 0
    assert limiter.take("k", 1.0) == 0


def test_follow_up_rules():
    with pytest.raises(ValidationError):
        FollowUpRequest.model_validate({"touch_type": "call", "outcome": "rejected"})
    with pytest.raises(ValidationError):
        FollowUpRequest.model_validate({"touch_type": "call", "outcome": "qualified"})
    with pytest.raises(ValidationError):
        FollowUpRequest.model_validate({"touch_type": "call", "amount": 5})
    with pytest.raises(ValidationError):
        FollowUpRequest.model_validate({"touch_type": "fax"})
    ok = FollowUpRequest.model_validate({"touch_type": "call", "outcome": "won", "amount": 5,
                                         "occurred_at": "2026-01-01T10:00:00"})
    assert ok.occurred_at is not None and ok.occurred_at.tzinfo is not None
    check_can_follow_up(None)
    with pytest.raises(FollowUpConflict):
        check_can_follow_up("lost")
    assert status_after("captured", None) == "contacted"
    assert status_after("captured", FollowUpOutcome.MEETING_BOOKED) == "meeting-booked"


def test_fetch_backoff_is_capped():
    assert [backoff_seconds(n, 1, 5) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


def test_a_submission_at_every_maximum_fits_the_event_contract():
    """Intake's limits are the contract's: the largest submission intake accepts is a valid LeadProfile."""
    from leadbridge_intake.testing import maximal_lead

    profile = LeadSubmission.model_validate(maximal_lead("a1b2c3"), context={"region": "US"}).profile(source="api")
    assert profile.company_size == 10_000_000 and len(profile.contact.name or "") == 401
    assert len(profile.custom["asset"]) == 2000 and len(profile.utm["utm_content"]) == 2000


@pytest.mark.parametrize("size", [10_000_001, 10**30, 10**400, "1000000000", -1])
def test_out_of_range_company_sizes_are_rejected_naming_the_field(size):
    with pytest.raises(ValidationError) as info:
        LeadSubmission.model_validate({"email": "a@b.io", "company_size": size})
    assert [e["loc"] for e in info.value.errors()] == [("company_size",)]


def test_the_contract_refuses_what_intake_would_refuse():
    from leadbridge_contracts.events import FollowUpLogged, LeadProfile

    for bad in ({"company_size": 10**400}, {"custom": {"asset": "x" * 2001}}, {"campaign": "x" * 201},
                {"utm": {f"k{i}": "v" for i in range(51)}}):
        with pytest.raises(ValidationError):
            LeadProfile.model_validate(bad)
    with pytest.raises(ValidationError):
        FollowUpLogged.model_validate({"lead_id": "l", "follow_up_id": "f", "touch_type": "call", "reason": "x" * 1001,
                                       "occurred_at": "2026-01-01T00:00:00Z", "logged_at": "2026-01-01T00:00:00Z"})


@pytest.mark.parametrize("raw", [
    b'{"email": "a@b.co", "company": "A\\u0000B"}',
    b'{"email": "a@b.co", "custom": {"k\\u0000": "v\\u0000"}, "utm": {"utm_source": "\\u0000x"}}',
    '{"email": "a@b.co", "company": "A\\u0000B"}'.encode("utf-16"),  # json.loads reads UTF-16 and -32 too
    '{"email": "a@b.co", "company": "A\\u0000B"}'.encode("utf-32-le"),
    '{"email": "a@b.co", "company": "Café"}'.encode("utf-16-le"),
])
def test_a_body_that_may_hold_a_nul_is_stripped(raw):
    import json

    assert not nul_free(raw)
    stripped = LeadSubmission.model_validate(json.loads(raw), context={NUL_FREE: nul_free(raw)})
    assert "\x00" not in stripped.model_dump_json().replace("\\u0000", "\x00")
    assert stripped == LeadSubmission.model_validate(json.loads(raw))


@pytest.mark.parametrize("raw", [b'{"email": "a@b.co", "company": "A\\\\u0000B"}',  # an escaped backslash
                                 '{"email": "a@b.co", "company": "Zoë \\u2603"}'.encode()])
def test_a_nul_free_body_skips_the_strip_and_validates_the_same(raw):
    import json

    assert nul_free(raw) or b"\\\\u0000" in raw
    data = json.loads(raw)
    assert LeadSubmission.model_validate(data, context={NUL_FREE: nul_free(raw)}) == LeadSubmission.model_validate(data)


@pytest.mark.parametrize("outcome", ["captured", "activity", "duplicate"])
def test_the_202_answer_is_the_json_response_it_stands_for(outcome):
    import uuid

    from fastapi.responses import JSONResponse
    from leadbridge_intake.api.leads import Accepted202
    from leadbridge_intake.reporting import ANSWER

    lead_id = str(uuid.uuid4())
    headers = {"Location": f"/v1/leads/{lead_id}", **({"Idempotent-Replayed": "true"} if outcome == "duplicate" else {})}
    reference = JSONResponse({"lead_id": lead_id, "status": ANSWER[outcome]}, status_code=202, headers=headers)
    answer = Accepted202(lead_id, ANSWER[outcome], replayed=outcome == "duplicate")
    assert (answer.status_code, answer.body, answer.raw_headers, answer.background) == (
        reference.status_code, reference.body, reference.raw_headers, reference.background)
    odd = Accepted202('x"\\é\n', "accepted")  # any text (lead ids are UUIDs) is JSON-escaped as json.dumps does
    assert odd.body == JSONResponse({"lead_id": 'x"\\é\n', "status": "accepted"}).body
