"""`resolve-dataset`: which dataset version a pipeline execution trains on (its first step).

The pipeline starts when the `dataset` Glue job has built the rolling dataset of the retraining
schedule (or by hand). Its `DatasetVersion` parameter is `rolling`, the newest complete
`rolling-YYYY-MM-DD` version under `s3://<curated>/datasets/`, or an explicit version name that
must exist and be complete (`_SUCCESS`, written last by the dataset job). Writes
`dataset.json` ({"version", "uri", "cutoffs", "rows"}) to `--output`, the PropertyFile the
training and evaluation steps read their input location from. A failure's reason (no such
version, an incomplete one) goes to /opt/ml/output/message.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import boto3

from ltv.errors import MissingPartitionError
from ltv.lake import SUCCESS, write_json_atomic
from pipelines.container import Paths, run

ROLLING = re.compile(r"^rolling-(\d{4}-\d{2}-\d{2})$")
PREFIX = "datasets/"
PROPERTY_FILE = "dataset.json"


def newest_rolling(names: list[str]) -> str | None:
    """The rolling version with the latest date among `names`."""
    rolling = sorted((m.group(1), name) for name in names if (m := ROLLING.match(name)))
    return rolling[-1][1] if rolling else None


def resolve(s3: Any, curated_uri: str, version: str) -> dict[str, Any]:
    """The dataset version to train on, checked complete, with its S3 prefix."""
    bucket = curated_uri.removeprefix("s3://").strip("/")
    complete = _complete_versions(s3, bucket)
    name = newest_rolling(complete) if version == "rolling" else version
    if name is None or name not in complete:
        wanted = "complete rolling-YYYY-MM-DD version" if version == "rolling" else f"complete version {version!r}"
        raise MissingPartitionError(
            f"no {wanted} under s3://{bucket}/{PREFIX} (complete versions: {complete or 'none'}); build it with the "
            "dataset Glue job (aws glue start-job-run --job-name ltv-<game>-dataset [--arguments "
            "'{\"--version\":\"NAME\"}'])")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{PREFIX}{name}/manifest.json")["Body"].read())
    return {"version": name, "uri": f"s3://{bucket}/{PREFIX}{name}/", "cutoffs": manifest.get("cutoffs"),
            "rows": manifest.get("rows")}


def _complete_versions(s3: Any, bucket: str) -> list[str]:
    """The versions whose marker exists, from one listing of the datasets prefix (the marker is a
    key `datasets/<version>/_SUCCESS`): no request per version, and no read of a key that may be
    missing."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX)
    keys = (obj["Key"][len(PREFIX):] for page in pages for obj in page.get("Contents", []))
    return sorted(key.split("/", 1)[0] for key in keys if key.count("/") == 1 and key.endswith(f"/{SUCCESS}"))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="resolve-dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--curated-uri", required=True, help="s3://<the game's curated bucket>")
    parser.add_argument("--version", default="rolling", help="'rolling' (default) or a dataset version name")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--region", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, s3: Any = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)

    def step() -> str:
        found = resolve(s3 or boto3.client("s3", region_name=args.region), args.curated_uri, args.version)
        write_json_atomic(args.output / PROPERTY_FILE, found)
        return f"dataset {found['version']} at {found['uri']}: rows {found['rows']}"

    return run(step, Paths.from_env().processing_message)


if __name__ == "__main__":
    sys.exit(main())
