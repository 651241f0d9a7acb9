"""Glue job `ltv-<game>-player-day`: one raw day -> its player_day partition (with _SUCCESS)."""
from __future__ import annotations

import sys

if __package__:
    from glue_jobs import _common as common
else:  # in Glue: _common.py is shipped beside this script (--extra-py-files)
    import _common as common
from ltv.etl import build_player_day


def run(rt: common.Runtime, args: common.Args) -> str:
    day = rt.run_date(args)
    result = build_player_day(rt.engine, rt.config, day)
    return f"player_day dt={day}: {result.rows} rows"


def main(argv: list[str] | None = None, **kwargs) -> int:
    return common.main("player-day", argv, run, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
