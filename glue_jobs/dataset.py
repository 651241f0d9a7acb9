"""Glue job `ltv-<game>-dataset`: build a dataset version (immutable; a rerun is a no-op).

`--version` is a configured version (its name, or v1..vN), `rolling-YYYY-MM-DD`, or `rolling`:
the newest window whose test labels are complete with the data up to the run date.
"""
from __future__ import annotations

import datetime as dt

from glue_jobs import _common as common  # from the core wheel on the job's Python path
from ltv.datasets import build_dataset, find_spec, rolling_spec
from ltv.lake import SUCCESS


def run(rt: common.Runtime, args: common.Args) -> str:
    version = args.get("version", "rolling")
    if version == "rolling":
        spec = rolling_spec(rt.config, rt.run_date(args) + dt.timedelta(days=1))
    else:
        spec = find_spec(rt.config, version)
    target = rt.lake.datasets / spec.name
    rt.fetch(target, ["manifest.json", SUCCESS])  # an existing version is kept, and checked for conflicts
    manifest = build_dataset(rt.engine, rt.config, rt.lake, spec)
    rt.publish(target, replace=False)
    return f"dataset {spec.name}: " + ", ".join(f"{k} {v} rows" for k, v in manifest["rows"].items())


def main(argv: list[str] | None = None, **kwargs) -> str:
    return common.main("dataset", argv, run, extra=("version",), **kwargs)


if __name__ == "__main__":
    main()
