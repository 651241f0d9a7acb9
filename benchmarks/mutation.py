"""`make mutation`: mutation testing of the safety-critical modules (not part of `make test`).

Each module is mutated by mutmut (every mutant is one small change to one function) and run
against the fast tests that guard it (the map below: no AutoGluon training, so a run fits on 2
cores); SQL, which mutmut cannot reach, gets the hand-written one-line mutations of `SQL_MUTANTS`,
each applied to a copy and run against the SQL tests. Every module is run in its own scratch copy
of the tree (benchmarks/out/mutation/<module>/), never in the work tree. Results: a table on
stdout and benchmarks/out/mutation/summary.json with every surviving mutant's diff.

    .venv/bin/python benchmarks/mutation.py                    # every module in MODULES
    .venv/bin/python benchmarks/mutation.py promotion runs     # some of them
    .venv/bin/python benchmarks/mutation.py sql                # the SQL mutants only
    .venv/bin/python benchmarks/mutation.py btyd --mutants 'ltv.models.btyd.x_fit__mutmut_*'   # some mutants
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "mutation"
BIN = Path(sys.executable).parent

# module -> (source file, the fast tests that guard it: pytest arguments)
MODULES: dict[str, tuple[str, list[str]]] = {
    "promotion": ("ltv/promotion.py", ["tests/test_promotion.py"]),
    "runs": ("ltv/runs.py", ["tests/test_runs.py"]),
    "registry": ("ltv/registry.py", ["tests/test_registry_rules.py"]),
    "sagemaker_registry": ("ltv/sagemaker_registry.py", [  # against moto, no trained model
        f"tests/test_registry.py::test_sagemaker_{name}" for name in (
            "champion_is_the_latest_approved_across_pages", "registry_leaves_no_directory_behind_unless_it_loads_a_model",
            "changes_made_in_studio_show_in_the_history_and_count_for_rollback",
            "concurrent_changes_keep_each_others_history", "registry_needs_the_group_and_says_how_to_get_it",
            "without_credentials_is_a_registry_error_not_a_traceback",
            "register_stores_the_archive_metrics_lineage_and_serving_spec",  # check_artifact stubbed
            "load_unpacks_once_and_artifact_json_streams_one_document",
            "approve_needs_the_archive_and_rollback_says_why_on_both_versions",
            "history_gives_up_after_its_attempts_and_failures_name_the_call",
            "history_of_a_package_marks_changes_made_outside_ltv",
            "metrics_are_empty_when_the_statistics_are_missing_or_unreadable")]
        + [f"tests/test_registry.py::test_metadata_values_and_descriptions_{name}" for name in (
            "are_what_sagemaker_accepts", "keep_what_they_can_and_cut_where_aws_counts")]),
    "horizon": ("ltv/horizon.py", ["tests/test_horizon.py"]),
    "baselines": ("ltv/models/baselines.py", ["tests/test_baselines.py",
                                              "tests/test_models.py::test_popularity_baseline_segments_and_modes",
                                              "tests/test_models.py::test_recent_revenue_baseline_scales_to_the_horizon"]),
    "monitoring": ("ltv/monitoring.py", ["tests/test_monitoring_rules.py", "tests/test_monitor_run.py", *(
        f"tests/test_monitoring.py::test_{name}" for name in (  # the model-free ones of the slow file
            "webhook_receives_the_alert_and_failures_do_not_raise", "psi_is_zero_for_the_same_distribution_and_large_for_a_shift",
            "an_incident_opens_once_learns_its_retrain_and_resolves_when_the_fix_recovers",
            "a_promoted_retrain_that_does_not_recover_escalates_once",
            "rejected_retrains_ask_again_then_escalate_with_the_reason", "the_alert_text_names_the_incident_state"))]),
    "btyd": ("ltv/models/btyd.py", ["tests/test_btyd.py"]),
    "etl": ("ltv/etl.py", ["tests/test_etl_rules.py", "tests/test_sql.py",  # the windows, requirements and builds
                           "tests/test_etl.py::test_a_partitions_definition_covers_the_python_that_shapes_it"]),
    "evaluate": ("ltv/evaluate.py", ["tests/test_evaluate.py", "tests/test_baselines.py", "tests/test_evaluation_honesty.py::"
                                     "test_the_in_sample_boundary_is_the_day_after_the_last_label_any_training_row_read"]),
    "crashkit": ("tests/crashkit.py", ["tests/test_crashkit.py"]),
}

# ltv/sql/*: (file, the exact text of one line's change, its replacement), run against SQL_TESTS: the
# hand-made players on every window edge and the rendering checks, seconds per mutant. The simulated
# end-to-end files (test_etl, test_etl_reference, test_summary: 3,881 s for 14 mutants) kill none these miss
SQL_TESTS = ["tests/test_sql_boundaries.py", "tests/test_sql.py"]
SQL_MUTANTS: list[tuple[str, str, str]] = [
    ("ltv/sql/labels.sql", "WHERE dt >= {{ cutoff | lit }} AND dt < {{ label_end | lit }}",
     "WHERE dt >= {{ cutoff | lit }} AND dt <= {{ label_end | lit }}"),            # labels read one day too many
    ("ltv/sql/labels.sql", "WHERE dt >= {{ cutoff | lit }} AND dt < {{ label_end | lit }}",
     "WHERE dt >= {{ window_start | lit }} AND dt < {{ label_end | lit }}"),       # labels read the history
    ("ltv/sql/labels.sql", "WHERE dt >= {{ window_start | lit }} AND dt < {{ cutoff | lit }}",
     "WHERE dt >= {{ window_start | lit }} AND dt <= {{ cutoff | lit }}"),         # population sees the cutoff day
    ("ltv/sql/features.sql", "    WHERE dt < {{ cutoff | lit }} AND (dt >= {{ recent_start | lit }} OR purchases > 0)",
     "    WHERE dt <= {{ cutoff | lit }} AND (dt >= {{ recent_start | lit }} OR purchases > 0)"),  # features see the cutoff
    ("ltv/sql/player_summary.sql", "{% endif %}dt < {{ cutoff | lit }}",
     "{% endif %}dt <= {{ cutoff | lit }}"),                                        # the summary sees the cutoff day
    ("ltv/sql/features.sql", "i.install_time < TIMESTAMP {{ cutoff_ts | lit }}",
     "i.install_time <= TIMESTAMP {{ cutoff_ts | lit }}"),                           # installs at the cutoff instant
    # beyond the cutoff boundaries: the other windows and the purchase filters
    ("ltv/sql/features.sql", "        WHERE dt >= {{ recent_start | lit }}",
     "        WHERE dt >= {{ window_start | lit }}"),                                   # steps start at the population window
    ("ltv/sql/features.sql", "CASE WHEN dt >= {{ window_start | lit }} THEN 1 ELSE 0 END) AS BIGINT) AS active_days_window",
     "CASE WHEN dt > {{ window_start | lit }} THEN 1 ELSE 0 END) AS BIGINT) AS active_days_window"),  # window a day short
    ("ltv/sql/player_summary.sql", "SUM(CASE WHEN purchases > 0 THEN 1 ELSE 0 END) AS purchase_days",
     "SUM(CASE WHEN purchases >= 0 THEN 1 ELSE 0 END) AS purchase_days"),            # every day a purchase day
    ("ltv/sql/player_summary.sql", "dt >= {{ previous | lit }} AND {% endif %}dt < {{ cutoff | lit }}",
     "dt > {{ previous | lit }} AND {% endif %}dt < {{ cutoff | lit }}"),            # incremental summary skips a day
    ("ltv/sql/labels.sql", "COALESCE(SUM(CASE WHEN f.dt < {{ ltv_end | lit }} THEN f.revenue END), 0.0) AS ltv,",
     "COALESCE(SUM(CASE WHEN f.dt < {{ purchase_end | lit }} THEN f.revenue END), 0.0) AS ltv,"),  # ltv over the day horizon
    ("ltv/sql/labels.sql", "COALESCE(MIN(CASE WHEN f.purchases > 0 AND f.dt < {{ purchase_end | lit }}",
     "COALESCE(MIN(CASE WHEN f.dt < {{ purchase_end | lit }}"),                      # next purchase day: any active day
    ("ltv/sql/labels.sql", "CAST(f.dt AS DATE)) + 1 END), 0) AS next_purchase_day,",
     "CAST(f.dt AS DATE)) END), 0) AS next_purchase_day,"),                          # day 0 = the cutoff day
    ("ltv/sql/labels.sql", "CASE WHEN COUNT(CASE WHEN f.dt < {{ ltv_end | lit }} THEN 1 END) = 0 THEN 1 ELSE 0 END AS churned",
     "CASE WHEN COUNT(CASE WHEN f.dt < {{ purchase_end | lit }} THEN 1 END) = 0 THEN 1 ELSE 0 END AS churned"),  # churn window
    # the other edges (2026-12-08): each label window's own end, the population's and steps' first day,
    # the installs read, the player_day range and the event's day
    ("ltv/sql/labels.sql", "WHERE dt >= {{ window_start | lit }} AND dt < {{ cutoff | lit }}",
     "WHERE dt > {{ window_start | lit }} AND dt < {{ cutoff | lit }}"),           # labels' population a day short
    ("ltv/sql/labels.sql", "COALESCE(SUM(CASE WHEN f.dt < {{ ltv_end | lit }} THEN f.revenue END), 0.0) AS ltv,",
     "COALESCE(SUM(CASE WHEN f.dt <= {{ ltv_end | lit }} THEN f.revenue END), 0.0) AS ltv,"),  # ltv a day long
    ("ltv/sql/labels.sql", "CASE WHEN COALESCE(SUM(CASE WHEN f.dt < {{ ltv_end | lit }} THEN f.revenue END), 0.0) > 0",
     "CASE WHEN COALESCE(SUM(CASE WHEN f.dt < {{ purchase_end | lit }} THEN f.revenue END), 0.0) > 0"),  # payer
    ("ltv/sql/labels.sql", "COALESCE(MIN(CASE WHEN f.purchases > 0 AND f.dt < {{ purchase_end | lit }}",
     "COALESCE(MIN(CASE WHEN f.purchases > 0 AND f.dt <= {{ purchase_end | lit }}"),  # purchase window a day long
    ("ltv/sql/labels.sql", "CASE WHEN COUNT(CASE WHEN f.dt < {{ ltv_end | lit }} THEN 1 END) = 0",
     "CASE WHEN COUNT(CASE WHEN f.dt <= {{ ltv_end | lit }} THEN 1 END) = 0"),      # churn window a day long
    ("ltv/sql/features.sql", "FLOOR((DATE_DIFF('day', CAST(dt AS DATE), DATE {{ cutoff | lit }}) - 1) /",
     "FLOOR(DATE_DIFF('day', CAST(dt AS DATE), DATE {{ cutoff | lit }}) /"),         # a step's first day in the next
    ("ltv/sql/features.sql", "        WHERE dt >= {{ recent_start | lit }}",
     "        WHERE dt > {{ recent_start | lit }}"),                                    # the oldest step a day short
    ("ltv/sql/features.sql", "    WHERE dt < {{ cutoff | lit }} AND (dt >= {{ recent_start | lit }} OR purchases > 0)",
     "    WHERE dt < {{ cutoff | lit }} AND dt >= {{ recent_start | lit }}"),          # median gap of recent buys only
    ("ltv/sql/features.sql", "{% if players_partitioned %}dt < {{ cutoff | lit }}",
     "{% if players_partitioned %}dt <= {{ cutoff | lit }}"),                         # installs read the cutoff's day
    ("ltv/sql/features.sql", "AND (i.install_time IS NULL OR i.install_time < TIMESTAMP {{ cutoff_ts | lit }})",
     "AND i.install_time < TIMESTAMP {{ cutoff_ts | lit }}"),                          # no install record: left out
    ("ltv/sql/features.sql", "WHERE p.active_days_window > 0", "WHERE p.active_days_window >= 0"),  # anyone in the steps
    ("ltv/sql/player_day.sql", "WHERE dt BETWEEN {{ start | lit }} AND {{ end | lit }}",
     "WHERE dt >= {{ start | lit }} AND dt < {{ end | lit }}"),                     # the range half-open: last day lost
    ("ltv/sql/player_day.sql", "      AND CAST({{ col.event_time | q }} AS DATE) = CAST(dt AS DATE)\n", ""),  # any day's event
]


def scratch(name: str) -> Path:
    """A fresh copy of the tree's tracked and unignored files."""
    dest = OUT / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    for rel in filter(None, files):
        src = ROOT / rel.decode()
        if src.is_file():
            target = dest / rel.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PATH": f"{BIN}:{os.environ['PATH']}"}


def run_module(name: str, children: int, only: list[str] | None = None) -> dict:
    source, tests = MODULES[name]
    where = scratch(name)
    package = source.split("/")[0]
    if package == "tests":
        # a test helper (tests/crashkit.py) is imported as a top-level module (`import crashkit`: pytest puts
        # tests/ on sys.path), but mutmut names a mutant by its path (`tests.crashkit.x_...`) and a module
        # imported under another name never switches to its mutants. Move it to the root of the copy: mutmut
        # then names it `crashkit`, and the tests' `import crashkit`, no longer finding it in tests/, loads
        # the mutated copy from mutmut's root on sys.path: the same code under the same name.
        source = package = Path(source).name
        (where / "tests" / source).rename(where / source)
    # mutmut reads [tool.mutmut] from pyproject.toml first: keep it out of the copy, configure in setup.cfg
    (where / "setup.cfg").write_text("[mutmut]\n" + "\n".join([
        f"source_paths={package}", f"only_mutate={source}",
        "pytest_add_cli_args_test_selection=" + "\n    ".join(tests),
        "pytest_add_cli_args=-p no:xdist\n    -p no:randomly",
        # a mutant that makes a search loop forever is killed by a timeout: 15x the test's own time (mutmut's
        # default) cost ~10 min per such mutant of horizon.py on a busy machine
        "timeout_multiplier=2",
        "also_copy=" + "\n    ".join(d for d in ("config", "glue_jobs", "pipelines", "lambdas", "ltv", "tests")
                                      if d != package),
    ]) + "\n")
    started = time.monotonic()
    log = where / "mutmut.log"
    with open(log, "w") as f:
        subprocess.run(["mutmut", "run", "--max-children", str(children), *(only or [])], cwd=where, env=env(), stdout=f,
                       stderr=subprocess.STDOUT, check=False)
    listing = subprocess.run(["mutmut", "results", "--all", "true"], cwd=where, env=env(), capture_output=True,
                             text=True).stdout
    status = {mutant: state for mutant, state in (line.strip().rsplit(": ", 1) for line in listing.splitlines()
                                                  if ": " in line) if state != "not checked" or not only}
    survived = [mutant for mutant, state in status.items() if state == "survived"]
    show = ("import json, sys\nfrom mutmut.__main__ import find_mutant, get_diff_for_mutant\n"
            "print(json.dumps({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in json.load(sys.stdin)}))")
    diffs = json.loads(subprocess.run([sys.executable, "-c", show], cwd=where, env=env(), input=json.dumps(survived),
                                      capture_output=True, text=True, check=True).stdout) if survived else {}
    survivors = {m: [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
                 for m, diff in diffs.items()}
    counts: dict[str, int] = {}
    for state in status.values():
        counts[state] = counts.get(state, 0) + 1
    return {"module": MODULES[name][0], "tests": tests, "only": only, "counts": counts, "survivors": survivors,
            "wall_s": round(time.monotonic() - started, 1)}


def run_sql() -> dict:
    where = scratch("sql")
    baseline = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:xdist", *SQL_TESTS], cwd=where,
                              env=env() | {"PYTHONPATH": str(where)}, capture_output=True, text=True)
    if baseline.returncode:
        raise SystemExit(f"the SQL tests fail without a mutant:\n{baseline.stdout[-2000:]}")
    counts, survivors, started = {"killed": 0, "survived": 0}, {}, time.monotonic()
    for file, old, new in SQL_MUTANTS:
        path = where / file
        original = path.read_text()
        if original.count(old) != 1:
            raise SystemExit(f"SQL mutant {file}: {old!r} occurs {original.count(old)} times (must be once)")
        path.write_text(original.replace(old, new))
        try:
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:xdist", *SQL_TESTS],
                                    cwd=where, env=env() | {"PYTHONPATH": str(where)}, capture_output=True)
        finally:
            path.write_text(original)
        state = "killed" if result.returncode else "survived"
        counts[state] += 1
        if state == "survived":
            survivors[f"{file}: {old} -> {new}"] = []
    return {"module": "ltv/sql/*.sql", "tests": SQL_TESTS, "counts": counts, "survivors": survivors,
            "wall_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join([*MODULES, 'sql'])} (default: all)")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2, help="mutants run at once")
    parser.add_argument("--mutants", nargs="+", metavar="NAME", help="only these mutants (mutmut names, * globs), e.g. "
                        "a previous run's survivors: the counts are then of these alone")
    args = parser.parse_args()
    names = args.modules or [*MODULES, "sql"]
    unknown = set(names) - {*MODULES, "sql"}
    if unknown:
        parser.error(f"unknown module(s) {sorted(unknown)}; known: {', '.join([*MODULES, 'sql'])}")
    OUT.mkdir(parents=True, exist_ok=True)
    summary_path = OUT / "summary.json"
    for name in names:
        result = run_sql() if name == "sql" else run_module(name, args.children, args.mutants)
        # read just before writing: runs of other modules (in other processes) keep their entries
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        summary[name + (" (--mutants)" if args.mutants else "")] = result  # a partial rerun keeps the full run's entry
        summary_path.write_text(json.dumps(summary, indent=2))
        c = result["counts"]
        tested = c.get("killed", 0) + c.get("survived", 0) + c.get("timeout", 0)
        print(f"{name:12s} killed {c.get('killed', 0) + c.get('timeout', 0)}/{tested} "
              f"({100 * (c.get('killed', 0) + c.get('timeout', 0)) / max(tested, 1):.0f} %), "
              f"not reached by the fast tests {c.get('no tests', 0)}, other {sum(v for k, v in c.items() if k not in ('killed', 'survived', 'timeout', 'no tests'))}"
              f" [{result['wall_s']} s]", flush=True)
        for mutant, diff in result["survivors"].items():
            print(f"  survived {mutant}: {' | '.join(d.strip() for d in diff)[:200]}")


if __name__ == "__main__":
    main()
