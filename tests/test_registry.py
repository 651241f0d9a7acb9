"""The local model registry: versions, champion, rollback, immutability, refusing bad artifacts."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ltv.errors import ArtifactError, RegistryError
from ltv.promotion import APPROVED, PENDING, REJECTED
from ltv.registry import LocalRegistry

pytestmark = pytest.mark.slow


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "registry", "galaxy-raiders")


def test_versions_are_numbered_and_the_champion_is_the_latest_approved(registry, tiny_model) -> None:
    model = tiny_model[0]
    v1 = registry.register(model.path, metrics={"normalized_gini": 0.8}, status=APPROVED, reason="first")
    v2 = registry.register(model.path, metrics={"normalized_gini": 0.7}, status=REJECTED, reason="worse")
    v3 = registry.register(model.path, metrics={"normalized_gini": 0.9}, status=PENDING, reason="manual")
    assert [v.version for v in registry.versions()] == [1, 2, 3]
    assert registry.champion().version == v1.version
    registry.approve(3, "looked at the report")
    assert registry.champion().version == 3
    assert [h["status"] for h in registry.get(3).history] == [PENDING, APPROVED]
    assert registry.get(3).history[-1]["reason"] == "looked at the report"
    assert v2.lineage["dataset"]["name"] == tiny_model[2]["name"] and v3.lineage["config_hash"]
    assert registry.load(3).predict(tiny_model[1]["test"].head(5)).shape[0] == 5


def test_rollback_reapproves_the_previous_champion_and_deletes_nothing(registry, tiny_model) -> None:
    path = tiny_model[0].path
    registry.register(path, metrics={}, status=APPROVED, reason="v1")
    registry.register(path, metrics={}, status=REJECTED, reason="v2")
    registry.register(path, metrics={}, status=APPROVED, reason="v3")
    old, new = registry.rollback("bad scores after the release")
    assert (old.version, old.status, new.version) == (3, REJECTED, 1)
    assert registry.champion().version == 1
    assert len(registry.versions()) == 3 and all(v.path.exists() for v in registry.versions())
    with pytest.raises(RegistryError, match="first approved version"):
        registry.rollback()


def test_a_corrupt_or_foreign_artifact_is_refused_before_anything_is_written(registry, tiny_model, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model[0].path, broken)
    (broken / "payer" / "predictor.pkl").write_bytes(b"not a predictor")
    with pytest.raises(ArtifactError, match="corrupt"):
        registry.register(broken, metrics={}, status=APPROVED, reason="x")
    assert registry.versions() == [] and registry.champion() is None
    other = LocalRegistry(tmp_path / "r2", "dragon-merge")
    with pytest.raises(ArtifactError, match="not 'dragon-merge'"):
        other.register(tiny_model[0].path, metrics={}, status=APPROVED, reason="x")


def test_versions_are_immutable(registry, tiny_model) -> None:
    v1 = registry.register(tiny_model[0].path, metrics={"a": 1}, status=APPROVED, reason="x")
    before = (v1.path.parent / "version.json").read_text()
    # a second writer that already claimed number 2 cannot be overwritten: the next number is used
    (registry.dir / "2").mkdir()
    (registry.dir / "2" / "version.json").write_text(json.dumps({"created": "x", "metrics": {}, "lineage": {}}))
    (registry.dir / "2" / "status.jsonl").write_text(json.dumps({"status": REJECTED}) + "\n")
    v = registry.register(tiny_model[0].path, metrics={"a": 2}, status=APPROVED, reason="y")
    assert v.version == 3 and (registry.dir / "2" / "version.json").read_text().startswith('{"created": "x"')
    assert (v1.path.parent / "version.json").read_text() == before
    with pytest.raises(RegistryError, match="no version 9"):
        registry.get(9)


def test_registry_cli(tiny_model, tmp_path: Path) -> None:
    from ltv.cli import app

    reg = LocalRegistry(tmp_path / "galaxy-raiders" / "registry", "galaxy-raiders")
    reg.register(tiny_model[0].path, metrics={"normalized_gini": 0.8}, status=APPROVED, reason="a")
    reg.register(tiny_model[0].path, metrics={"normalized_gini": 0.9}, status=PENDING, reason="b")
    runner = CliRunner()
    base = ["--game", "galaxy-raiders", "--lake", str(tmp_path)]
    assert runner.invoke(app, ["registry", "approve", *base, "2", "--reason", "ok"]).exit_code == 0
    listing = runner.invoke(app, ["registry", "list", *base])
    assert "2 ★" in listing.output and "Approved" in listing.output
    assert runner.invoke(app, ["registry", "rollback", *base]).exit_code == 0
    shown = json.loads(runner.invoke(app, ["registry", "show", *base, "2"]).output)
    assert shown["status"] == REJECTED and "rolled back to version 1" in shown["history"][-1]["reason"]
