"""Quiet hours: patients are not messaged at night or on clinic holidays.

The policy (README "Quiet hours"), all in CLINIC_TIMEZONE:
- a message may go out outside [QUIET_HOURS_START, QUIET_HOURS_END) (default
  20:00-08:00, wrapping midnight) on a day that is not in HOLIDAYS (a holiday
  is quiet all day);
- a message that must precede the appointment (confirmation, reminders,
  cancellation notice) and falls inside quiet hours moves to the NEAREST
  allowed instant that is still before the appointment and not in the past:
  either the next allowed morning or 15 minutes before the previous evening's
  quiet hours (ties go to the later one, closer to the visit); if neither exists
  it is skipped with the reason;
- a message that follows the visit (survey) moves to the next allowed instant.

All arithmetic is on timezone-aware datetimes; wall-clock boundaries are
resolved in the zone for each day, so DST days get the right UTC instants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.core.config import Settings

# The latest allowed instant before quiet hours begin: 15 minutes before the
# boundary, so a message moved there is still claimed and sent inside the
# allowed window even if a tick runs late or the send queue has a backlog.
LAST_ALLOWED_MARGIN = timedelta(minutes=15)
_SEARCH_DAYS = 40  # consecutive holidays longer than this are not a calendar


@dataclass(frozen=True)
class Placement:
    """Where a message lands: `due_at` when it may be sent, else `skip_reason`."""

    due_at: datetime | None
    skip_reason: str | None = None
    moved_reason: str | None = None


@dataclass(frozen=True)
class QuietHours:
    tz: ZoneInfo
    start: time  # quiet from
    end: time  # quiet until
    holidays: frozenset[date]
    channels: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> QuietHours:
        return cls(
            tz=settings.timezone,
            start=settings.QUIET_HOURS_START,
            end=settings.QUIET_HOURS_END,
            holidays=frozenset(date.fromisoformat(d) for d in settings.HOLIDAYS),
            channels=frozenset(settings.QUIET_HOURS_CHANNELS),
        )

    def applies_to(self, channel: str) -> bool:
        return channel in self.channels

    # --- the allowed windows ---------------------------------------------------
    def _at(self, day: date, t: time) -> datetime:
        # A wall time that does not exist (DST gap) resolves with the offset
        # before the gap; the UTC round trip makes it a real instant.
        return datetime.combine(day, t, tzinfo=self.tz).astimezone(UTC)

    def _allowed_windows(self, day: date) -> list[tuple[datetime, datetime]]:
        """Allowed [from, to) intervals of one local day, in UTC."""
        if day in self.holidays:
            return []
        midnight = self._at(day, time(0))
        next_midnight = self._at(day + timedelta(days=1), time(0))
        if self.start > self.end:  # quiet wraps midnight: allowed end..start
            return [(self._at(day, self.end), self._at(day, self.start))]
        # quiet inside the day: allowed 00:00..start and end..24:00
        windows = [(midnight, self._at(day, self.start)), (self._at(day, self.end), next_midnight)]
        return [(a, b) for a, b in windows if a < b]

    def _local_day(self, instant: datetime) -> date:
        return instant.astimezone(self.tz).date()

    def is_quiet(self, instant: datetime) -> bool:
        day = self._local_day(instant)
        return not any(a <= instant < b for a, b in self._allowed_windows(day))

    def next_allowed(self, instant: datetime) -> datetime | None:
        """The earliest allowed instant at or after `instant`."""
        day = self._local_day(instant)
        for offset in range(_SEARCH_DAYS):
            for a, b in self._allowed_windows(day + timedelta(days=offset)):
                if b > instant:
                    return max(a, instant)
        return None

    def previous_allowed(self, instant: datetime) -> datetime | None:
        """The latest allowed instant at or before `instant` (LAST_ALLOWED_MARGIN
        short of the window's end)."""
        day = self._local_day(instant)
        for offset in range(_SEARCH_DAYS):
            for a, b in reversed(self._allowed_windows(day - timedelta(days=offset))):
                if a <= instant < b:
                    return instant
                last = max(a, b - LAST_ALLOWED_MARGIN)
                if last <= instant:
                    return last
        return None

    def local(self, instant: datetime) -> str:
        return instant.astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z")

    # --- the policy --------------------------------------------------------------
    def place_before(
        self, due: datetime, deadline: datetime, now: datetime, channel: str
    ) -> Placement:
        """Place a message that is only useful before `deadline` (the visit)."""
        if due >= deadline:
            return Placement(None, skip_reason="due at or after the appointment starts")
        if not self.applies_to(channel) or not self.is_quiet(due):
            return Placement(due)
        candidates = []
        nxt = self.next_allowed(due)
        if nxt is not None and nxt < deadline:
            candidates.append(nxt)
        prev = self.previous_allowed(due)
        if prev is not None and prev >= now:
            candidates.append(prev)
        if not candidates:
            return Placement(
                None,
                skip_reason=(
                    f"due {self.local(due)} falls in quiet hours and no allowed time "
                    f"remains before the appointment ({self.local(deadline)})"
                ),
            )
        # Nearest to the intended instant; on a tie the later (closer to the visit).
        best = min(candidates, key=lambda c: (abs(c - due), -c.timestamp()))
        return Placement(
            best, moved_reason=f"quiet hours: moved from {self.local(due)} to {self.local(best)}"
        )

    def place_after(self, due: datetime, channel: str) -> Placement:
        """Place a message with no deadline (post-visit survey)."""
        if not self.applies_to(channel) or not self.is_quiet(due):
            return Placement(due)
        nxt = self.next_allowed(due)
        if nxt is None:
            return Placement(None, skip_reason="no allowed sending time in the next 40 days")
        return Placement(
            nxt, moved_reason=f"quiet hours: moved from {self.local(due)} to {self.local(nxt)}"
        )
