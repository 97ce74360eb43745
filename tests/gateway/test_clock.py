from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from codey.errors import ConfigError
from codey.gateway.clock import QuotaDay

LA = ZoneInfo("America/Los_Angeles")


def test_the_day_is_the_date_in_the_zone() -> None:
    day = QuotaDay("America/Los_Angeles")
    # 05:00 UTC on the 26th is still the 25th in Los Angeles
    assert day.day(datetime(2026, 11, 26, 5, 0, tzinfo=UTC)) == "2026-11-25"
    assert day.day(datetime(2026, 11, 26, 8, 0, tzinfo=UTC)) == "2026-11-26"


def test_seconds_to_reset_on_an_ordinary_day() -> None:
    day = QuotaDay("America/Los_Angeles")
    assert day.seconds_to_reset(datetime(2026, 11, 25, 23, 59, 30, tzinfo=LA)) == 30
    assert day.seconds_to_reset(datetime(2026, 11, 25, 12, 0, tzinfo=LA)) == 12 * 3600


def test_a_day_of_25_hours_when_summer_time_ends() -> None:
    day = QuotaDay("America/Los_Angeles")
    # 2026-11-01: clocks go back at 02:00, so 00:30 is 24.5 hours before midnight
    assert day.seconds_to_reset(datetime(2026, 11, 1, 0, 30, tzinfo=LA)) == 24 * 3600 + 1800


def test_a_day_of_23_hours_when_summer_time_starts() -> None:
    day = QuotaDay("America/Los_Angeles")
    # 2026-03-08: clocks go forward at 02:00, so 00:30 is 22.5 hours before midnight
    assert day.seconds_to_reset(datetime(2026, 3, 8, 0, 30, tzinfo=LA)) == 22 * 3600 + 1800


def test_an_unknown_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        QuotaDay("Mars/Olympus")
