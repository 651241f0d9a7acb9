"""Glue job `ltv-<game>-validate`: the data-validation checks of one day's raw logs.

Writes the report to curated/monitoring/validation/dt=<day>.json whatever the outcome; fails
(stopping the daily workflow) when an error-severity check fails.
"""
from __future__ import annotations

from glue_jobs import _common as common  # from the core wheel on the job's Python path
from ltv.validation import validate_day


def run(rt: common.Runtime, args: common.Args) -> str:
    day = rt.run_date(args)
    reports = rt.lake.validation_reports
    try:
        report = validate_day(rt.engine, rt.config, day, now=rt.now(), report_dir=reports)
    finally:
        if (reports / f"dt={day}.json").exists():
            rt.publish(reports / f"dt={day}.json")
    return f"raw logs of {day} passed {len(report.results)} checks ({len(report.warnings)} warnings)"


def main(argv: list[str] | None = None, **kwargs) -> str:
    return common.main("validate", argv, run, **kwargs)


if __name__ == "__main__":
    main()
