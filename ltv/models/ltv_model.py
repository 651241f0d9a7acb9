"""The trained model: two-stage LTV, next-purchase-day distribution and churn, as one artifact.

- Two-stage LTV (Kakao Games' ODIN): stage 1 classifies payer vs non-payer, its decision
  threshold chosen on the validation period to maximise F1; stage 2 regresses the value on
  payers only, on log1p(LTV) with Duan's smearing correction for the back-transform.
  `ltv_pred` = stage-2 value where stage 1 says payer, else 0; `ltv_expected` =
  p_payer × value_if_payer, for ranking.
- Next purchase day (King): P(day d) = P(a purchase within N days) × P(d | a purchase within N
  days), a binary model times a multiclass model fit on purchasers only. The conditional part
  is what the offer day needs (the day where the CDF conditional on a purchase reaches 0.5),
  and it learns from the rows that carry timing information instead of being swamped by the
  'no purchase' class (benchmarks/model_quality.py compares it with one 17-class model).
- Churn: no active day in the LTV horizon; threshold maximises F1 on validation.

The artifact is a folder holding each stage's deployment-only AutoGluon predictor,
`feature_stats.json` (the training reference for drift monitoring) and `manifest.json` with
everything else (features, thresholds, baselines, lineage, and a checksum of every file, so a
corrupt or incomplete artifact is refused when loaded). It can be moved anywhere.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ltv import etl, explain, horizon, metrics
from ltv.config import GameConfig, ModelBudget
from ltv.errors import ArtifactError, NoPayersError
from ltv.lake import scratch, write_json_atomic
from ltv.models import automl, baselines, btyd
from ltv.stats import feature_stats
from ltv.version import code_version

STAGES = ("payer", "value", "purchase_soon", "purchase_day", "churn")
FORMAT = 1
LABEL_COLUMNS = ("ltv", "payer", "next_purchase_day", "churned")
NOT_FEATURES = frozenset({"player_id", "cutoff", "split", *LABEL_COLUMNS})
MIN_PAYERS = 10
PREDICTION_COLUMNS = ("ltv_expected", "ltv_pred", "p_payer", "p_churn", "offer_day")


def model_features(frame: pd.DataFrame, budget: ModelBudget) -> list[str]:
    return [c for c in frame.columns if c not in NOT_FEATURES and c not in budget.exclude_features]


def model_input(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The model's columns with pandas' nullable numbers as plain floats (NaN for missing),
    which every model family accepts."""
    x = frame[columns].copy()
    for c in x.columns:
        if isinstance(x[c].dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_numeric_dtype(x[c]):
            x[c] = x[c].astype("float64")
    return x


class LTVModel:
    """A loaded artifact: `predict(features)` gives every prediction column."""

    def __init__(self, path: Path, manifest: dict[str, Any], predictors: dict[str, Any]):
        self.path, self.manifest, self.predictors = path, manifest, predictors

    @property
    def features(self) -> list[str]:
        return self.manifest["features"]

    @property
    def purchase_days(self) -> int:
        return self.manifest["horizons"]["purchase_days"]

    @classmethod
    def load(cls, path: Path) -> LTVModel:
        """Load an artifact after checking that every file is present and unchanged."""
        path = Path(path)
        manifest = verify(path)
        try:
            predictors = {stage: automl.load(path / stage) for stage in STAGES}
        except Exception as e:  # noqa: BLE001 - any loader failure means an unusable artifact
            raise ArtifactError(f"model artifact {path} cannot be loaded: {type(e).__name__}: {e}") from None
        return cls(path, manifest, predictors)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Predictions for feature rows (extra columns are ignored, missing ones are an error)."""
        if self.manifest.get("btyd"):
            features = with_btyd(features, self.manifest)
        missing = [c for c in self.features if c not in features]
        if missing:
            raise ArtifactError(f"the features lack columns the model was trained on: {missing[:10]}; "
                                "score with features built by the same ETL version")
        x = model_input(features, self.features)
        m = self.manifest
        p_payer, value = self.value_stages(x)
        p_churn = self.predictors["churn"].predict_proba(x, as_multiclass=True)[1].to_numpy()
        days = self._day_distribution(x)
        out = pd.DataFrame(index=features.index)
        for col in ("player_id", "cutoff"):
            if col in features:
                out[col] = features[col]
        out["p_payer"] = p_payer
        out["value_if_payer"] = value
        out["payer_pred"] = (p_payer >= m["payer_threshold"]).astype(int)
        out["ltv_pred"] = np.where(out["payer_pred"] == 1, value, 0.0)
        out["ltv_expected"] = p_payer * value
        out["p_churn"] = p_churn
        out["churn_pred"] = (p_churn >= m["churn_threshold"]).astype(int)
        for d in range(1, self.purchase_days + 1):
            out[f"p_day_{d}"] = days[:, d]
        out["p_day_none"] = days[:, 0]
        out["offer_day"] = metrics.offer_day(days[:, 1:])
        out["likely_day"] = metrics.likely_day(days[:, 1:])
        out["ltv_expected_asked"] = extend_to_asked(features, m, out["ltv_expected"].to_numpy(float))
        beside = btyd_at_asked_horizon(features, m)
        out["btyd_value"], out["btyd_p_alive"] = beside["btyd_expected_value"], beside["btyd_p_alive"]
        return out

    def inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model's input rows for feature rows (with the BTYD columns of its stored fit)."""
        if self.manifest.get("btyd"):
            features = with_btyd(features, self.manifest)
        return model_input(features, self.features)

    def value_stages(self, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """p(payer) and the value if a payer, for model-input rows (`inputs`)."""
        m = self.manifest
        p_payer = self.predictors["payer"].predict_proba(x, as_multiclass=True)[1].to_numpy()
        raw = self.predictors["value"].predict(x).to_numpy(float)
        return p_payer, np.clip(np.expm1(raw) * m["smearing"] if m["log_target"] else raw, 0, None)

    def explain(self, features: pd.DataFrame) -> explain.Decomposition:
        """Exact per-feature contributions to `ltv_expected` of these rows, in currency
        (`ltv.explain`); `Unexplainable` if a value stage's model has no exact contributions."""
        return explain.decompose(self.predictors, self.inputs(features), self.features,
                                 log_target=self.manifest["log_target"], smearing=self.manifest["smearing"])

    def drivers(self, features: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
        """The driver columns for scored rows (`predict`'s output for `features`): the players the
        artifact's explanation settings select get theirs, checked to add up to their ltv_expected;
        the others, and every row of an unexplainable artifact, get nulls."""
        ids = scored["player_id"] if "player_id" in scored else None
        chosen = explain.selected(self.manifest.get("explanations"), scored["ltv_expected"].to_numpy(), ids)
        out = explain.empty(scored.index)
        if not chosen.any():
            return out
        try:
            dec = self.explain(features.loc[chosen])
        except explain.Unexplainable:
            return out
        explain.check(dec, scored["ltv_expected"].to_numpy()[chosen])
        found = explain.drivers(dec)
        found.index = scored.index[chosen]
        out.loc[chosen] = found
        return out

    def _day_distribution(self, x: pd.DataFrame) -> np.ndarray:
        """P(no purchase within N days) in column 0, P(first purchase on day d) in column d."""
        soon = self.predictors["purchase_soon"].predict_proba(x, as_multiclass=True)[1].to_numpy()
        proba = self.predictors["purchase_day"].predict_proba(x, as_multiclass=True)
        out = np.zeros((len(x), self.purchase_days + 1))
        for cls, col in zip(proba.columns, proba.to_numpy().T):  # days never seen in training stay 0
            out[:, int(cls)] = col * soon
        out[:, 0] = 1 - soon
        return out


# ----------------------------------------------------------------------------------------------
# training


def train(config: GameConfig, splits: dict[str, pd.DataFrame], target: Path, *, dataset: dict[str, Any] | None = None,
          budget: ModelBudget | None = None, progress: Callable[[str], None] | None = None) -> LTVModel:
    """Fit every stage on the train split (validation for early stopping and thresholds) and
    write the artifact to `target` (a new folder)."""
    config = horizon.as_built(config, dataset)
    budget = budget or config.model
    btyd_spec = None
    if budget.btyd_features and btyd.available(splits["train"]):
        # BG/NBD + Gamma-Gamma fitted at each cutoff on that cutoff's history only; scoring later
        # uses the fit at the newest cutoff the model learned from (kept in the manifest)
        say_btyd = progress or (lambda _msg: None)
        say_btyd("BTYD (BG/NBD + Gamma-Gamma) at each training cutoff")
        h = config.horizons.ltv_days
        splits = {**splits, **{s: btyd.with_features(splits[s], h) for s in ("train", "validation")}}
        latest = max(splits["validation"]["cutoff"].max(), splits["train"]["cutoff"].max())
        source = splits["validation"] if latest in set(splits["validation"]["cutoff"]) else splits["train"]
        fitted = btyd.fit(source[source["cutoff"] == latest])
        btyd_spec = {"horizon_days": h, "cutoff": str(latest), "model": fitted.to_json() if fitted else None}
    features = model_features(splits["train"], budget)
    train_df, val = (pd.concat([model_input(splits[s], features), splits[s][list(LABEL_COLUMNS)]], axis=1)
                     for s in ("train", "validation"))
    payers, val_payers = train_df[train_df["ltv"] > 0], val[val["ltv"] > 0]
    if len(payers) < MIN_PAYERS or len(val_payers) == 0:
        raise NoPayersError(
            f"the training data has {len(payers)} payer(s) (validation: {len(val_payers)}); the two-stage model needs "
            f"at least {MIN_PAYERS} in training and one in validation. Use a longer dataset version, or check that "
            "logs.events.event_types.purchase and the revenue column are right for this game")
    target = Path(target)
    work = scratch(target.parent, "work", target.name)
    say = progress or (lambda _msg: None)
    try:
        stages: dict[str, Any] = {}
        say("stage 1: payer classifier")
        stages["payer"] = automl.fit(train_df[[*features, "payer"]], "payer", "binary", "log_loss", budget,
                                     work / "payer", val[[*features, "payer"]], progress=progress, stage="payer")
        say("stage 2: value regressor on payers")
        log = budget.log_target
        tr = payers[features].assign(value=np.log1p(payers["ltv"]) if log else payers["ltv"])
        tv = val_payers[features].assign(value=np.log1p(val_payers["ltv"]) if log else val_payers["ltv"])
        stages["value"] = automl.fit(tr, "value", "regression", "root_mean_squared_error", budget, work / "value", tv,
                                     progress=progress, stage="value")
        say("next purchase day")
        soon = lambda f: f[features].assign(soon=(f["next_purchase_day"] > 0).astype(int))  # noqa: E731
        stages["purchase_soon"] = automl.fit(soon(train_df), "soon", "binary", "log_loss", budget,
                                             work / "purchase_soon", soon(val), progress=progress,
                                             stage="purchase soon")
        buyers = train_df[train_df["next_purchase_day"] > 0]
        stages["purchase_day"] = automl.fit(buyers[[*features, "next_purchase_day"]], "next_purchase_day",
                                            "multiclass", "log_loss", budget, work / "purchase_day",
                                            _known_classes(val, buyers, features), progress=progress,
                                            stage="purchase day")
        say("churn")
        stages["churn"] = automl.fit(train_df[[*features, "churned"]], "churned", "binary", "log_loss", budget,
                                     work / "churn", val[[*features, "churned"]], progress=progress, stage="churn")
        smearing = 1.0
        if log:
            residual = tv["value"].to_numpy() - stages["value"].predict(tv[features]).to_numpy()
            smearing = float(np.mean(np.exp(residual)))
        p_val = stages["payer"].predict_proba(val[features], as_multiclass=True)[1].to_numpy()
        c_val = stages["churn"].predict_proba(val[features], as_multiclass=True)[1].to_numpy()
        say("packaging the artifact")
        tmp = scratch(target.parent, "tmp", target.name)
        tmp.mkdir(parents=True)
        try:
            for stage, predictor in stages.items():
                automl.deploy(predictor, tmp / stage)
            write_json_atomic(tmp / "feature_stats.json", feature_stats(train_df, features))
            manifest = {
                "format": FORMAT, "game": config.game.id, "config_hash": config.config_hash(),
                "dataset": {k: dataset[k] for k in ("name", "fingerprint", "cutoffs", "rows") if k in dataset} if dataset else None,
                "code_version": code_version(), "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "features": features, "horizons": config.horizons.model_dump(),
                # what its features mean (log mapping, history steps, window): scoring refuses other ones
                "features_definition": etl.definition(config, "features")["hash"],
                "trained_on": trained_on(splits, label_days(config)),
                "log_target": log, "smearing": smearing,
                "payer_threshold": metrics.best_f1_threshold(val["payer"], p_val),
                "churn_threshold": metrics.best_f1_threshold(val["churned"], c_val),
                "stages": {s: {"model": p.model_best} for s, p in stages.items()},
                "baselines": baselines.fit(train_df, config),
                "btyd": btyd_spec,
                "budget": budget.model_dump(),
            }
            _seal(tmp, manifest)
            model = LTVModel.load(tmp)
            scored = model.predict(val)
            manifest["prediction_stats"] = feature_stats(scored, PREDICTION_COLUMNS)
            manifest["explanations"] = explain.settings(config.explanations, scored["ltv_expected"].to_numpy())
            manifest["validation_metrics"] = _finite(metrics.flat_metrics(pd.concat([val, scored.drop(
                columns=[c for c in ("player_id", "cutoff") if c in scored])], axis=1), model.purchase_days))
            _seal(tmp, manifest)
            if target.exists():
                raise ArtifactError(f"{target} exists; model artifacts are never overwritten")
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return LTVModel.load(target)
    finally:
        automl.remove(work)


def with_btyd(features: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    """Feature rows with the BTYD columns from the model's stored fit (the same parameters for
    every row, so a player's score does not depend on which other rows are scored with it)."""
    spec = manifest.get("btyd") or {}
    if not spec or not btyd.available(features):
        return features
    fitted = btyd.Btyd.from_json(spec["model"]) if spec.get("model") else None
    extra = btyd.predict(fitted, features, spec["horizon_days"])
    return pd.concat([features.drop(columns=[c for c in btyd.COLUMNS if c in features]), extra], axis=1)


def _stored_btyd(manifest: dict[str, Any]) -> btyd.Btyd | None:
    spec = manifest.get("btyd") or {}
    return btyd.Btyd.from_json(spec["model"]) if spec.get("model") else None


def extend_to_asked(features: pd.DataFrame, manifest: dict[str, Any], value: np.ndarray) -> np.ndarray:
    """Predicted values over the trained horizon extended to the asked one, per player
    (`btyd.extend` with the model's stored fit); unchanged when the two horizons are the same."""
    h = manifest["horizons"]
    asked = h.get("asked_ltv_days") or h["ltv_days"]
    if asked == h["ltv_days"]:
        return np.asarray(value, float)
    return btyd.extend(_stored_btyd(manifest), features, value, h["ltv_days"], asked)


def btyd_at_asked_horizon(features: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    """BTYD's columns for feature rows at the horizon the game asked for (`horizons.asked_ltv_days`
    when the model was trained shorter), from the model's stored fit; NaN where it does not apply."""
    h, fitted = manifest["horizons"], _stored_btyd(manifest)
    if not btyd.available(features):
        return pd.DataFrame(np.nan, index=features.index, columns=list(btyd.COLUMNS))
    return btyd.predict(fitted, features, h.get("asked_ltv_days") or h["ltv_days"])


def label_days(config: GameConfig) -> int:
    """Days after a cutoff its labels read: [cutoff, cutoff + label_days)."""
    return max(config.horizons.ltv_days, config.horizons.purchase_days)


def trained_on(splits: dict[str, pd.DataFrame], days: int) -> dict[str, Any]:
    """The period a model learned from (lineage): its train and validation cutoffs, the label
    horizon, and `seen_until`, the first day none of its rows' features or labels reached.
    Rows at cutoffs on or after `seen_until` are out-of-sample for this model."""
    period = {s: sorted(str(c) for c in splits[s]["cutoff"].unique()) for s in ("train", "validation")}
    last = dt.date.fromisoformat(max(period["train"] + period["validation"]))
    return {"train": [period["train"][0], period["train"][-1]],
            "validation": [period["validation"][0], period["validation"][-1]],
            "label_days": days, "seen_until": str(last + dt.timedelta(days=days))}


def seen_until(manifest: dict[str, Any]) -> dt.date | None:
    """The first day a model's training and validation data never reached (None if unknown:
    an artifact from before lineage recorded it, judged from its dataset's cutoffs if any)."""
    if manifest.get("trained_on"):
        return dt.date.fromisoformat(manifest["trained_on"]["seen_until"])
    cutoffs = ((manifest.get("dataset") or {}).get("cutoffs") or {})
    seen = [*cutoffs.get("train", []), *cutoffs.get("validation", [])]
    if not seen:
        return None
    h = manifest["horizons"]
    return dt.date.fromisoformat(max(seen)) + dt.timedelta(days=max(h["ltv_days"], h["purchase_days"]))


def _known_classes(val: pd.DataFrame, train_df: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Validation rows whose purchase-day class occurs in training (AutoGluon rejects unseen classes)."""
    seen = set(train_df["next_purchase_day"].unique())
    keep = val["next_purchase_day"].isin(seen) & (val["next_purchase_day"] > 0)
    return val.loc[keep, [*features, "next_purchase_day"]]


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in values.items()}


# ----------------------------------------------------------------------------------------------
# integrity


def _checksums(path: Path) -> dict[str, str]:
    out = {}
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.name != "manifest.json":
            out[str(f.relative_to(path))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _seal(path: Path, manifest: dict[str, Any]) -> None:
    manifest["files"] = _checksums(path)
    manifest["size_bytes"] = sum((path / f).stat().st_size for f in manifest["files"])
    write_json_atomic(path / "manifest.json", manifest)


def verify(path: Path) -> dict[str, Any]:
    """The artifact's manifest, after checking every listed file's checksum."""
    mf = path / "manifest.json"
    if not mf.exists():
        raise ArtifactError(f"{path} is not a model artifact (no manifest.json)")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{mf} is corrupt: {e}") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: artifact format {manifest.get('format')} is not supported (expected {FORMAT})")
    actual = _checksums(path)
    expected = manifest.get("files", {})
    missing = sorted(set(expected) - set(actual))
    changed = sorted(f for f in expected if f in actual and actual[f] != expected[f])
    if missing or changed:
        raise ArtifactError(f"model artifact {path} is corrupt: missing {missing[:5]}, changed {changed[:5]}; "
                            "restore it from the registry's copy or retrain")
    return manifest
