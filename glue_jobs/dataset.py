"""Glue job `ltv-<game>-dataset`: build a dataset version (immutable; a rerun is a no-op).

`--version` is a configured version (its name, or v1..vN), `rolling-YYYY-MM-DD`, or `rolling`:
the newest window whose test labels are complete with the data up to the run date. Placed and
checked against the raw logs by `ltv.horizon.plan`, the rule every command applies.
"""
from __future__ import annotations

import datetime as dt

from glue_jobs import _common as common  # from the core wheel on the job's Python path
from ltv import horizon
from ltv.datasets import build_dataset
from ltv.lake import SUCCESS


def run(rt: common.Runtime, args: common.Args) -> str:
    version = args.get("version", "rolling")
    if version == "rolling":  # the run date's window: logs up to and including the run date
        day = rt.run_date(args) + dt.timedelta(days=1)
        version, span = f"rolling-{day}", horizon.log_span(rt.engine, rt.config, before=day)
    else:
        span = horizon.log_span(rt.engine, rt.config)
    plan = horizon.plan(rt.config, span, version)
    spec = plan.specs[0]
    target = rt.lake.datasets / spec.name
    rt.fetch(target, ["manifest.json", SUCCESS])  # an existing version is kept, and checked for conflicts
    manifest = build_dataset(rt.engine, plan.config, rt.lake, spec)
    rt.publish(target, replace=False)
    return plan.message + (" " if plan.message else "") + f"dataset {spec.name}: " + ", ".join(f"{k} {v} rows" for k, v in manifest["rows"].items())


def main(argv: list[str] | None = None, **kwargs) -> str:
    return common.main("dataset", argv, run, extra=("version",), **kwargs)


if __name__ == "__main__":
    main()
