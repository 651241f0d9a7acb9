"""The model registry: the concepts of the SageMaker Model Registry, with a local backend.

One model group per game; numbered, immutable versions, each with its artifact, metrics and
lineage (dataset version, config hash, code version, training time), and an approval status
(PendingManualApproval / Approved / Rejected) whose every change is appended to a history.
The champion is the latest Approved version, exactly what the scoring Lambda picks in AWS.
Nothing is ever deleted: a rollback rejects the champion and re-approves the previous one.

Backends: `LocalRegistry` (below) and `ltv.sagemaker_registry.SageMakerRegistry` (the SageMaker
Model Registry). This module imports no model code at import time, so the SageMaker backend (and
the scoring Lambda that resolves the champion with it) loads without AutoGluon.

Local layout, under `<lake>/<game>/registry/<group>/`:

    versions/<n>/model/          the artifact (checksummed, relocatable)
    versions/<n>/version.json    metrics and lineage, written once
    versions/<n>/status.jsonl    status history, append-only (the last line is the status)
"""
from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ltv.errors import ArtifactError, RegistryError
from ltv.lake import scratch, storage_error, storage_errors

if TYPE_CHECKING:  # the models (AutoGluon) are imported only when a version is loaded or registered
    from ltv.models import LTVModel

# a version's approval status, as SageMaker's ModelApprovalStatus names them; defined here, not in
# ltv.promotion (numpy, pandas), so the Lambdas and the pipeline definition import them light
APPROVED, PENDING, REJECTED = "Approved", "PendingManualApproval", "Rejected"
STATUSES = (PENDING, APPROVED, REJECTED)
# what a registered model's image serves (pipelines/serve.py reads and answers these; a registered
# package declares them; batch transform sends and accepts Parquet)
PARQUET, CSV = "application/x-parquet", "text/csv"
CONTENT_TYPES = (PARQUET, CSV)


def group_name(game: str) -> str:
    """The model package group of a game (same name locally and in SageMaker)."""
    return f"ltv-{game}"


@dataclass(frozen=True)
class ModelVersion:
    version: int
    status: str
    created: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    history: tuple[dict[str, Any], ...]
    path: Path | str            # the artifact: a folder locally, the model data's s3:// URI in SageMaker

    @property
    def ever_approved(self) -> bool:
        return any(h["status"] == APPROVED for h in self.history)


class Registry(Protocol):
    def register(self, artifact: Path, *, metrics: dict[str, Any], status: str, reason: str) -> ModelVersion: ...
    def versions(self) -> list[ModelVersion]: ...
    def get(self, version: int) -> ModelVersion: ...
    def set_status(self, version: int, status: str, reason: str) -> ModelVersion: ...
    def champion(self) -> ModelVersion | None: ...
    def load(self, version: int) -> LTVModel: ...
    def artifact_json(self, version: int, name: str) -> dict[str, Any]: ...
    def approve(self, version: int, reason: str = ...) -> ModelVersion: ...
    def reject(self, version: int, reason: str = ...) -> ModelVersion: ...
    def rollback(self, reason: str = ...) -> tuple[ModelVersion, ModelVersion]: ...


def lineage(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a registered version records of its artifact's origin (from the artifact's manifest)."""
    return {"dataset": manifest.get("dataset"), "config_hash": manifest["config_hash"],
            "code_version": manifest["code_version"], "trained": manifest["created"],
            "artifact_bytes": manifest.get("size_bytes")}


def check_status(status: str) -> None:
    """`RegistryError` unless `status` is one the registries know (both backends use the same three)."""
    if status not in STATUSES:
        raise RegistryError(f"unknown status {status!r}; one of {STATUSES}")


def check_artifact(artifact: Path, game: str, status: str) -> dict[str, Any]:
    """The artifact's manifest, once it is known to be registrable: a known status, intact
    (checksums), loadable, and a model of this game. Nothing is written before this passes."""
    from ltv.models import LTVModel, verify

    check_status(status)
    manifest = verify(artifact)
    LTVModel.load(artifact)  # refuse what cannot be loaded, not only what fails checksums
    if manifest["game"] != game:
        raise ArtifactError(f"artifact {artifact} is a model of game {manifest['game']!r}, not {game!r}")
    return manifest


def rollback_plan(versions: list[ModelVersion], group: str) -> tuple[ModelVersion, ModelVersion]:
    """(champion, previous champion) of a rollback: the latest Approved version and the latest
    earlier version that was ever Approved; `RegistryError` if either is missing."""
    approved = [v for v in versions if v.status == APPROVED]
    if not approved:
        raise RegistryError(f"{group!r} has no champion to roll back")
    champion = approved[-1]
    earlier = [v for v in versions if v.version < champion.version and v.ever_approved]
    if not earlier:
        raise RegistryError(f"version {champion.version} is the first approved version; there is no earlier "
                            "champion to roll back to")
    return champion, earlier[-1]


def _record(path: Path, parse: Any) -> Any:
    """A version's record file, parsed; `RegistryError` naming the file if it is unreadable."""
    try:
        value = parse(path.read_text())
        if value is None:
            raise ValueError("no entry")
        return value
    except (OSError, ValueError) as e:
        raise RegistryError(f"{path} is unreadable ({type(e).__name__}: {e}); restore it from a backup of the "
                            "registry (a version's files are written once and only appended to)") from None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def status_entry(status: str, reason: str) -> dict[str, str]:
    """One line of a version's status history: the new status, when, who ($LTV_ACTOR or the user), why."""
    return {"status": status, "at": _now(), "by": os.environ.get("LTV_ACTOR") or getpass.getuser(), "reason": reason}


class LocalRegistry:
    """A directory-backed registry for one game."""

    def __init__(self, root: Path, game: str):
        self.game = game
        self.root = Path(root) / group_name(game)
        self.dir = self.root / "versions"

    # -- reading

    def versions(self) -> list[ModelVersion]:
        if not self.dir.exists():
            return []
        numbers = sorted(int(p.name) for p in self.dir.iterdir() if p.name.isdigit() and (p / "version.json").exists())
        return [self.get(n) for n in numbers]

    def get(self, version: int) -> ModelVersion:
        path = self.dir / str(version)
        if not (path / "version.json").exists():
            known = [v.version for v in self.versions()] if self.dir.exists() else []
            raise RegistryError(f"model group {group_name(self.game)!r} has no version {version}; versions: {known or 'none'}")
        info = _record(path / "version.json", json.loads)
        history = _record(path / "status.jsonl",
                          lambda text: tuple(json.loads(line) for line in text.splitlines() if line.strip()) or None)
        return ModelVersion(version, history[-1]["status"], info["created"], info["metrics"], info["lineage"], history,
                            path / "model")

    def champion(self) -> ModelVersion | None:
        """The latest Approved version, or None."""
        approved = [v for v in self.versions() if v.status == APPROVED]
        return approved[-1] if approved else None

    def load(self, version: int) -> LTVModel:
        from ltv.models import LTVModel

        return LTVModel.load(Path(self.get(version).path))

    def artifact_json(self, version: int, name: str) -> dict[str, Any]:
        """A JSON document of the version's artifact (manifest.json, feature_stats.json), without
        loading the model."""
        path = Path(self.get(version).path) / name
        if not path.exists():
            raise ArtifactError(f"version {version} of {group_name(self.game)!r} has no {name} in {path.parent}")
        return json.loads(path.read_text())

    # -- writing

    def register(self, artifact: Path, *, metrics: dict[str, Any], status: str, reason: str) -> ModelVersion:
        """Add a new version holding a copy of `artifact` (verified first: a corrupt or
        unloadable artifact is refused before anything is written)."""
        manifest = check_artifact(Path(artifact), self.game, status)
        self.dir.mkdir(parents=True, exist_ok=True)
        staging = scratch(self.root, "staging", "version")
        try:
            with storage_errors(self.root):
                shutil.copytree(artifact, staging / "model")
                (staging / "version.json").write_text(json.dumps(
                    {"group": group_name(self.game), "created": _now(), "metrics": metrics, "lineage": lineage(manifest)},
                    indent=2, sort_keys=True, default=str))
                (staging / "status.jsonl").write_text(json.dumps(status_entry(status, reason)) + "\n")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        while True:  # claim the next number: renaming onto an existing version fails, so none is overwritten
            # every numbered folder counts, complete or not: a leftover without version.json is skipped, not retried
            number = max([int(p.name) for p in self.dir.iterdir() if p.name.isdigit()] or [0]) + 1
            try:
                os.rename(staging, self.dir / str(number))
                return self.get(number)
            except OSError as e:
                if not (self.dir / str(number)).exists():  # not lost to another writer: this claim failed
                    shutil.rmtree(staging, ignore_errors=True)
                    raise storage_error(e, self.dir) or RegistryError(
                        f"cannot claim version {number} in {self.dir}: {e.strerror or e}. Nothing was registered "
                        "(the staged copy was removed); fix the registry folder, then rerun the same command") from e

    def set_status(self, version: int, status: str, reason: str) -> ModelVersion:
        check_status(status)
        current = self.get(version)
        if current.status == status:
            return current
        with storage_errors(self.dir), open(self.dir / str(version) / "status.jsonl", "a") as f:
            f.write(json.dumps(status_entry(status, reason)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return self.get(version)

    def approve(self, version: int, reason: str = "approved by hand") -> ModelVersion:
        from ltv.models import verify

        verify(Path(self.get(version).path))
        return self.set_status(version, APPROVED, reason)

    def reject(self, version: int, reason: str = "rejected by hand") -> ModelVersion:
        return self.set_status(version, REJECTED, reason)

    def rollback(self, reason: str = "rollback") -> tuple[ModelVersion, ModelVersion]:
        """Reject the champion and re-approve the previous champion; returns (old, new)."""
        champion, previous = rollback_plan(self.versions(), group_name(self.game))
        from ltv.models import verify

        verify(Path(previous.path))
        new = self.set_status(previous.version, APPROVED, f"{reason}: re-approved to replace version {champion.version}")
        old = self.set_status(champion.version, REJECTED, f"{reason}: rolled back to version {previous.version}")
        return old, new
