"""Time, injectable, and the quota day: midnight to midnight in the configured time zone."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from codey.errors import ConfigError


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class QuotaDay:
    """Which quota day an instant belongs to, and how long until the next one starts."""

    def __init__(self, timezone: str) -> None:
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"Unknown time zone {timezone!r}.", hint="Use an IANA name.") from exc

    def day(self, now: datetime) -> str:
        return now.astimezone(self.zone).date().isoformat()

    def next_reset(self, now: datetime) -> datetime:
        local = now.astimezone(self.zone)
        tomorrow = local.date() + timedelta(days=1)
        return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=self.zone)

    def seconds_to_reset(self, now: datetime) -> int:
        """Whole seconds until midnight in the zone (at least 1), across DST changes."""
        delta = self.next_reset(now).astimezone(UTC) - now.astimezone(UTC)
        return max(1, math.ceil(delta.total_seconds()))
