"""The registry's rules on their own (fast: no model is trained, no AWS is mocked): which version a
rollback rejects and which it re-approves, the champion, statuses and their history, lineage.
The local registry's bookkeeping runs on a stand-in artifact (its verification is tested with
real models in tests/test_registry.py). This is the file `make mutation` runs against ltv/registry.py."""
from __future__ import annotations

import json

import pytest

from ltv import registry as reg
from ltv.errors import RegistryError
from ltv.promotion import APPROVED, PENDING, REJECTED

GAME = "galaxy-raiders"
MANIFEST = {"game": GAME, "dataset": {"name": "v1"}, "config_hash": "c0ffee", "code_version": "1.2.3",
            "created": "2025-04-01T00:00:00+00:00", "size_bytes": 1234}


def version(number: int, *statuses: str) -> reg.ModelVersion:
    history = tuple({"status": s, "at": f"t{i}", "by": "me", "reason": s} for i, s in enumerate(statuses))
    return reg.ModelVersion(number, statuses[-1], "t", {}, {}, history, f"/v/{number}")


def test_rollback_returns_to_the_previous_champion_not_the_oldest() -> None:
    """v1 and v2 were champions in turn, v3 was rejected, v4 is the champion: a rollback rejects v4
    and re-approves v2, the champion before it (v1, the oldest approved, is not it)."""
    history = [version(1, APPROVED), version(2, APPROVED), version(3, REJECTED), version(4, PENDING, APPROVED)]
    champion, previous = reg.rollback_plan(history, "ltv-g")
    assert (champion.version, previous.version) == (4, 2)
    # v2 had been rolled back itself (Approved then Rejected): it was still a champion once
    history[1] = version(2, APPROVED, REJECTED)
    assert reg.rollback_plan(history, "ltv-g")[1].version == 2
    # never approved (rejected, or pending then rejected) does not count
    assert reg.rollback_plan([version(1, APPROVED), version(2, PENDING, REJECTED), version(3, APPROVED)],
                             "ltv-g")[1].version == 1
    # the champion is the latest approved, even when later versions exist
    champion, previous = reg.rollback_plan([version(1, APPROVED), version(2, APPROVED), version(3, PENDING)], "ltv-g")
    assert (champion.version, previous.version) == (2, 1)


def test_a_rollback_needs_a_champion_and_one_before_it() -> None:
    with pytest.raises(RegistryError, match="'ltv-g' has no champion to roll back"):
        reg.rollback_plan([version(1, PENDING), version(2, APPROVED, REJECTED)], "ltv-g")
    with pytest.raises(RegistryError, match="version 2 is the first approved version"):
        reg.rollback_plan([version(1, REJECTED), version(2, APPROVED), version(3, PENDING)], "ltv-g")
    with pytest.raises(RegistryError, match="no champion"):
        reg.rollback_plan([], "ltv-g")


def test_statuses_lineage_and_history_lines(monkeypatch) -> None:
    for status in (APPROVED, PENDING, REJECTED):
        reg.check_status(status)
    with pytest.raises(RegistryError, match="unknown status 'approved'"):
        reg.check_status("approved")
    assert reg.group_name(GAME) == "ltv-galaxy-raiders"
    assert reg.lineage(MANIFEST) == {"dataset": {"name": "v1"}, "config_hash": "c0ffee", "code_version": "1.2.3",
                                     "trained": "2025-04-01T00:00:00+00:00", "artifact_bytes": 1234}
    monkeypatch.setenv("LTV_ACTOR", "release-bot")
    line = reg.status_entry(APPROVED, "why")
    assert {k: line[k] for k in ("status", "by", "reason")} == {"status": APPROVED, "by": "release-bot", "reason": "why"}
    assert line["at"].endswith("+00:00") and "T" in line["at"]
    assert version(1, PENDING, APPROVED, REJECTED).ever_approved and not version(1, PENDING, REJECTED).ever_approved


@pytest.fixture
def local(tmp_path, monkeypatch):
    """A local registry whose artifact checks accept a stand-in folder."""
    import ltv.models

    def check(artifact, game, status):
        reg.check_status(status)
        return MANIFEST

    monkeypatch.setattr(reg, "check_artifact", check)
    monkeypatch.setattr(ltv.models, "verify", lambda path: MANIFEST)
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "manifest.json").write_text(json.dumps(MANIFEST))
    return reg.LocalRegistry(tmp_path / "registry", GAME), artifact


def test_local_registry_numbers_versions_and_rolls_back_to_the_previous_champion(local) -> None:
    registry, artifact = local
    assert registry.versions() == [] and registry.champion() is None
    for status in (APPROVED, APPROVED, REJECTED, PENDING):
        registry.register(artifact, metrics={"normalized_gini": 0.5}, status=status, reason=status)
    assert [v.version for v in registry.versions()] == [1, 2, 3, 4]
    assert registry.champion().version == 2
    assert registry.approve(4, "looked").status == APPROVED and registry.champion().version == 4
    assert registry.get(1).lineage == reg.lineage(MANIFEST) and registry.get(1).metrics == {"normalized_gini": 0.5}
    assert registry.artifact_json(1, "manifest.json") == MANIFEST
    old, new = registry.rollback("bad scores")
    assert (old.version, old.status, new.version, new.status) == (4, REJECTED, 2, APPROVED)
    assert registry.champion().version == 2
    assert [h["status"] for h in registry.get(4).history] == [PENDING, APPROVED, REJECTED]
    assert registry.get(4).history[-1]["reason"] == "bad scores: rolled back to version 2"
    assert [h["status"] for h in registry.get(2).history] == [APPROVED], "still Approved: nothing to re-record"
    old, new = registry.rollback()
    assert (old.version, new.version) == (2, 1) and registry.champion().version == 1
    assert registry.get(2).history[-1]["reason"] == "rollback: rolled back to version 1"
    with pytest.raises(RegistryError, match="first approved version"):
        registry.rollback()
    assert registry.reject(1).status == REJECTED and registry.champion() is None


def test_local_registry_status_changes_are_appended_and_unknown_versions_named(local) -> None:
    registry, artifact = local
    registry.register(artifact, metrics={}, status=PENDING, reason="manual")
    same = registry.set_status(1, PENDING, "again")
    assert len(same.history) == 1, "setting the status it has changes nothing"
    registry.set_status(1, REJECTED, "no")
    assert [h["reason"] for h in registry.get(1).history] == ["manual", "no"]
    with pytest.raises(RegistryError, match=r"no version 9; versions: \[1\]"):
        registry.get(9)
    with pytest.raises(RegistryError, match="unknown status"):
        registry.set_status(1, "Maybe", "x")
    with pytest.raises(RegistryError, match="no version 1; versions: none"):
        reg.LocalRegistry(registry.root.parent, "dragon-merge").get(1)
    with pytest.raises(Exception, match="has no feature_stats.json"):
        registry.artifact_json(1, "feature_stats.json")


def test_an_unreadable_version_record_names_the_file_and_what_to_do(local) -> None:
    registry, artifact = local
    registry.register(artifact, metrics={}, status=PENDING, reason="manual")
    registry.register(artifact, metrics={}, status=PENDING, reason="manual")
    (registry.dir / "1" / "status.jsonl").write_text("\n")
    with pytest.raises(RegistryError, match=r"1/status.jsonl is unreadable \(ValueError: no entry\); restore it from "
                                            r"a backup of the registry \(a version's files are written once"):
        registry.get(1)
    (registry.dir / "2" / "version.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"2/version.json is unreadable \(JSONDecodeError: "):
        registry.get(2)
