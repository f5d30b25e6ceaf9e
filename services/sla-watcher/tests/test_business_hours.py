"""Business-hours arithmetic: overnight, weekend, daylight-saving change, holiday."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from leadbridge_sla_watcher.business_hours import (
    Calendar,
    NoWorkingTime,
    add_business_minutes,
    business_minutes_between,
    parse_window,
)

BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")


def local(tz, *args):
    return datetime(*args, tzinfo=tz)


def test_within_one_day():
    cal = Calendar.of("Europe/Berlin")
    start = local(BERLIN, 2026, 3, 10, 10, 0)  # Tuesday
    assert add_business_minutes(start, 60, cal) == local(BERLIN, 2026, 3, 10, 11, 0)


def test_result_is_utc():
    cal = Calendar.of("Europe/Berlin")
    out = add_business_minutes(local(BERLIN, 2026, 3, 10, 10, 0), 30, cal)
    assert out.tzinfo == UTC


def test_ends_exactly_at_close_of_business():
    cal = Calendar.of("Europe/Berlin")
    assert add_business_minutes(local(BERLIN, 2026, 3, 10, 16, 0), 60, cal) == local(BERLIN, 2026, 3, 10, 17, 0)


def test_overnight_carries_to_next_morning():
    cal = Calendar.of("Europe/Berlin")
    start = local(BERLIN, 2026, 3, 10, 16, 30)
    assert add_business_minutes(start, 60, cal) == local(BERLIN, 2026, 3, 11, 9, 30)


def test_start_outside_hours_counts_from_next_opening():
    cal = Calendar.of("Europe/Berlin")
    assert add_business_minutes(local(BERLIN, 2026, 3, 10, 22, 0), 15, cal) == local(BERLIN, 2026, 3, 11, 9, 15)
    assert add_business_minutes(local(BERLIN, 2026, 3, 10, 6, 0), 15, cal) == local(BERLIN, 2026, 3, 10, 9, 15)


def test_weekend_is_skipped():
    cal = Calendar.of("Europe/Berlin")
    friday = local(BERLIN, 2026, 3, 13, 16, 0)
    assert add_business_minutes(friday, 120, cal) == local(BERLIN, 2026, 3, 16, 10, 0)  # Monday
    saturday = local(BERLIN, 2026, 3, 14, 12, 0)
    assert add_business_minutes(saturday, 10, cal) == local(BERLIN, 2026, 3, 16, 9, 10)


def test_holiday_is_skipped():
    cal = Calendar.of("Europe/Berlin", holidays=[date(2026, 12, 24), date(2026, 12, 25)])
    start = local(BERLIN, 2026, 12, 23, 16, 0)  # Wednesday; Thu+Fri holidays
    assert add_business_minutes(start, 90, cal) == local(BERLIN, 2026, 12, 28, 9, 30)


def test_dst_spring_forward_over_weekend():
    # Europe/Berlin moves from +01:00 to +02:00 on Sunday 2026-03-29
    cal = Calendar.of("Europe/Berlin")
    friday = local(BERLIN, 2026, 3, 27, 16, 30)
    due = add_business_minutes(friday, 60, cal)
    assert due == local(BERLIN, 2026, 3, 30, 9, 30)
    assert due == datetime(2026, 3, 30, 7, 30, tzinfo=UTC)  # +02:00 now


def test_dst_fall_back_over_weekend_new_york():
    # America/New_York leaves DST on Sunday 2026-11-01
    cal = Calendar.of("America/New_York")
    friday = local(NY, 2026, 10, 30, 16, 0)
    due = add_business_minutes(friday, 90, cal)
    assert due == datetime(2026, 11, 2, 14, 30, tzinfo=UTC)  # 09:30 EST (-05:00)


def test_dst_day_inside_a_round_the_clock_window():
    # a 24/7 desk: the spring-forward day has only 23 real hours
    cal = Calendar.of("Europe/Berlin", days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], hours=["00:00-24:00"])
    start = local(BERLIN, 2026, 3, 29, 0, 0)
    assert add_business_minutes(start, 23 * 60, cal) == local(BERLIN, 2026, 3, 30, 0, 0)
    assert business_minutes_between(start, local(BERLIN, 2026, 3, 30, 0, 0), cal) == 23 * 60


def test_assignee_timezone_overrides_calendar_zone():
    cal = Calendar.of("UTC").with_tz("America/New_York")
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 08:00 in New York (EDT from 8 March)
    assert add_business_minutes(start, 30, cal) == local(NY, 2026, 3, 10, 9, 30)


def test_split_windows_lunch_break():
    cal = Calendar.of("UTC", hours=["09:00-12:00", "13:00-17:00"])
    start = datetime(2026, 3, 10, 11, 30, tzinfo=UTC)
    assert add_business_minutes(start, 60, cal) == datetime(2026, 3, 10, 13, 30, tzinfo=UTC)


def test_zero_minutes_is_next_working_instant():
    cal = Calendar.of("UTC")
    assert add_business_minutes(datetime(2026, 3, 14, 12, tzinfo=UTC), 0, cal) == \
        datetime(2026, 3, 16, 9, tzinfo=UTC)


def test_minutes_between_is_inverse_of_add():
    cal = Calendar.of("Europe/Berlin", holidays=[date(2026, 4, 3)])
    start = local(BERLIN, 2026, 3, 27, 15, 7)
    for minutes in (1, 59, 480, 1000, 5000):
        assert business_minutes_between(start, add_business_minutes(start, minutes, cal), cal) == pytest.approx(minutes)


def test_no_working_time_fails_instead_of_looping():
    cal = Calendar.of("UTC", days=[])
    with pytest.raises(NoWorkingTime):
        add_business_minutes(datetime(2026, 1, 1, tzinfo=UTC), 5, cal)


@pytest.mark.parametrize("bad", ["9-17", "17:00-09:00", "09:00-25:00", "nonsense"])
def test_bad_windows_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_window(bad)


def test_naive_start_is_rejected():
    with pytest.raises(ValueError):
        add_business_minutes(datetime(2026, 1, 1), 5, Calendar.of())


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]


@settings(max_examples=200, deadline=None)
@given(zone=st.sampled_from(ZONES), offset_minutes=st.integers(0, 366 * 24 * 60),
       minutes=st.floats(0, 20_000, allow_nan=False))
def test_property_add_then_measure_round_trips_and_lands_in_working_time(zone, offset_minutes, minutes):
    cal = Calendar.of(zone, hours=["08:30-12:00", "13:00-17:30"], holidays=[date(2026, 12, 25), date(2026, 4, 6)])
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=offset_minutes)
    due = add_business_minutes(start, minutes, cal)
    assert due >= start
    assert business_minutes_between(start, due, cal) == pytest.approx(minutes, abs=1e-6)
    local = due.astimezone(ZoneInfo(zone))
    assert cal.is_working_day(local.date())
    assert any(a <= due <= b for a, b in cal.windows_on(local.date()))
