"""Mapping of ad-platform payloads onto lead fields. Pure: platform JSON in, flat field dict out.

The flat dict then goes through ``submission.from_flat_fields`` and ``LeadSubmission`` like a web form.
"""

from __future__ import annotations

from typing import Any

# Meta Lead Ads `field_data` names (standard questions) -> our field names
META_FIELDS = {
    "email": "email", "phone_number": "phone", "phone": "phone", "full_name": "name", "first_name": "first_name",
    "last_name": "last_name", "company_name": "company", "job_title": "job_title", "country": "country",
    "work_email": "email", "work_phone_number": "phone", "company_size": "company_size", "industry": "industry",
}

# Google Ads lead form `user_column_data[].column_id` -> our field names
GOOGLE_COLUMNS = {
    "FULL_NAME": "name", "FIRST_NAME": "first_name", "LAST_NAME": "last_name", "EMAIL": "email",
    "WORK_EMAIL": "email", "PHONE_NUMBER": "phone", "WORK_PHONE": "phone", "COMPANY_NAME": "company",
    "JOB_TITLE": "job_title", "COUNTRY": "country", "COMPANY_SIZE": "company_size", "INDUSTRY": "industry",
}

# LinkedIn Lead Gen form question `predefinedField` -> our field names
LINKEDIN_FIELDS = {
    "FIRST_NAME": "first_name", "LAST_NAME": "last_name", "EMAIL": "email", "WORK_EMAIL": "email",
    "PHONE_NUMBER": "phone", "WORK_PHONE_NUMBER": "phone", "COMPANY_NAME": "company", "JOB_TITLE": "job_title",
    "COUNTRY": "country", "COMPANY_SIZE": "company_size", "INDUSTRY": "industry",
}


def _put(out: dict[str, str], key: str, value: Any) -> None:
    if value is None:
        return
    text = str(value).strip()
    if text and key not in out:  # the first answer for a field wins (e.g. email before work_email)
        out[key] = text


def map_meta_lead(lead: dict[str, Any]) -> dict[str, str]:
    """A Graph API lead (``{"id", "created_time", "field_data": [{"name", "values"}], ...}``) as flat fields."""
    out: dict[str, str] = {}
    for item in lead.get("field_data") or []:
        if not isinstance(item, dict):
            continue
        name = str(item.get("name", "")).strip()
        values = item.get("values") or []
        value = values[0] if isinstance(values, list) and values else None
        if name:
            _put(out, META_FIELDS.get(name.lower(), f"custom[{name}]"), value)
    out.setdefault("channel", "social" if lead.get("is_organic") else "paid")
    _put(out, "custom[meta_form_id]", lead.get("form_id"))
    _put(out, "custom[meta_ad_id]", lead.get("ad_id"))
    _put(out, "campaign", lead.get("campaign_name") or lead.get("campaign_id"))
    return out


def map_google_lead(payload: dict[str, Any]) -> dict[str, str]:
    """A Google Ads lead form webhook body (``user_column_data`` and ids) as flat fields."""
    out: dict[str, str] = {}
    for column in payload.get("user_column_data") or []:
        if not isinstance(column, dict):
            continue
        column_id = str(column.get("column_id", "")).upper()
        key = GOOGLE_COLUMNS.get(column_id) or f"custom[{column.get('column_name') or column_id}]"
        _put(out, key, column.get("string_value"))
    out["channel"] = "paid"
    _put(out, "campaign", payload.get("campaign_id"))
    _put(out, "custom[google_form_id]", payload.get("form_id"))
    _put(out, "custom[gclid]", payload.get("gcl_id"))
    _put(out, "utm_source", "google")
    _put(out, "utm_medium", "cpc")
    return out


def _linkedin_answer(answer: dict[str, Any]) -> str | None:
    details = answer.get("answerDetails") or {}
    text = details.get("textQuestionAnswer")
    if isinstance(text, dict):
        return text.get("answer")
    choice = details.get("multipleChoiceAnswer")
    if isinstance(choice, dict):
        options = choice.get("options") or []
        return ",".join(str(o) for o in options) or None
    return None


def map_linkedin_lead(response: dict[str, Any], form: dict[str, Any] | None = None) -> dict[str, str]:
    """A LinkedIn ``leadFormResponses`` entity (answers by question id) as flat fields, using the form's questions."""
    questions: dict[str, dict[str, Any]] = {}
    for q in ((form or {}).get("content") or {}).get("questions") or []:
        if isinstance(q, dict) and "questionId" in q:
            questions[str(q["questionId"])] = q
    out: dict[str, str] = {}
    answers = (response.get("formResponse") or {}).get("answers") or []
    for answer in answers:
        if not isinstance(answer, dict):
            continue
        qid = str(answer.get("questionId"))
        question = questions.get(qid, {})
        predefined = str(question.get("predefinedField") or answer.get("predefinedField") or "").upper()
        key = LINKEDIN_FIELDS.get(predefined) or f"custom[{question.get('name') or 'question_' + qid}]"
        _put(out, key, _linkedin_answer(answer))
    consents = (response.get("formResponse") or {}).get("consentResponses") or []
    if consents:
        out["consent"] = "true" if all(bool(c.get("accepted")) for c in consents if isinstance(c, dict)) else "false"
    out["channel"] = "paid"
    out["utm_source"] = "linkedin"
    _put(out, "campaign", (response.get("leadMetadata") or {}).get("sponsoredLeadMetadata", {}).get("campaign"))
    return out


def linkedin_form_id(response: dict[str, Any]) -> str | None:
    urn = response.get("versionedLeadGenFormUrn") or response.get("leadGenFormUrn") or ""
    # urn:li:versionedLeadGenForm:(urn:li:leadGenForm:123,1) or urn:li:leadGenForm:123
    tail = str(urn).split("urn:li:leadGenForm:")[-1]
    form_id = tail.split(",")[0].rstrip(")")
    return form_id or None


PLATFORMS = ("meta", "linkedin", "google")


def map_platform_lead(platform: str, raw: dict[str, Any]) -> tuple[dict[str, str], bool]:
    """A platform's stored payload as (flat fields, is_test): the one mapping the fetcher, the Google webhook
    and a quarantine re-process share. LinkedIn's payload is ``{"response": ..., "form": ...}``."""
    if platform == "meta":
        return map_meta_lead(raw), bool(raw.get("is_test"))
    if platform == "linkedin":
        response = raw.get("response") or {}
        return map_linkedin_lead(response, raw.get("form")), bool(response.get("testLead"))
    if platform == "google":
        return map_google_lead(raw), bool(raw.get("is_test"))
    raise ValueError(f"unknown platform {platform}")
