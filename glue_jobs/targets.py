"""Glue job `ltv-<game>-targets`: the target list of a published prediction run, then "LTV Targets Ready".

Started by the scoring's publish function (lambdas/publish.py, `BatchScoring.finish`) with
`--date` and `--run`, the date's latest published run. A Glue job rather than a step in that
Lambda because it is the thinner of the two: making a list needs pandas, NumPy and pyarrow, which
the Lambda bundle leaves out (requirements/lambda.txt; the functions stay small and start fast),
while the Glue jobs already ship the core with them (the wheelhouse), with their logs, security
configuration and failure alerts (the ETL stack's failure hook names this job too). It reads and
plans with the same core code as `ltv targets`: `ltv.scoring.Predictions` over the curated bucket
(`runs.S3Store`) and `ltv.targets.make` with the game's `targets:` settings.

In the curated bucket, the list's folder `targets/game=G/dt=D/run=R/` gets, in this order:

1. `part-0.parquet` (the table's columns and types), then `_SUCCESS`: a folder without the
   marker is incomplete, registered nowhere, and rewritten whole (with the same rows) by a retry;
2. the partition (G, D, R) of the catalog table `targets` (Athena sees complete lists only);
3. the event "LTV Targets Ready" (source `ltv`) on the account's default event bus, its detail
   naming the folder, the file and the table (`ltv.targets.ready_event`), then `_NOTIFIED`.

Replays: a list that is complete is not rewritten; one already announced (`_NOTIFIED`) is left
alone and announced no more (the publish function does not even start the job for it). A crash
after the event and before `_NOTIFIED` announces it again on the retry: EventBridge is
at-least-once anyway, so consumers key on (game, dt, run), which is the same list.

With `--engine duckdb --lake DIR` the same script runs on a local lake: the list is written as
`ltv targets` writes it (no catalog, no event).
"""
from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pandas as pd

from glue_jobs import _common as common  # from the core wheel on the job's Python path
from ltv import runs, targets
from ltv.errors import LtvError
from ltv.lake import SUCCESS
from ltv.sagemaker_scoring import register_partition
from ltv.scoring import Predictions


def run(rt: common.Runtime, args: common.Args, clients: dict[str, Any] | None = None) -> str:
    config, game = rt.config, rt.config.game.id
    if "date" not in args or "run" not in args:
        raise targets.TargetsError("the targets job needs --date and --run (the published predictions run it lists "
                                   "offers for); the publish function gives both, by hand see docs/experiments.md")
    day, run_id = dt.date.fromisoformat(args["date"]), args["run"]
    if "/" in run_id or run_id.startswith("."):  # it names a folder: no path of its own
        raise targets.TargetsError(f"--run {run_id!r} is not a run id (e.g. 20250414T031502.123456-v3-ab12cd)")
    aws = args.get("engine", "athena") == "athena"
    clients = clients or (_clients() if aws else {})
    bucket = args["curated_uri"].removeprefix("s3://").strip("/") if aws else None
    store: runs.Store = runs.S3Store(clients["s3"], bucket) if aws else runs.DirStore(rt.lake.root)
    prefix = runs.targets_prefix(game, day, run_id)
    if store.get(prefix + runs.NOTIFIED) is not None:
        return f"the target list {prefix} was made and announced before: nothing written, nothing sent"
    existing = store.get(prefix + SUCCESS) is not None and store.get(prefix + targets.PART)
    if existing:
        plan, what = pd.read_parquet(io.BytesIO(existing.body)), "was complete already"
    else:
        plan, _ = targets.make(config, Predictions(store, game), day, run_id)
        if aws:
            store.put(prefix + targets.PART, targets.to_parquet(config, plan))
            try:
                store.put(prefix + SUCCESS, dt.datetime.now(dt.timezone.utc).isoformat().encode(), expect=runs.ABSENT)
            except runs.Conflict:
                pass  # written by a concurrent run of the same list (the same rows)
        else:
            targets.write_targets(rt.lake, config, day, run_id, plan)
        what = "written"
    if not aws:  # a local lake has no catalog and no bus: the list is all there is
        return f"{len(plan)} offers in {targets.target_dir(rt.lake, day, run_id)}: {what}"
    entry = targets.ready_event(game, bucket, day, run_id, plan, database=args["database"])
    register_partition(clients["glue"], args["database"], targets.ROOT, [game, str(day), run_id],
                       f"s3://{bucket}/{prefix}", replace=False)
    answer = clients["events"].put_events(Entries=[entry])
    if answer.get("FailedEntryCount"):
        failed = answer["Entries"][0]
        raise LtvError(f"EventBridge refused the targets-ready event of {prefix}: {failed.get('ErrorCode')} "
                       f"{failed.get('ErrorMessage')}; the list is complete and registered, so a retry of the job "
                       "only sends the event")
    event_id = answer["Entries"][0]["EventId"]
    store.put(prefix + runs.NOTIFIED, json.dumps({"event_id": event_id,
                                                  "at": dt.datetime.now(dt.timezone.utc).isoformat()}).encode())
    return f"{len(plan)} offers in s3://{bucket}/{prefix}: {what}, registered, announced (event {event_id})"


def _clients() -> dict[str, Any]:
    import boto3

    return {name: boto3.client(name) for name in ("s3", "glue", "events")}


def main(argv: list[str] | None = None, clients: dict[str, Any] | None = None, **kwargs: Any) -> str:
    return common.main("targets", argv, lambda rt, args: run(rt, args, clients), extra=("run",), **kwargs)


if __name__ == "__main__":
    main()
