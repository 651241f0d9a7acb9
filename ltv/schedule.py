"""AWS cron expressions evaluated at day granularity, so the local loop keeps the cloud's schedule.

An expression `cron(min hour day-of-month month day-of-week year)` fires on a day when its
date fields match; the time of day is ignored (the loop runs once a day). Supported: `*`, `?`,
lists, ranges, steps, names (JAN, MON), `L` (last day of month), `W`-less day numbers and
`DOW#n` (n-th weekday of the month). Day-of-week follows AWS: 1 = SUN .. 7 = SAT.
"""
from __future__ import annotations

import calendar
import datetime as dt

from ltv.config import AWS_CRON, CutoffSchedule

MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


def _values(field: str, names: dict[str, int], low: int, high: int) -> set[int]:
    out: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/")
            step = int(s)
        if part in ("*", "?"):
            lo, hi = low, high
        elif "-" in part:
            a, b = part.split("-")
            lo, hi = names.get(a, None) or int(a), names.get(b, None) or int(b)
        else:
            lo = hi = names.get(part, None) or int(part)
            if step > 1:
                hi = high
        out |= set(range(lo, hi + 1, step))
    return out


def _aws_weekday(day: dt.date) -> int:
    return (day.isoweekday() % 7) + 1  # SUN=1 .. SAT=7


def matches(expression: str, day: dt.date) -> bool:
    """True if the AWS cron expression fires on `day`."""
    m = AWS_CRON.match(expression)
    if not m:
        raise ValueError(f"not an AWS cron expression: {expression!r}")
    _, _, dom, month, dow, year = m.groups()
    if year not in ("*", "?") and day.year not in _values(year, {}, 1970, 2199):
        return False
    if day.month not in _values(month, MONTHS, 1, 12):
        return False
    last = calendar.monthrange(day.year, day.month)[1]
    if dom != "?":
        return day.day == last if dom == "L" else day.day in _values(dom, {}, 1, 31)
    if "#" in dow:
        name, nth = dow.split("#")
        weekday = DAYS.get(name, None) or int(name)
        return _aws_weekday(day) == weekday and (day.day - 1) // 7 + 1 == int(nth)
    if dow.endswith("L") and len(dow) > 1:
        weekday = DAYS.get(dow[:-1], None) or int(dow[:-1])
        return _aws_weekday(day) == weekday and day.day + 7 > last
    return _aws_weekday(day) in _values(dow, DAYS, 1, 7)


def is_scoring_day(cutoffs: CutoffSchedule, scoring: str, day: dt.date) -> bool:
    """True if the game is scored on `day`: a cutoff day that the `schedules.scoring` cron matches
    (the same rule for the local loop, the scoring Lambda and the missed-run check)."""
    return cutoffs.is_cutoff(day) and matches(scoring, day)
