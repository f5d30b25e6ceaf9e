"""The express lane's time budget: pure arithmetic over a clock (no broker, no database)."""

from __future__ import annotations

import pytest
from leadbridge_events import express_pace
from leadbridge_events.express import ExpressSettings
from leadbridge_events.express_pace import TimeBudget
from pydantic import ValidationError


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_lane_holds_the_main_runner_at_most_its_share_of_the_time(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(express_pace.time, "monotonic", clock)
    budget = TimeBudget(0.1, window=10)  # 1 s of holding per 10 s
    assert budget.available()
    budget.spend(0.4)  # a slow express transaction on a loaded machine
    assert budget.available()
    budget.spend(0.7)  # overdrawn: 1.1 s of the 1 s
    assert not budget.available()
    clock.now += 0.5  # 0.05 s earned back: still overdrawn
    assert not budget.available()
    clock.now += 0.6  # 0.11 s earned in all
    assert budget.available()
    clock.now += 3600  # an idle hour earns no more than the window's share
    budget.spend(1.0)
    assert not budget.available()


def test_the_share_is_a_fraction_of_the_time():
    assert ExpressSettings(max_share=0.25).max_share == 0.25
    for bad in (0, 1.5):
        with pytest.raises(ValidationError):
            ExpressSettings(max_share=bad)
