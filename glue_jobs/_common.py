"""What every Glue job shares: arguments, the game config, the engine, the run date, failures.

A job script is `run(rt, args) -> summary` plus `main(argv) = common.main(...)`. In AWS the job
runs on the Athena engine; with `--engine duckdb --lake DIR` the same script runs on the local
lake (that is how the tests run each job's logic for real).

In Glue the scripts import this module as `glue_jobs._common` from the core wheel, which the job
puts on its Python path (`--extra-py-files`): a loose `_common.py` would arrive in S3 under its
content hash and could not be imported by name.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltv import config as cfg
from ltv.engine import DuckDBEngine, Engine
from ltv.errors import LtvError
from ltv.lake import Lake

log = logging.getLogger("ltv.glue")

COMMON = ("game", "config")
ATHENA = ("database", "workgroup", "raw_uri", "curated_uri")
OPTIONAL = ("engine", "lake", "date", "WORKFLOW_NAME", "WORKFLOW_RUN_ID")
Args = dict[str, str]
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """Naive UTC: the time convention of the raw logs."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def parse_args(argv: Sequence[str], extra: Sequence[str] = ()) -> Args:
    """The job's arguments by name (without dashes); arguments Glue adds itself are ignored.

    In Glue, `awsglue.utils.getResolvedOptions` parses them; elsewhere argparse does, with the
    same names and the same result."""
    names = [*COMMON, *ATHENA, *OPTIONAL, *extra]
    try:
        from awsglue.utils import getResolvedOptions
    except ImportError:
        parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
        for name in names:
            parser.add_argument(f"--{name}")
        parsed, _glue_own = parser.parse_known_args(list(argv))
        args = vars(parsed)
    else:
        args = getResolvedOptions(["job", *argv], [n for n in names if f"--{n}" in argv])
    args = {k: v for k, v in args.items() if k in names and v is not None}
    required = [*COMMON, *(ATHENA if args.get("engine", "athena") == "athena" else ("lake",))]
    missing = [f"--{n}" for n in required if n not in args]
    if missing:
        raise LtvError(f"missing job argument(s) {', '.join(missing)}")
    if args.get("engine", "athena") not in ("athena", "duckdb"):
        raise LtvError(f"--engine must be athena or duckdb, got {args['engine']!r}")
    if not re.match(cfg.GAME_ID, args["game"]):  # it names files and keys: no '/', no '..'
        raise LtvError(f"--game {args['game']!r} is not a game id (lowercase letters, digits and '-')")
    for name in ("date", "cutoff"):
        if name in args:
            try:
                dt.date.fromisoformat(args[name])
            except ValueError:
                raise LtvError(f"--{name} {args[name]!r} is not a date; give YYYY-MM-DD") from None
    return args


def load_config(uri: str, game: str, workdir: Path) -> cfg.GameConfig:
    """The game config from a local path or an s3:// URI (the config asset the stack deploys)."""
    path = Path(uri)
    if uri.startswith("s3://"):
        import boto3

        bucket, _, key = uri.removeprefix("s3://").partition("/")
        path = workdir / f"{game}.yaml"
        boto3.client("s3").download_file(bucket, key, str(path))
    config = cfg.load(path)
    if config.game.id != game:
        raise LtvError(f"--config {uri} is the config of {config.game.id!r}, not of --game {game!r}")
    return config


@dataclass
class Runtime:
    """A job's world: config, engine, a lake for file outputs, and how finished files reach storage.

    With DuckDB the lake is the real one and publishing is a no-op. With Athena the lake is a
    scratch directory: outputs are written there, then uploaded (markers last), and `fetch`
    brings down the few remote files a job must see first (a dataset's manifest)."""

    config: cfg.GameConfig
    engine: Engine
    lake: Lake
    now: Clock
    _publish: Callable[[Path, str], Any] | None = None
    _fetch: Callable[[str, list[str], Path], Any] | None = None
    _glue: Any = None

    def publish(self, path: Path, *, replace: bool = True) -> None:
        """Copy a finished file or directory of the lake to the game's curated bucket (same key)."""
        if self._publish is not None:
            self._publish(path, path.relative_to(self.lake.base).as_posix(), replace=replace)

    def fetch(self, path: Path, names: list[str]) -> None:
        """Bring the named files of a lake directory down from the curated bucket: all, or none if one is missing."""
        if self._fetch is not None:
            self._fetch(path.relative_to(self.lake.base).as_posix(), names, path)

    def run_date(self, args: Args) -> dt.date:
        """The day a run processes: --date, else the workflow run's `date` property, else yesterday.

        The first job of a workflow run stores the day it chose as the run property `date`, so
        every job of that run processes the same day even when the run crosses midnight."""
        if "date" in args:
            return dt.date.fromisoformat(args["date"])
        day = self.now().date() - dt.timedelta(days=1)
        if "WORKFLOW_NAME" not in args or "WORKFLOW_RUN_ID" not in args:
            return day
        glue = self._glue or _client("glue")
        run = {"Name": args["WORKFLOW_NAME"], "RunId": args["WORKFLOW_RUN_ID"]}
        stored = glue.get_workflow_run_properties(**run).get("RunProperties", {})
        if "date" in stored:
            return dt.date.fromisoformat(stored["date"])
        glue.put_workflow_run_properties(**run, RunProperties={"date": str(day)})
        return day


def runtime(args: Args, workdir: Path, now: Clock = utc_now, glue: Any = None) -> Runtime:
    """The runtime the arguments ask for: Athena (default, in AWS) or DuckDB over --lake."""
    config = load_config(args["config"], args["game"], workdir)
    if args.get("engine", "athena") == "duckdb":
        lake = Lake(Path(args["lake"]), config.game.id)
        return Runtime(config, DuckDBEngine(lake, config), lake, now, _glue=glue)
    from ltv.athena import AthenaEngine

    engine = AthenaEngine(config, database=args["database"], workgroup=args["workgroup"],
                          raw_uri=args["raw_uri"], curated_uri=args["curated_uri"])
    return Runtime(config, engine, Lake(workdir / "lake", config.game.id), now,
                   _publish=engine.publish, _fetch=engine.fetch, _glue=glue)


def main(job: str, argv: Sequence[str] | None, run: Callable[[Runtime, Args], str], *,
         extra: Sequence[str] = (), now: Clock = utc_now, glue: Any = None) -> str:
    """Parse, build the runtime, run the job and return its summary.

    A failure raises: Glue marks the run FAILED and shows the exception's type and message as the
    run's error message (what the failure alert carries), so a named `LtvError` says what is wrong
    and how to fix it right there; an exit code would only say "exit code 2"."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # no-op if logging is set up
    log.setLevel(logging.INFO)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv, extra)
        with tempfile.TemporaryDirectory(prefix=f"ltv-{job}-") as tmp:
            summary = run(runtime(args, Path(tmp), now, glue), args)
    except LtvError as e:
        log.error("%s failed: %s", job, e)
        raise
    log.info("%s: %s", job, summary)
    return summary


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)
