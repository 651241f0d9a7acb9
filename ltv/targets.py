"""Target lists: from a date's published predictions, whom to offer to on each day of the coming week.

Policies (`POLICIES`), all under the same daily budget and per-player cooldown:

- `model`: each (player, day) is worth `p_buy x value_if_payer`, where `p_buy` is the model's
  P(first purchase on that day | none before it) (the hazard from `p_day_1..N`): an offer works
  best on a player about to buy (see `ltv.simulate.offers`), so the budget goes to the pairs of
  largest expected value at stake, greedily, a player at most once per cooldown.
- `random-day`: the same budget spent on random players on random days (a seeded hash of the
  player), the comparison that shows what the model's timing adds.
- `none`: no offers (the holdout of an experiment).

Output layout, partitioned like the predictions it derives from (`ltv.runs`):

    <lake>/targets/game=<game>/dt=YYYY-MM-DD/run=<predictions run>/part-0.parquet + _SUCCESS

(the same keys under the curated bucket in AWS, the catalog table `targets`, whose columns are
`columns(config)`). Written atomically; the run is the predictions' run, so a rerun writes the
same list. `make` is the one way a list is made from a run, with the game's `targets:` settings
unless overridden: `ltv targets` and the AWS job (glue_jobs/targets.py) both call it; in AWS the
job then announces the list with `ready_event` ("LTV Targets Ready" on the default event bus).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from ltv import runs
from ltv.config import GameConfig, TargetPolicy
from ltv.errors import LtvError
from ltv.lake import Lake, atomic_dir

POLICIES = get_args(TargetPolicy)
WEEK = 7
ROOT = runs.TARGETS
PART = "part-0.parquet"
# the catalog types of the columns after player_id (whose type is the predictions', see `columns`)
_TYPES = {"offer_date": "string", "day": "bigint", "policy": "string", "p_buy": "double", "expected_value": "double",
          "segment": "bigint", "reason": "string"}
COLUMNS = ["player_id", *_TYPES]
EVENT_SOURCE = "ltv"                      # the "targets ready" event (`ready_event`)
EVENT_DETAIL_TYPE = "LTV Targets Ready"


class TargetsError(LtvError):
    """Target lists cannot be made from these inputs (an unknown policy, a negative budget)."""


def unit_hash(salt: str, ids: Iterable) -> np.ndarray:
    """A number in [0, 1) per id from a salted hash: the same for the same (salt, id) on every
    day, run and machine, independent between salts. Experiments assign arms with it and the
    random-day policy draws its days with it."""
    prefix = f"{salt}\x1f".encode()
    out = [int.from_bytes(hashlib.blake2b(prefix + str(i).encode(), digest_size=8).digest(), "big") for i in ids]
    return np.asarray(out, dtype=np.uint64).astype(np.float64) / 2.0**64


def hazards(pred: pd.DataFrame, days: int = WEEK) -> np.ndarray:
    """(players, days) P(first purchase on day d | none before it), from `p_day_1..`."""
    p = pred[[f"p_day_{d}" for d in range(1, days + 1)]].to_numpy(float)
    before = np.c_[np.zeros(len(p)), np.cumsum(p, axis=1)[:, :-1]]
    return np.clip(p / np.maximum(1 - before, 1e-9), 0, 1)


def segments(pred: pd.DataFrame) -> np.ndarray:
    """Predicted-value decile (1 = lowest .. 10 = highest `ltv_expected`) of each player in `pred`."""
    rank = pred["ltv_expected"].rank(method="first").to_numpy()
    return (1 + np.floor(10 * (rank - 1) / max(len(pred), 1))).astype(int)


def columns(config: GameConfig) -> list[tuple[str, str]]:
    """The target list's columns with their (Hive/Athena) types: the catalog table's and the files'."""
    from ltv.scoring import prediction_columns

    return [("player_id", dict(prediction_columns(config))["player_id"]), *_TYPES.items()]


def plan(pred: pd.DataFrame, day: dt.date, *, policy: str, budget: int, cooldown_days: int = WEEK,
         salt: str = "targets", days: int = WEEK) -> pd.DataFrame:
    """The offers of the `days` days starting at `day` (day 1 = `day` itself, as in `p_day_1`).

    Args:
        pred: predictions of `day` (player_id, p_day_1.., value_if_payer, ltv_expected).
        policy: one of `POLICIES`.
        budget: at most this many offers per day.
        cooldown_days: a player offered on day d gets no offer before day d + cooldown_days.
        salt: the random-day policy's seed.
    Returns:
        one row per offer, `COLUMNS`, sorted by day then value.
    """
    if policy not in POLICIES:
        raise TargetsError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    if budget < 0 or cooldown_days < 1:
        raise TargetsError(f"the budget must be >= 0 and the cooldown >= 1 day (got {budget}, {cooldown_days})")
    if policy == "none" or budget == 0 or pred.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    h = hazards(pred, days)
    value = h * pred["value_if_payer"].fillna(0).to_numpy(float)[:, None]
    if policy == "model":
        score = value
    else:  # random-day: one hashed day per player, random order among the players of a day
        u = unit_hash(salt, pred["player_id"])
        pick = np.minimum((u * days).astype(int), days - 1)
        order = unit_hash(salt + "/order", pred["player_id"])
        score = np.where(np.arange(days)[None, :] == pick[:, None], 1 + order[:, None], 0.0)
    rows, cols = _allocate(score, budget, cooldown_days)
    seg = segments(pred)
    out = pd.DataFrame({
        "player_id": pred["player_id"].to_numpy()[rows],
        "offer_date": [str(day + dt.timedelta(days=int(c))) for c in cols],
        "day": cols + 1,
        "policy": policy,
        "p_buy": h[rows, cols],
        "expected_value": value[rows, cols],
        "segment": seg[rows],
    })
    why = "largest expected value at stake" if policy == "model" else "random day (comparison policy)"
    out["reason"] = [f"{why}: P(buy that day)={p:.2f}, value at stake {v:.2f}, value decile {s}"
                     for p, v, s in zip(out["p_buy"], out["expected_value"], out["segment"])]
    return out.sort_values(["day", "expected_value"], ascending=[True, False], kind="stable").reset_index(drop=True)


def _allocate(score: np.ndarray, budget: int, cooldown: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy: (player, day) pairs by score, taken while the day has budget left and the player
    has no offer within `cooldown` days of it. Pairs of score 0 are never taken."""
    n, days = score.shape
    flat = np.flatnonzero(score.ravel() > 0)
    flat = flat[np.argsort(-score.ravel()[flat], kind="stable")]
    left = np.full(days, budget)
    taken: dict[int, list[int]] = {}
    rows, cols = [], []
    for f in flat:
        if not left.any():
            break
        r, c = divmod(int(f), days)
        if left[c] == 0 or any(abs(c - o) < cooldown for o in taken.get(r, ())):
            continue
        taken.setdefault(r, []).append(c)
        left[c] -= 1
        rows.append(r)
        cols.append(c)
    return np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)


def make(config: GameConfig, predictions: Any, day: dt.date | str, run: str | None = None, *,
         policy: str | None = None, budget: int | None = None, cooldown_days: int | None = None) -> tuple[pd.DataFrame, str]:
    """The target list of a date from its published predictions, and the run it derives from.

    Args:
        predictions: an `ltv.scoring.Predictions` (the local lake's, or the curated bucket's).
        run: the predictions run (default: the date's latest published run).
        policy, budget, cooldown_days: override the game's `targets:` settings.
    """
    day = dt.date.fromisoformat(str(day))
    settings = config.targets
    pred = predictions.read(day, run)
    out = plan(pred, day, policy=policy or settings.policy, budget=settings.budget if budget is None else budget,
               cooldown_days=settings.cooldown_days if cooldown_days is None else cooldown_days,
               salt=f"targets/{config.game.id}")
    return out, str(pred["run"].iloc[0])


def target_dir(lake: Lake, day: dt.date | str, run: str) -> Path:
    return Path(lake.root) / runs.targets_prefix(lake.game, day, run)


def to_parquet(config: GameConfig, targets: pd.DataFrame) -> bytes:
    """The list as the table's data file: its catalog columns, in order, with their types (an empty
    list too, so Athena reads every partition alike)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ltv.athena import TableSpec, arrow_schema

    schema = arrow_schema(TableSpec(ROOT, "curated", tuple(columns(config)), ()))
    table = pa.Table.from_pandas(targets[COLUMNS], schema=schema, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def write_targets(lake: Lake, config: GameConfig, day: dt.date | str, run: str, targets: pd.DataFrame) -> Path:
    """Write the target list of `day` derived from predictions run `run` (replacing an earlier
    write of the same list atomically)."""
    target = target_dir(lake, day, run)
    with atomic_dir(target) as tmp:
        (tmp / PART).write_bytes(to_parquet(config, targets))
    return target


def ready_event(game: str, bucket: str, day: dt.date | str, run: str, targets: pd.DataFrame, *,
                database: str) -> dict[str, Any]:
    """The EventBridge entry (PutEvents) that announces a complete list: where it is in S3 and in
    the catalog, and what it holds. (game, dt, run) identify it: a consumer that sees the same
    triple twice (EventBridge delivers at least once) has the same list."""
    location = f"s3://{bucket}/{runs.targets_prefix(game, day, run)}"
    detail = {"game": game, "dt": str(day), "run": run, "location": location, "files": [location + PART],
              "table": f"{database}.{ROOT}", "offers": int(len(targets)),
              "players": int(targets["player_id"].nunique()) if len(targets) else 0,
              "policies": sorted(map(str, targets["policy"].unique())) if len(targets) else [],
              "offer_dates": sorted(map(str, targets["offer_date"].unique())) if len(targets) else []}
    return {"Source": EVENT_SOURCE, "DetailType": EVENT_DETAIL_TYPE, "Detail": json.dumps(detail)}


def export(targets: pd.DataFrame, path: Path) -> Path:
    """The list as a CSV or JSON file (by the suffix) for a CRM."""
    from ltv.lake import write_text_atomic

    if path.suffix == ".json":
        write_text_atomic(path, targets.to_json(orient="records", indent=1))
    elif path.suffix == ".csv":
        write_text_atomic(path, targets.to_csv(index=False))
    else:
        raise TargetsError(f"cannot export to {path}: use a .csv or .json file name")
    return path


def add_view(con, root: Path) -> bool:
    """A DuckDB view `targets` over every target list under the lake's root, with its game, dt and
    run partition values (the local twin of a partitioned table); False when there is none yet."""
    base = Path(root) / ROOT
    if not any(base.glob("game=*/dt=*/run=*/*.parquet")):
        return False
    con.execute(f"CREATE OR REPLACE VIEW targets AS SELECT * FROM read_parquet('{base}/game=*/dt=*/run=*/*.parquet', "
                "hive_partitioning = true, hive_types = {'game': VARCHAR, 'dt': VARCHAR, 'run': VARCHAR})")
    return True
