"""Crash anywhere: `ltv run` SIGKILLed at seeded points of every phase and resumed each time with
the same command ends exactly as an uninterrupted run.

The tiny game (tests/conftest.py `loop_config`, its `TINY_BUDGET`) is replayed over WINDOW: the
backfill of player_day, then each day's validation and player_day, the first model's training
(dataset: features and labels of its cutoffs; five AutoGluon stages; the registry), a weekly
scoring and daily monitoring. An uninterrupted run records every filesystem operation it makes
(tests/crashkit.py) and its end state. The schedule picks kill points from that record with a
seeded generator, at least one in each phase, then as many more as asked; each becomes "kill
before the k-th operation of phase P" of a resumed process (so a kill lands in its phase even
though a resumed run redoes part of the interrupted step). After the last kill the same command
runs to the end in a fresh `ltv` process, and the end states are compared: partitions and their
rows, dataset versions, registry versions and their statuses, scored dates and predictions,
monitoring alerts, state and daily results, validation reports, the training runs' metrics and
`reports/` (time stamps and run ids normalised; `COMPARED`, tests/test_crashkit.py checks that a
difference in any of them fails the comparison); every artifact and partition verifies, every `_LATEST` points at a complete
run, nothing temporary or orphaned remains.

Default (`make test`): seed 16, 20 kills: one right after each kind of commit (COMMITS), one in
each phase (before one of its own operations), then random ones up to 20. `LTV_CRASH_KILLS=N` asks for N (at least the
commits and phases), `LTV_CRASH_SEED` another seed; docs/reliability.md has the figures.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from conftest import ROOT, loop_config
from crashkit import ForkServer
from ltv import etl
from ltv.engine import DERIVED, DuckDBEngine
from ltv.lake import SCRATCH, SUCCESS, Lake
from ltv.models import verify
from ltv.registry import LocalRegistry
from ltv.scoring import LATEST, date_dir, predictions_root, scored_dates

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("LTV_CRASH_SEED", "16"))
KILLS = int(os.environ.get("LTV_CRASH_KILLS", "20"))  # the commits, the phases, then random ones up to 20
WINDOW = ("2025-03-29", "2025-04-08")  # first model on 03-31, scoring on 04-07, monitoring daily
PHASES = ("player_day", "player_summary", "validation", "journal", "monitoring", "features", "labels", "dataset",
          "training", "registry", "scoring")


def loop_argv(config_file: Path, lake: Path) -> list[str]:
    return ["run", "--game", str(config_file), "--from", WINDOW[0], "--to", WINDOW[1], "--lake", str(lake)]


def fresh_lake(root: Path, shared: Lake) -> Path:
    """A lake of its own over the tiny game's raw logs and truth (read-only, by symlink)."""
    base = root / shared.game
    base.mkdir(parents=True)
    for name in ("raw", "truth"):
        (base / name).symlink_to(shared.base / name)
    return root


# commits after which a resumed run must not redo the step: kill right after the first of each
COMMITS = {
    "a registry version": lambda op: op["kind"] == "rename" and re.search(r"registry/[^/]+/versions/\d+$", op["path"]),
    "a scoring run": lambda op: op["kind"] == "rename" and re.search(r"/run=[^/]+$", op["path"]),
    "_LATEST": lambda op: op["kind"] == "replace" and op["path"].endswith("/_LATEST"),
    "an alert": lambda op: op["kind"] == "open" and op["path"].endswith("monitoring/alerts.jsonl"),
    "the monitoring state": lambda op: op["kind"] == "replace" and op["path"].endswith("monitoring/state.json"),
    "a dataset version": lambda op: op["kind"] == "rename" and re.search(r"datasets/[^/.][^/]*$", op["path"]),
    "a backfilled player_day": lambda op: op["kind"] == "rename" and re.search(r"player_day/dt=[^/]+$", op["path"]),
}


def schedule(ops: list[dict[str, Any]], kills: int, seed: int) -> list[dict[str, Any]]:
    """Kill points, in the order the loop reaches them: right after the first commit of each kind
    (COMMITS), one before an operation of each phase, then random ones up to `kills`. Each is a hook
    setting: "before (or right after) the k-th operation with this signature since the previous
    point". A resumed run redoes part of the interrupted step, so it may repeat an operation
    sooner: a kill then lands there, never later, always at that operation; a kill after a
    commit lands after that commit, which a resumed run makes once."""
    rng = random.Random(seed)
    by_phase: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        by_phase.setdefault(op["phase"], []).append(i)
    missing = [p for p in PHASES if p not in by_phase]
    assert not missing, f"the reference run never wrote in phases {missing}: the window no longer covers them"
    after: set[int] = set()
    for name, commits in COMMITS.items():
        first = next((i for i, op in enumerate(ops) if commits(op)), None)
        assert first is not None and first + 1 < len(ops), f"the reference run never committed {name}"
        after.add(first)
    # every phase gets a kill before one of its own operations: a kill right after a commit lands
    # at whatever the resumed run does next, which need not be the reference run's next operation
    chosen = {rng.choice(by_phase[p]) for p in PHASES} - after
    while len(chosen) + len(after) < kills:
        chosen.add(rng.randrange(len(ops) - 1))
        chosen -= after
    points, previous = [], -1
    for i in sorted(chosen | after):
        sig = ops[i]["signature"]
        k = sum(1 for op in ops[previous + 1:i + 1] if op["signature"] == sig)
        points.append({"kill_signature": sig, "kill_at": k, "kill_after": i in after})
        previous = i
    return points


# ----------------------------------------------------------------------------------------------
# end states


def table_rows(engine: DuckDBEngine, table: str, key: str) -> dict[str, str]:
    """Partition value -> a digest of its rows (sorted: row order is the engine's business)."""
    out = {}
    for value in engine.partitions(table):
        frame = pd.read_parquet(engine.partition_dir(table, value))
        frame = frame.sort_values(list(frame.columns), ignore_index=True) if len(frame) else frame
        out[value] = str(pd.util.hash_pandas_object(frame, index=False).sum()) + f"/{len(frame)}"
    return out


# what differs between two runs of the same work: time stamps, run ids and their random suffixes
STAMPS = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)?"
                    r"|\d{8}T\d{6}(\.\d{6})?(-v\d+)?(-[0-9a-f]{4,6}(?![0-9a-z-]))?")
RUN_SUFFIX = re.compile(r"-[0-9a-f]{4}$")


def normalised(value: Any) -> Any:
    """A JSON document without what differs between two runs of the same work: time stamps and
    run ids become `<t>`, floats keep 12 significant digits."""
    if isinstance(value, dict):
        return {normalised(k): normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, str):
        return STAMPS.sub("<t>", value)
    return value


def documents(folder: Path, pattern: str = "*") -> dict[str, Any]:
    """Relative path (normalised) -> normalised JSON content of each .json file under `folder`
    matching `pattern`, or its size for any other file (an HTML report's plots are not compared)."""
    out = {}
    for path in sorted(folder.rglob(pattern)) if folder.exists() else []:
        if path.is_file():
            key = "/".join(RUN_SUFFIX.sub("", part) for part in STAMPS.sub("<t>", path.relative_to(folder).as_posix())
                           .split("/"))
            out[key] = normalised(json.loads(path.read_text())) if path.suffix == ".json" else "present"
    return out


# every artefact the loop leaves, compared after the crashes (`assert_same` compares each key)
COMPARED = ("player_day", "player_summary", "features", "labels", "datasets", "registry", "scored", "predictions",
            "alerts", "monitored", "journal", "monitoring", "validation", "run_metrics", "reports")


def end_state(lake_root: Path, config) -> dict[str, Any]:
    lake = Lake(lake_root, config.game.id)
    engine = DuckDBEngine(lake, config, threads=1)
    registry = LocalRegistry(lake.registry, config.game.id)
    state: dict[str, Any] = {t: table_rows(engine, t, k) for t, k in DERIVED.items()}
    state["datasets"] = {p.name: {k: json.loads((p / "manifest.json").read_text())[k]
                                  for k in ("fingerprint", "rows", "payers", "cutoffs", "features")}
                         for p in sorted(lake.datasets.iterdir())} if lake.datasets.exists() else {}
    state["registry"] = [(v.version, v.lineage["dataset"]["name"], [h["status"] for h in v.history])
                         for v in registry.versions()]
    state["scored"] = scored_dates(lake)
    state["predictions"] = {}
    for day in state["scored"]:
        run = (date_dir(lake, day) / LATEST).read_text().strip()
        frame = pd.read_parquet(date_dir(lake, day) / f"run={run}").sort_values("player_id", ignore_index=True)
        state["predictions"][day] = frame
    alerts = lake.monitoring / "alerts.jsonl"
    state["alerts"] = Counter((a["date"], a["policy"]) for a in map(json.loads, alerts.read_text().splitlines())) \
        if alerts.exists() else Counter()
    state["monitored"] = json.loads((lake.monitoring / "state.json").read_text())
    state["journal"] = {day: sorted(k for k, v in steps.items() if v not in (None, False))
                        for day, steps in json.loads((lake.monitoring / "loop.json").read_text())["days"].items()}
    state["monitoring"] = documents(lake.monitoring, "date=*.json") | documents(lake.monitoring / "delayed")
    state["validation"] = documents(lake.validation_reports)
    state["run_metrics"] = documents(lake.base / "runs", "metrics.json")
    state["reports"] = documents(lake.reports)
    assert set(state) == set(COMPARED), sorted(set(state) ^ set(COMPARED))
    return state


def problems(lake_root: Path, config) -> list[str]:
    """What does not verify: temporary or orphaned files, partitions without their marker or
    definition, runs without their report, artifacts failing their checksums, `_LATEST` pointing
    at an incomplete run, a date with more than its one run."""
    lake = Lake(lake_root, config.game.id)
    engine = DuckDBEngine(lake, config, threads=1)
    found = []
    for parent, dirs, files in os.walk(lake_root):
        for name in dirs + files:
            if SCRATCH.match(name) or name.startswith((".tmp", ".old", ".staging", ".work")):
                found.append(f"leftover {Path(parent, name)}")
    for table, key in DERIVED.items():
        base = lake.table(table)
        for part in base.glob(f"{key}=*") if base.exists() else []:
            if not (part / SUCCESS).exists():
                found.append(f"partition without {SUCCESS}: {part}")
        stale = etl.stale_partitions(engine, config, table, engine.partitions(table))
        found += [f"{table} {v}: no current definition" for v in stale]
    for path in sorted(lake.datasets.iterdir()) if lake.datasets.exists() else []:
        if not (path / SUCCESS).exists():
            found.append(f"dataset without {SUCCESS}: {path}")
    for run in sorted((lake.base / "runs").iterdir()) if (lake.base / "runs").exists() else []:
        names = {p.name for p in run.iterdir()}
        if names != {"metrics.json", "report.html", "model.txt"}:
            found.append(f"run {run.name} holds {sorted(names)}")
        elif json.loads((run / "metrics.json").read_text()).get("registered") is None:
            found.append(f"run {run.name}: metrics.json does not name its registered version")
    registry = LocalRegistry(lake.registry, config.game.id)
    for version in registry.versions():
        verify(version.path)
    numbered = sorted(p.name for p in registry.dir.iterdir()) if registry.dir.exists() else []
    if numbered != [str(v.version) for v in registry.versions()]:
        found.append(f"registry folders {numbered} are not its versions")
    base = predictions_root(lake) / f"game={lake.game}"
    for day_dir in sorted(base.glob("dt=*")) if base.exists() else []:
        runs = sorted(p.name for p in day_dir.glob("run=*"))
        latest = (day_dir / LATEST).read_text().strip() if (day_dir / LATEST).exists() else None
        if latest is None or runs != [f"run={latest}"] or not (day_dir / f"run={latest}" / SUCCESS).exists():
            found.append(f"{day_dir.name}: runs {runs}, {LATEST} -> {latest}")
    return found


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """Where two compared artefacts first differ (their path and both values), for the failure message."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}/{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or '/'}: {str(a)[:200]} != {str(b)[:200]}"


def assert_same(reference: dict[str, Any], resumed: dict[str, Any]) -> None:
    assert set(reference) == set(resumed) == set(COMPARED), "both end states hold every compared artefact"
    for key in COMPARED:
        if key != "predictions":
            assert resumed[key] == reference[key], f"{key} differs after the crashes: {_first_difference(reference[key], resumed[key])}"
    assert list(resumed["predictions"]) == list(reference["predictions"]), "scored dates"
    for day, frame in reference["predictions"].items():
        other = resumed["predictions"][day]
        assert other.player_id.tolist() == frame.player_id.tolist(), f"players scored at {day}"
        assert other.model_version.tolist() == frame.model_version.tolist()
        # AutoGluon may differ between two trainings on the same data; here the fits are single-threaded
        # and seeded, so the scores are expected to match to the last bit (a difference would be reported)
        scores = frame.select_dtypes("number").columns
        pd.testing.assert_frame_equal(other[scores], frame[scores], check_exact=False, rtol=1e-9)


# ----------------------------------------------------------------------------------------------
# the test


@pytest.fixture(scope="module")
def crash_world(tiny_game, tmp_path_factory):
    config = loop_config()
    shared = tiny_game[1]
    root = tmp_path_factory.mktemp("crash")
    config_file = root / f"{config.game.id}.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = {**os.environ, "LTV_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    server = ForkServer(env)
    yield config, shared, root, config_file, server, env
    server.close()


def test_the_daily_loop_killed_anywhere_and_resumed_ends_as_an_uninterrupted_run(crash_world) -> None:
    config, shared, root, config_file, server, env = crash_world
    started = time.monotonic()
    reference = fresh_lake(root / "reference", shared)
    ops_file = root / "reference-ops.jsonl"
    ended = server.run(loop_argv(config_file, reference), root / "reference.log",
                       hook={"root": reference, "record": ops_file})
    assert ended.get("code") == 0, (root / "reference.log").read_text()[-3000:]
    reference_seconds = ended["seconds"]
    ops = [json.loads(line) for line in ops_file.read_text().splitlines()]

    crashed = fresh_lake(root / "crashed", shared)
    points = schedule(ops, KILLS, SEED)
    kills = []
    for i, point in enumerate(points):
        killed = root / f"kill-{i}.json"
        ended = server.run(loop_argv(config_file, crashed), root / f"crashed-{i}.log",
                           hook={"root": crashed, **point, "killed": killed})
        assert ended.get("signal") == 9, (f"kill {i} ({point}) did not happen: {ended}\n"
                                          + (root / f"crashed-{i}.log").read_text()[-3000:])
        kills.append(json.loads(killed.read_text()))
    assert {kill["phase"] for kill in kills} >= set(PHASES), kills
    final = subprocess.run([str(Path(sys.executable).with_name("ltv")), *loop_argv(config_file, crashed)],
                           capture_output=True, text=True, env=env, timeout=900)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    seconds = time.monotonic() - started

    assert problems(crashed, config) == []
    assert problems(reference, config) == []
    assert_same(end_state(reference, config), end_state(crashed, config))
    expected = end_state(reference, config)
    assert expected["registry"] and expected["scored"] == ["2025-04-07"], "the window holds a training and a scoring"
    summary = {"seed": SEED, "kills": len(kills), "by_phase": dict(Counter(k["phase"] for k in kills)),
               "reference_seconds": round(reference_seconds, 1), "total_seconds": round(seconds, 1),
               "operations_of_the_reference": len(ops)}
    print("crash-anywhere:", json.dumps(summary))
    (root / "summary.json").write_text(json.dumps({**summary, "kills_at": kills}, indent=2))


# ----------------------------------------------------------------------------------------------
# a crash between a partition's data and its marker, and between the marker and its definition


def test_a_kill_before_a_partition_is_published_leaves_it_invisible_and_the_rerun_completes(crash_world) -> None:
    """`features daily` killed after its data and `_SUCCESS` are written in the temporary folder,
    before the rename that publishes them: no reader sees the day, the rerun of the same command
    builds it, and the next loop sweeps the dead process's folder."""
    from ltv.lake import sweep

    config, shared, root, config_file, server, _ = crash_world
    lake_root = fresh_lake(root / "marker", shared)
    lake = Lake(lake_root, config.game.id)
    argv = ["features", "daily", "--game", str(config_file), "--lake", str(lake_root), "--date", "2025-01-06",
            "--to", "2025-01-07"]
    assert server.run(argv, root / "marker-0.log").get("code") == 0  # an earlier day, complete
    day = ["features", "daily", "--game", str(config_file), "--lake", str(lake_root), "--date", "2025-01-08"]
    ended = server.run(day, root / "marker-1.log", hook={"root": lake_root, "kill_phase": "player_day",
                                                         "kill_kind": "rename", "kill_at": 1})
    assert ended.get("signal") == 9
    (hidden,) = [p for p in lake.table("player_day").iterdir() if p.name.startswith(".tmp-dt=2025-01-08")]
    assert {p.name for p in hidden.iterdir()} == {SUCCESS, "part-0.parquet"}, "data and marker were written"
    engine = DuckDBEngine(lake, config, threads=1)
    assert engine.partitions("player_day") == ["2025-01-06", "2025-01-07"]
    assert engine.query("SELECT DISTINCT dt FROM player_day ORDER BY dt")["dt"].tolist() == ["2025-01-06", "2025-01-07"]

    assert server.run(day, root / "marker-2.log").get("code") == 0
    assert DuckDBEngine(lake, config, threads=1).partitions("player_day") == ["2025-01-06", "2025-01-07", "2025-01-08"]
    assert sweep(lake.base) == [hidden] and not hidden.exists()


def test_a_kill_before_a_partitions_definition_is_recorded_means_it_is_rebuilt_not_trusted(crash_world) -> None:
    from ltv.errors import StaleDefinitionError

    config, shared, root, config_file, server, _ = crash_world
    lake_root = fresh_lake(root / "definition", shared)
    lake = Lake(lake_root, config.game.id)
    argv = ["features", "daily", "--game", str(config_file), "--lake", str(lake_root), "--date", "2025-01-06"]
    ended = server.run(argv, root / "definition-0.log", hook={"root": lake_root, "kill_phase": "player_day",
                                                              "kill_kind": "replace", "kill_at": 1})
    assert ended.get("signal") == 9
    engine = DuckDBEngine(lake, config, threads=1)
    assert engine.partitions("player_day") == ["2025-01-06"], "published, but without its definition"
    assert not etl.is_current(engine, config, "player_day", "2025-01-06")
    with pytest.raises(StaleDefinitionError, match="Rebuild it: ltv features daily"):
        etl.require_player_day(engine, config, dt.date(2025, 1, 6), dt.date(2025, 1, 7), "a check")
    assert server.run(argv, root / "definition-1.log").get("code") == 0
    assert etl.is_current(DuckDBEngine(lake, config, threads=1), config, "player_day", "2025-01-06")
