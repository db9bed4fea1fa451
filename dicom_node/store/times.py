"""Times as the store keeps them: naive UTC in its columns, UTC said explicitly in files, and when
failed queued work (a description, a report) is due again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def iso(moment: datetime | None) -> str | None:
    """Times in the store are naive UTC; files say so explicitly."""
    return moment.replace(tzinfo=timezone.utc).isoformat() if moment else None


def parse_time(text: str) -> datetime:
    """A time read from a file, as the store keeps it: naive UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def retry_wait(failed_before: int, retry_seconds: float, max_retry_seconds: float) -> timedelta:
    """How long work that failed once more waits: retry_seconds, doubled at each earlier failure, capped."""
    return timedelta(seconds=min(retry_seconds * 2**failed_before, max_retry_seconds))
