"""Kill `ltv run` anywhere: the instrument of tests/test_crash.py.

- `Hook` counts the filesystem operations a process makes under a lake (renames, replaces,
  removals, truncations, directory creations, files opened for writing: every point where what
  is on disk changes, in Python; DuckDB and pyarrow write their files through their own I/O,
  always inside a temporary folder that a rename then publishes) and classifies each by the
  phase of the loop its path belongs to. It records them, or SIGKILLs the process right before
  the k-th operation of a given phase (or kind, or `signature`: the same operation in another
  run of the same work).
- `ForkServer` is a child process that imports the core once and then forks one process per
  command (`ltv run ...`, run by `ltv.cli.main` exactly as the console script runs it), with
  or without a hook, and reports how it ended: a kill and a resume cost milliseconds of
  start-up instead of the seconds that importing pandas, DuckDB and AutoGluon takes.
"""
from __future__ import annotations

import builtins
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# a path under the lake -> the phase of the daily loop that writes it (first match wins)
PHASES = (
    ("monitoring/validation/", "validation"), ("monitoring/loop.", "journal"), ("monitoring/.tmp-loop.", "journal"),
    ("monitoring/", "monitoring"),
    ("player_day/", "player_day"), ("player_summary/", "player_summary"), ("features/", "features"),
    ("labels/", "labels"), ("datasets/", "dataset"),
    ("runs/", "training"), ("registry/", "registry"), ("predictions/", "scoring"), ("reports/", "reports"),
)


def signature(kind: str, relative: str) -> str:
    """An operation without what differs between two runs of the same work: scratch suffixes
    (random part and pid), run folders' and scoring runs' time stamps and random parts."""
    relative = re.sub(r"-[0-9a-f]{8}-p\d+", "-<scratch>", relative)
    relative = re.sub(r"\d{8}T\d{6}(\.\d{6})?", "<time>", relative)  # run ids carry microseconds
    return kind + " " + re.sub(r"(<time>[^/]*)-[0-9a-f]{4,6}(?=/|$)", r"\1-<random>", relative)


def phase_of(relative: str) -> str:
    """The phase of a path relative to the lake root (`<game>/...` or `predictions/...`)."""
    if relative == "predictions" or relative.startswith("predictions/"):
        return "scoring"
    within = relative.split("/", 1)[1] if "/" in relative else ""
    return next((phase for prefix, phase in PHASES if within.startswith(prefix)), "other")


@dataclass
class Hook:
    """Counts (and records, or kills at) filesystem operations under `root`."""

    root: Path
    record: Path | None = None       # append every operation here (JSON lines)
    kill_phase: str | None = None    # SIGKILL before the `kill_at`-th operation of this phase
    kill_at: int = 0
    kill_kind: str | None = None     # ... counting only operations of this kind (e.g. "rename")
    kill_signature: str | None = None  # or: before the `kill_at`-th operation with this `signature`
    kill_after: bool = False         # ... or right after it (before the next operation)
    killed: Path | None = None       # the operation the process was killed at (one JSON line)

    def install(self) -> None:
        self.root = Path(os.path.realpath(self.root))
        self.seq = self.hits = 0
        self.armed = False
        self._log = open(self.record, "a") if self.record else None  # noqa: SIM115 - lives as long as the process
        real_open = builtins.open

        def opener(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
                self.point("open", file)
            return real_open(file, mode, *args, **kwargs)

        builtins.open = io.open = opener  # pathlib opens through io.open
        for name in ("rename", "replace", "unlink", "remove", "rmdir", "mkdir", "truncate"):
            self._wrap(os, name)
        self._wrap(shutil, "rmtree")

    def _wrap(self, module: Any, name: str) -> None:
        real = getattr(module, name)

        def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
            # a rename publishes its target; with dir_fd the path is relative to an open directory
            target = args[0] if name in ("rename", "replace") and args else path
            if "dir_fd" not in kwargs and isinstance(target, (str, os.PathLike)) and not (
                    name == "mkdir" and os.path.isdir(target)):  # an existing folder changes nothing
                self.point(name, target)
            return real(path, *args, **kwargs)

        setattr(module, name, wrapper)

    def point(self, kind: str, path: Any) -> None:
        full = os.path.realpath(os.path.abspath(os.fspath(path)))
        if not full.startswith(str(self.root) + os.sep):
            return
        relative = full[len(str(self.root)) + 1:]
        phase, sig = phase_of(relative), signature(kind, relative)
        if self.armed:
            self._kill(kind, relative, phase)
        if self.kill_signature is not None:
            targeted = sig == self.kill_signature
        else:
            targeted = phase == self.kill_phase and self.kill_kind in (None, kind)
        self.hits += targeted
        if targeted and self.hits == self.kill_at:
            if not self.kill_after:  # before this operation is counted or recorded: it never happens
                self._kill(kind, relative, phase)
            self.armed = True
        self.seq += 1
        if self._log:
            self._log.write(json.dumps({"seq": self.seq, "kind": kind, "path": relative, "phase": phase,
                                        "signature": sig}) + "\n")
            self._log.flush()

    def _kill(self, kind: str, relative: str, phase: str) -> None:
        if self.killed:
            Path(self.killed).write_text(json.dumps({"kind": kind, "path": relative, "phase": phase,
                                                     "op_in_process": self.seq + 1}))
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------------------------
# the fork server


def _serve() -> None:
    """Import the core once; then for each command line on stdin fork a process that runs it."""
    import autogluon.tabular  # noqa: F401 - imported once here, not in every forked command
    import ltv.cli
    import ltv.run  # noqa: F401

    for line in sys.stdin:
        job = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the command's process
            code = 1
            try:
                out = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(out, 1)
                os.dup2(out, 2)
                os.environ.update(job.get("env", {}))
                if job.get("hook"):
                    Hook(**{k: (Path(v) if k in ("root", "record", "killed") and v else v)
                            for k, v in job["hook"].items()}).install()
                sys.argv = ["ltv", *job["argv"]]
                try:
                    ltv.cli.main()
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:  # noqa: BLE001 - reported in the command's log
                    traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        ended = {"seconds": time.monotonic() - started}
        if os.WIFSIGNALED(status):
            ended["signal"] = os.WTERMSIG(status)
        else:
            ended["code"] = os.WEXITSTATUS(status)
        print(json.dumps(ended), flush=True)


class ForkServer:
    """A `_serve` process; `run(argv, ...)` forks one command in it and returns how it ended."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)

    def run(self, argv: list[str], log: Path, hook: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        job = {"argv": argv, "log": str(log), "hook": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in (hook or {}).items()}}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"the fork server died (exit {self.proc.wait()})")
        return json.loads(reply)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


if __name__ == "__main__":
    _serve()
