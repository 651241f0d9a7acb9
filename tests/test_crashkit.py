"""The crash kit's own checks (fast, no loop is run): which phase a path belongs to, which
filesystem operations the hook sees and where it kills, and that the end-state comparison of
tests/test_crash.py fails when any compared artefact differs between two lakes, while time stamps
and run ids alone do not make them differ."""
from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

import crashkit
from conftest import ROOT, loop_config
from crashkit import ForkServer, Hook, phase_of, signature
from test_crash import COMPARED, assert_same, end_state


def test_every_phase_of_the_loop_is_told_apart() -> None:
    game = "galaxy-raiders"
    cases = {"player_day/dt=2025-04-01/part-0.parquet": "player_day",
             "player_summary/dt=2025-04-01/part-0.parquet": "player_summary",
             "features/cutoff=2025-03-31/x": "features", "labels/cutoff=2025-03-31/x": "labels",
             "datasets/rolling-2025-03-31": "dataset", "runs/x/metrics.json": "training",
             "registry/ltv-g/versions/1": "registry", "reports/drift.json": "reports",
             "monitoring/validation/dt=2025-04-01.json": "validation", "monitoring/loop.json": "journal",
             "monitoring/.tmp-loop.json": "journal", "monitoring/alerts.jsonl": "monitoring", "raw/x": "other"}
    for path, phase in cases.items():
        assert phase_of(f"{game}/{path}") == phase, path
    assert phase_of("predictions/game=g/dt=2025-04-07/run=r/part-0.parquet") == phase_of("predictions") == "scoring"
    assert phase_of(game) == phase_of(f"{game}/") == phase_of(f"{game}/features") == "other", \
        "the game's folder itself, a table's folder (not its partitions)"
    assert signature("rename", "g/runs/20250414T031502.123456-v3-ab12cd/x-0123abcd-p42") == \
        "rename g/runs/<time>-v3-<random>/x-<scratch>"


# ----------------------------------------------------------------------------------------------
# the hook, installed in this process (its patches undone after each test)


class Killed(Exception):
    """Raised instead of the SIGKILL, so a test sees where the hook would kill."""


@pytest.fixture
def hooked(tmp_path, monkeypatch):
    """A lake root with a game folder, and a function installing a `Hook` on it in this process;
    every function it patches is restored afterwards, and its SIGKILL raises `Killed` instead."""
    for module, name in [(builtins, "open"), (io, "open"), (shutil, "rmtree"), *(
            (os, n) for n in ("rename", "replace", "unlink", "remove", "rmdir", "mkdir", "truncate"))]:
        monkeypatch.setattr(module, name, getattr(module, name))

    def kill(pid, sig):
        assert (pid, sig) == (os.getpid(), signal.SIGKILL)
        raise Killed

    monkeypatch.setattr(os, "kill", kill)
    (tmp_path / "lake" / "g" / "features").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "lake")  # the hook resolves its root

    def install(**settings) -> Hook:
        hook = Hook(tmp_path / "link", **({"record": tmp_path / "ops.jsonl"} | settings))
        hook.install()
        return hook
    return tmp_path, install


def recorded(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "ops.jsonl").read_text().splitlines()]


def test_the_hook_records_every_change_under_the_lake_and_nothing_else(hooked) -> None:
    tmp_path, install = hooked
    lake = tmp_path / "lake" / "g"
    (tmp_path / "outside").mkdir()
    install()
    with open(lake / "features" / "a.tmp-0123abcd-p42", "w") as f:
        f.write("x")
    (lake / "features" / "b").write_text("y")           # pathlib opens through io.open
    for mode in ("r", "rb"):
        open(lake / "features" / "b", mode).close()      # reading changes nothing
    open(lake / "features" / "b").close()
    open(lake / "features" / "b", "a").close()
    open(lake / "features" / "b", "r+").close()
    os.rename(lake / "features" / "a.tmp-0123abcd-p42", lake / "features" / "a")  # the target is published
    os.replace(lake / "features" / "a", lake / "features" / "c")
    os.mkdir(lake / "labels")
    with pytest.raises(FileExistsError):
        os.mkdir(lake / "labels")                        # an existing folder changes nothing
    os.truncate(lake / "features" / "b", 0)
    os.unlink(lake / "features" / "b")
    os.remove(lake / "features" / "c")
    os.rmdir(lake / "labels")
    (lake / "reports").mkdir()
    shutil.rmtree(lake / "reports")
    fd = os.open(lake / "features", os.O_RDONLY)
    try:
        open(lake / "features" / "d", "w").close()
        os.unlink("d", dir_fd=fd)                        # relative to an open folder: not seen
    finally:
        os.close(fd)
    open(tmp_path / "outside" / "x", "w").close()        # outside the lake
    os.mkdir(tmp_path / "outside" / "y")
    with open(lake / "u16", "w", -1, "utf-16") as f:   # the arguments reach the real open
        f.write("é")
    with open(lake / "u16", "a", encoding="utf-16") as f:
        f.write("è")
    assert (lake / "u16").read_bytes() == "é".encode("utf-16") + "è".encode("utf-16")[2:]
    ops = [(op["seq"], op["kind"], op["path"], op["phase"]) for op in recorded(tmp_path)]
    assert ops == [(1, "open", "g/features/a.tmp-0123abcd-p42", "features"), (2, "open", "g/features/b", "features"),
                   (3, "open", "g/features/b", "features"), (4, "open", "g/features/b", "features"),
                   (5, "rename", "g/features/a", "features"), (6, "replace", "g/features/c", "features"),
                   (7, "mkdir", "g/labels", "other"), (8, "truncate", "g/features/b", "features"),
                   (9, "unlink", "g/features/b", "features"), (10, "remove", "g/features/c", "features"),
                   (11, "rmdir", "g/labels", "other"), (12, "mkdir", "g/reports", "other"),
                   (13, "rmtree", "g/reports", "other"), (14, "open", "g/features/d", "features"),
                   (15, "open", "g/u16", "other"), (16, "open", "g/u16", "other")]
    assert recorded(tmp_path)[0]["signature"] == "open g/features/a.tmp-<scratch>"
    assert not (lake / "reports").exists() and (tmp_path / "outside" / "x").exists(), "each operation still happens"


@pytest.mark.parametrize("settings,at", [
    ({"kill_phase": "features", "kill_at": 2}, ("open", "g/features/2", 3)),   # the 2nd operation of the phase
    ({"kill_phase": "features", "kill_kind": "rename", "kill_at": 1}, ("rename", "g/features/3", 5)),
    ({"kill_signature": "open g/features/3", "kill_at": 1}, ("open", "g/features/3", 4)),
    ({"kill_signature": "open g/features/<time>-<random>", "kill_at": 2}, ("open", "g/features/20250414T031502-bbbbbb", 7)),
    ({"kill_phase": "features", "kill_at": 2, "kill_after": True}, ("open", "g/features/3", 4)),  # after it: before the next
])
def test_the_hook_kills_right_before_or_after_the_chosen_operation(hooked, settings, at) -> None:
    tmp_path, install = hooked
    lake = tmp_path / "lake" / "g"
    install(killed=tmp_path / "killed.json", **settings)
    steps = [lambda: (lake / "labels").mkdir(), *(lambda i=i: (lake / "features" / str(i)).write_text("x") for i in (1, 2, 3)),
             lambda: os.rename(lake / "features" / "1", lake / "features" / "3"),
             *(lambda r=r: (lake / "features" / f"20250414T031502-{r}").write_text("x") for r in ("aaaaaa", "bbbbbb"))]
    with pytest.raises(Killed):
        for step in steps:
            step()
    kind, path, op = at
    assert json.loads((tmp_path / "killed.json").read_text()) == {"kind": kind, "path": path, "phase": "features",
                                                                "op_in_process": op}
    assert not (tmp_path / "lake" / path).exists() or kind == "rename", "killed before the operation"
    assert len(recorded(tmp_path)) == op - 1, "every operation before the kill is recorded"


def test_without_a_kill_setting_the_hook_only_counts(hooked) -> None:
    tmp_path, install = hooked
    hook = install(record=None)
    for i in range(3):
        (tmp_path / "lake" / "g" / "features" / str(i)).write_text("x")
    assert (hook.seq, hook.hits) == (3, 0) and not hook.armed and not (tmp_path / "ops.jsonl").exists()


def test_the_hook_kills_its_process_for_real(tmp_path) -> None:
    """The same hook in a forked child: SIGKILL ends it right before the chosen operation."""
    lake = tmp_path / "lake" / "g" / "features"
    lake.mkdir(parents=True)
    pid = os.fork()
    if pid == 0:  # the child: nothing of pytest's may run here
        try:
            Hook(tmp_path / "lake", kill_phase="features", kill_at=2, killed=tmp_path / "killed.json").install()
            for i in range(3):
                (lake / str(i)).write_text("x")
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert sorted(p.name for p in lake.iterdir()) == ["0"]
    assert json.loads((tmp_path / "killed.json").read_text())["path"] == "g/features/1"


# ----------------------------------------------------------------------------------------------
# the fork server: one command per job, with or without a hook, and how each ended


def jobs(tmp_path) -> dict[str, dict]:
    """A command that writes a file under the lake (`ltv config schema -o`), with and without a
    hook killing it there; an unknown command (usage error: exit 2); a log it cannot open (exit 1)."""
    out = tmp_path / "lake" / "g" / "reports" / "schema.json"
    out.parent.mkdir(parents=True)
    write = ["config", "schema", "-o", str(out)]
    return {"writes": {"argv": write, "log": str(tmp_path / "writes.log"),
                       "hook": {"root": str(tmp_path / "lake"), "record": str(tmp_path / "ops.jsonl")}},
            "killed": {"argv": write, "log": str(tmp_path / "killed.log"),
                       "hook": {"root": str(tmp_path / "lake"), "kill_phase": "reports", "kill_at": 1,
                                "killed": str(tmp_path / "killed.json")}},
            "usage": {"argv": ["no-such-command"], "log": str(tmp_path / "usage.log")},
            "no_log": {"argv": write, "log": str(tmp_path / "missing" / "x.log")}}


def test_the_fork_server_runs_each_job_in_its_own_process_and_says_how_it_ended(tmp_path, monkeypatch, capfd) -> None:
    """`_serve` in this process (its command processes fork from it): one reply line per job, and
    each command's output in its log (stdout and stderr write to the file descriptors it redirects)."""
    todo = jobs(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(j) + "\n" for j in [
        todo["killed"], todo["usage"], todo["no_log"], todo["writes"]])))
    for name, fd in (("stdout", 1), ("stderr", 2)):
        monkeypatch.setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115 - pytest's capture wraps no fd
    started = time.monotonic()
    crashkit._serve()
    took = time.monotonic() - started
    sys.stdout.flush()
    replies = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("usage", "writes")}
    assert "No such command" in logs["usage"] and "wrote" in logs["writes"]
    assert not any('"seconds"' in text for text in logs.values()), "each reply is flushed before the next fork"
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in replies] == [
        {"signal": signal.SIGKILL}, {"code": 2}, {"code": 1}, {"code": 0}]
    assert all(0 < r["seconds"] < took for r in replies)
    assert json.loads((tmp_path / "killed.json").read_text())["path"] == "g/reports/schema.json"
    assert json.loads((tmp_path / "lake" / "g" / "reports" / "schema.json").read_text())["title"], "written by the last"
    assert [(op["kind"], op["path"]) for op in recorded(tmp_path)] == [("open", "g/reports/schema.json")]
    assert not (tmp_path / "missing").exists()


def test_a_fork_server_process_serves_jobs_until_closed(tmp_path) -> None:
    todo = jobs(tmp_path)
    server = ForkServer({**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])})
    try:
        killed = server.run(todo["killed"]["argv"], tmp_path / "killed.log", hook={
            k: Path(v) if k in ("root", "killed") else v for k, v in todo["killed"]["hook"].items()})
        assert killed["signal"] == signal.SIGKILL and killed["seconds"] > 0
        usage = server.run(todo["usage"]["argv"], tmp_path / "usage.log")
        assert set(usage) == {"code", "seconds"} and usage["code"] == 2
        assert "No such command" in (tmp_path / "usage.log").read_text(), "the command's output goes to its log"
        wrote = server.run(todo["writes"]["argv"], tmp_path / "writes.log")
        assert wrote["code"] == 0 and "wrote" in (tmp_path / "writes.log").read_text()
        assert not (tmp_path / "ops.jsonl").exists(), "no hook asked for, none installed"
    finally:
        server.close()
    assert server.proc.returncode == 0, "closing its input ends the server"
    server.proc.stdin, server.proc.stdout = io.StringIO(), io.StringIO()  # a server that died: no reply
    with pytest.raises(RuntimeError, match=r"the fork server died \(exit 0\)"):
        server.run(["--help"], tmp_path / "help.log")


def lake(root: Path, run_id: str, stamp: str) -> Path:
    """A lake holding one of each artefact the comparison reads beyond the tables."""
    base = root / "galaxy-raiders"
    monitoring = base / "monitoring"
    (monitoring / "validation").mkdir(parents=True)
    (monitoring / "delayed").mkdir()
    (monitoring / "state.json").write_text(json.dumps({"monitored_scores": ["2025-04-07"], "evaluated": []}))
    (monitoring / "loop.json").write_text(json.dumps({"days": {"2025-04-07": {"scored": run_id, "trained": None}}}))
    (monitoring / "alerts.jsonl").write_text(json.dumps({"date": "2025-04-07", "policy": "feature_drift",
                                                          "at": stamp}) + "\n")
    (monitoring / "date=2025-04-07.json").write_text(json.dumps({"values": [{"policy": "p", "value": 0.25}],
                                                                 "run": run_id}))
    (monitoring / "delayed" / "cutoff=2025-03-24.json").write_text(json.dumps({"normalized_gini": 0.5}))
    (monitoring / "validation" / "dt=2025-04-07.json").write_text(json.dumps({"passed": True, "checked": stamp}))
    run = base / "runs" / f"{run_id[:15]}-rolling-2025-03-31-{run_id[-4:]}"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"model": {"normalized_gini": 0.7}, "registered": {"at": stamp}}))
    (base / "reports").mkdir()
    (base / "reports" / "drift.json").write_text(json.dumps({"version": ["v1"], "stale_normalized_gini": [0.9]}))
    return root


# each compared artefact beyond the tables, and a change to it
CHANGES = {
    "alerts": ("monitoring/alerts.jsonl", lambda text: text + text),
    "monitored": ("monitoring/state.json", lambda text: text.replace("2025-04-07", "2025-04-08")),
    "journal": ("monitoring/loop.json", lambda text: text.replace('"trained": null', '"trained": true')),
    "monitoring": ("monitoring/date=2025-04-07.json", lambda text: text.replace("0.25", "0.26")),
    "validation": ("monitoring/validation/dt=2025-04-07.json", lambda text: text.replace("true", "false")),
    "run_metrics": ("runs/*/metrics.json", lambda text: text.replace("0.7", "0.71")),
    "reports": ("reports/drift.json", lambda text: text.replace("0.9", "0.8")),
}


@pytest.fixture
def two_lakes(tmp_path):
    config = loop_config()
    # the same work run twice: other run ids and time stamps
    a = lake(tmp_path / "a", "20250407T040000.000001-v1-aaaaaa", "2026-12-07T10:00:00.123456+00:00")
    b = lake(tmp_path / "b", "20250407T050000.000002-v1-bbbbbb", "2026-12-07T11:30:00.654321+00:00")
    return config, a, b


def test_the_same_work_compares_equal_despite_time_stamps_and_run_ids(two_lakes) -> None:
    config, a, b = two_lakes
    state = end_state(a, config)
    assert set(state) == set(COMPARED)
    assert state["run_metrics"] and state["validation"] and state["monitoring"] and state["reports"]
    assert_same(state, end_state(b, config))


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_a_difference_in_any_compared_artefact_fails_the_comparison(two_lakes, key) -> None:
    config, a, b = two_lakes
    pattern, change = CHANGES[key]
    path = next((b / "galaxy-raiders").glob(pattern))
    path.write_text(change(path.read_text()))
    with pytest.raises(AssertionError, match=f"{key} differs"):
        assert_same(end_state(a, config), end_state(b, config))


def test_a_missing_artefact_or_prediction_fails_the_comparison(two_lakes) -> None:
    config, a, b = two_lakes
    shutil.rmtree(b / "galaxy-raiders" / "reports")
    with pytest.raises(AssertionError, match="reports differs"):
        assert_same(end_state(a, config), end_state(b, config))
    reference = end_state(a, config)
    with pytest.raises(AssertionError, match="every compared artefact"):
        assert_same(reference, {k: v for k, v in reference.items() if k != "alerts"})
    with pytest.raises(AssertionError):
        assert_same(reference | {"player_summary": {"2025-04-01": "1/1"}}, reference)
