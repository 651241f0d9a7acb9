"""Glue job `ltv-<game>-cutoffs`: features and labels of the cutoffs a finished day completes.

After day d is aggregated, the features of cutoff d+1 (they read days before it) and the labels
of cutoff d+1-horizon (their window ends with d) can be built. A cutoff's features start with its
whole-history summary (`player_summary`: the previous cutoff's merged with the days since).
`--cutoff YYYY-MM-DD` builds one cutoff instead (backfill): its summary and features, and its
labels once their window is complete.
"""
from __future__ import annotations

import datetime as dt

from glue_jobs import _common as common  # from the core wheel on the job's Python path
from ltv import etl
from ltv.config import GameConfig


def due_cutoffs(config: GameConfig, day: dt.date) -> tuple[list[dt.date], list[dt.date]]:
    """Cutoffs whose features, and cutoffs whose labels, become computable once `day` is aggregated."""
    after = day + etl.DAY
    labels_for = after - dt.timedelta(days=etl.label_horizon(config))
    return ([after] if config.cutoffs.is_cutoff(after) else [],
            [labels_for] if config.cutoffs.is_cutoff(labels_for) else [])


def run(rt: common.Runtime, args: common.Args) -> str:
    days = etl.PlayerDays(rt.engine, rt.config)  # the steps' player_day days overlap: each is checked once
    if "cutoff" in args:
        cutoff = dt.date.fromisoformat(args["cutoff"])
        features, labels = [cutoff], [cutoff] if etl.labels_available(rt.engine, rt.config, cutoff, days=days) else []
    else:
        features, labels = due_cutoffs(rt.config, rt.run_date(args))
    done = []
    for c in features:
        summary = etl.ensure_summary(rt.engine, rt.config, c, days=days)
        done.append(f"summary {c}: " + (f"{summary.rows} players" if summary else "current"))
        features_built = etl.build_features(rt.engine, rt.config, c, summary_ensured=True, days=days)
        done.append(f"features {c}: {features_built.rows} rows")
    done += [f"labels {c}: {etl.build_labels(rt.engine, rt.config, c, days=days).rows} rows" for c in labels]
    return "; ".join(done) or "no cutoff is due"


def main(argv: list[str] | None = None, **kwargs) -> str:
    return common.main("cutoffs", argv, run, extra=("cutoff",), **kwargs)


if __name__ == "__main__":
    main()
