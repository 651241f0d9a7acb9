"""`ltv.runs` on its own, over a directory store: the publication order (`_SUCCESS`, then
`_LATEST`), a pointer that never moves back, replays, races and what counts as a data file. Fast
(no model, no engine): this is the file `make mutation` runs against ltv/runs.py."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ltv import runs
from ltv.errors import LtvError, MissingPartitionError
from ltv.lake import SUCCESS

GAME, DAY = "galaxy-raiders", "2025-04-14"


def run_id(hour: int, version: int | None = None) -> str:
    return runs.new_run_id(dt.datetime(2025, 4, 14, hour, 0, tzinfo=dt.timezone.utc), version)


def write_run(store: runs.DirStore, run: str, files: tuple[str, ...] = ("part-0.parquet",)) -> None:
    for name in files:
        store.put(runs.run_prefix(GAME, DAY, run) + name, b"rows")


class Recording(runs.DirStore):
    """A directory store that records its writes and can fail on one key (a crash there)."""

    def __init__(self, root, fail_on: str | None = None):
        super().__init__(root)
        self.puts: list[str] = []
        self.fail_on = fail_on

    def put(self, key: str, body: bytes, *, expect: Any = runs._ANY) -> None:
        if self.fail_on and key.endswith(self.fail_on):
            raise OSError(f"crash writing {key}")
        self.puts.append(key.rsplit("/", 1)[-1])  # every attempt, conditional or not
        super().put(key, body, expect=expect)


def test_success_is_written_before_latest_moves(tmp_path) -> None:
    store = Recording(tmp_path)
    run = run_id(3)
    write_run(store, run)
    store.puts.clear()
    publication = runs.publish(store, GAME, DAY, run)
    assert publication == runs.Publication(run, run, moved=True)
    assert store.puts == [SUCCESS, runs.LATEST]
    assert runs.is_complete(store, GAME, DAY, run) and runs.latest_run(store, GAME, DAY) == run


def test_a_crash_writing_success_leaves_latest_where_it_was(tmp_path) -> None:
    store = Recording(tmp_path)
    old, new = run_id(3), run_id(9)
    write_run(store, old)
    runs.publish(store, GAME, DAY, old)
    write_run(store, new)
    store.fail_on = SUCCESS
    with pytest.raises(OSError, match="crash"):
        runs.publish(store, GAME, DAY, new)
    assert runs.latest_run(store, GAME, DAY) == old, "readers never see a run without _SUCCESS"
    assert not runs.is_complete(store, GAME, DAY, new)
    store.fail_on = None
    assert runs.publish(store, GAME, DAY, new).moved and runs.latest_run(store, GAME, DAY) == new


def test_latest_never_moves_back_and_a_replay_changes_nothing(tmp_path) -> None:
    store = Recording(tmp_path)
    older, newer = run_id(3, 1), run_id(9, 2)
    assert older < newer
    for run in (older, newer):
        write_run(store, run)
    assert runs.publish(store, GAME, DAY, newer).moved
    late = runs.publish(store, GAME, DAY, older)
    assert late == runs.Publication(older, newer, moved=False)
    assert runs.is_complete(store, GAME, DAY, older), "a late run is still marked complete"
    store.puts.clear()
    assert runs.publish(store, GAME, DAY, newer) == runs.Publication(newer, newer, moved=False)
    assert store.puts == [], "a replay writes nothing, not even an attempt"
    assert runs.latest_run(store, GAME, DAY) == newer
    store.put(runs.date_prefix(GAME, "2025-04-15") + "_notes", b"not a pointer")
    store.put(runs.run_prefix(GAME, "2025-04-16", newer) + runs.LATEST, b"a pointer in the wrong place")
    assert runs.published_dates(store, GAME) == [DAY]
    assert runs.published_dates(store, "dragon-merge") == []


def test_a_run_without_data_files_is_not_published(tmp_path) -> None:
    store = runs.DirStore(tmp_path)
    run = run_id(3)
    write_run(store, run, files=("_SUCCESS", ".part-0.parquet.tmp"))
    with pytest.raises(MissingPartitionError, match="no data files"):
        runs.publish(store, GAME, DAY, run)
    assert runs.latest_run(store, GAME, DAY) is None
    assert runs.data_keys(store, GAME, DAY, run) == []


def test_data_files_are_what_athena_reads() -> None:
    assert runs.is_data("predictions/game=g/dt=2025-04-14/run=r/part-0.parquet")
    for key in ("predictions/game=g/dt=2025-04-14/run=r/_SUCCESS", "predictions/game=g/dt=2025-04-14/run=r/.tmp",
                "predictions/game=g/dt=2025-04-14/run=r/", "predictions/game=g/dt=2025-04-14/_LATEST"):
        assert not runs.is_data(key), key


def test_run_prefixes_round_trip_and_foreign_ones_are_refused() -> None:
    run = run_id(3, 7)
    assert run.startswith("20250414T030000.000000-v7-") and len(run.rsplit("-", 1)[-1]) == 6
    assert run_id(3).startswith("20250414T030000.000000-") and "-v" not in run_id(3)
    assert runs.parse_run_prefix(runs.run_prefix(GAME, DAY, run)) == (GAME, DAY, run)
    for bad in (f"predictions/game={GAME}/dt=2025-4-14/run={run}/", f"predictions/game={GAME}/dt={DAY}/run={run}",
                f"other/game={GAME}/dt={DAY}/run={run}/"):
        with pytest.raises(LtvError, match="not a prediction run's prefix"):
            runs.parse_run_prefix(bad)


def test_a_racing_pointer_is_retried_and_a_pointer_that_keeps_changing_is_an_error(tmp_path, monkeypatch) -> None:
    store = runs.DirStore(tmp_path)
    run = run_id(9)
    write_run(store, run)
    real_put, raced = runs.DirStore.put, []

    def racing_put(self, key, body, *, expect=runs._ANY):
        if key.endswith(runs.LATEST) and not raced:  # another publisher moves the pointer first, once
            raced.append(key)
            real_put(self, key, rival.encode())
        return real_put(self, key, body, expect=expect)

    monkeypatch.setattr(runs.DirStore, "put", racing_put)
    rival = run_id(1)  # an older run: ours still moves the pointer, on the second attempt
    assert runs.publish(store, GAME, DAY, run) == runs.Publication(run, run, moved=True)
    assert raced
    raced.clear()
    rival, late = run_id(23), run_id(12)  # a newer run wins the race: the older one must not overwrite it
    write_run(store, late)
    assert runs.publish(store, GAME, DAY, late) == runs.Publication(late, rival, moved=False)
    assert runs.latest_run(store, GAME, DAY) == rival

    def always_racing(self, key, body, *, expect=runs._ANY):
        if key.endswith(runs.LATEST):
            raise runs.Conflict("changed")
        return real_put(self, key, body, expect=expect)

    monkeypatch.setattr(runs.DirStore, "put", always_racing)
    other = runs.new_run_id(dt.datetime(2025, 4, 14, 23, 30, tzinfo=dt.timezone.utc))
    write_run(store, other)
    with pytest.raises(LtvError, match=f"{runs.MAX_ATTEMPTS} attempts"):
        runs.publish(store, GAME, DAY, other)


def test_dirstore_conditional_writes(tmp_path) -> None:
    store = runs.DirStore(tmp_path)
    store.put("a/b", b"1", expect=runs.ABSENT)
    with pytest.raises(runs.Conflict, match="a/b changed since it was read"):
        store.put("a/b", b"2", expect=runs.ABSENT)
    tag = store.get("a/b").tag
    with pytest.raises(runs.Conflict):
        store.put("a/b", b"2", expect="stale")
    store.put("a/b", b"2", expect=tag)
    assert store.get("a/b").body == b"2" and store.get("a/missing") is None and store.get("a") is None
    assert store.keys("a/") == ["a/b"] and store.keys("nothing/") == []
    store.put("a/bc", b"3")
    assert store.keys("a/b") == ["a/b", "a/bc"], "a prefix that is not a folder: the names it begins"


def test_run_ids_take_the_utc_time_whatever_the_machines_zone(monkeypatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        before = dt.datetime.now(dt.timezone.utc)
        run = runs.new_run_id()
        after = dt.datetime.now(dt.timezone.utc)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    stamp = dt.datetime.strptime(run[:22], "%Y%m%dT%H%M%S.%f").replace(tzinfo=dt.timezone.utc)
    assert before - dt.timedelta(seconds=1) <= stamp <= after + dt.timedelta(seconds=1), run
