"""Glue job `ltv-<game>-player-day`: one raw day -> its player_day partition (with _SUCCESS)."""
from __future__ import annotations

from glue_jobs import _common as common  # from the core wheel on the job's Python path
from ltv.etl import build_player_day
from ltv.validation import duplicate_free_days


def run(rt: common.Runtime, args: common.Args) -> str:
    day = rt.run_date(args)
    # the validate job's report of this day: if it found no duplicates in the partition that is
    # still there, the aggregation can skip exact-duplicate removal (2/3 of its work)
    rt.fetch(rt.lake.validation_reports, [f"dt={day}.json"])
    clean = duplicate_free_days(rt.lake.validation_reports, rt.engine, [str(day)])
    result = build_player_day(rt.engine, rt.config, day, duplicate_free=clean)
    return f"player_day dt={day}: {result.rows} rows ({'validated duplicate-free' if clean else 'deduplicated'})"


def main(argv: list[str] | None = None, **kwargs) -> str:
    return common.main("player-day", argv, run, **kwargs)


if __name__ == "__main__":
    main()
