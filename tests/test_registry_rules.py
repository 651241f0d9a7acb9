"""The registry's rules on their own (fast: no model is trained, no AWS is mocked): which version a
rollback rejects and which it re-approves, the champion, statuses and their history, lineage.
The local registry runs on genuine artifacts that need no training: a sealed folder (manifest
and checksums, as `train` writes them, so `verify` is the real one) whose stage folders a stand-in
for AutoGluon's loader reads (real models: tests/test_registry.py). This is the file `make
mutation` runs against ltv/registry.py."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ltv import registry as reg
from ltv.errors import ArtifactError, RegistryError, StorageError
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


def sealed(folder: Path, game: str = GAME) -> Path:
    """A genuine artifact without training: one stand-in predictor per stage and a manifest that
    lists every file's checksum (the model code's own sealing)."""
    from ltv.models import ltv_model

    for stage in ltv_model.STAGES:
        (folder / stage).mkdir(parents=True)
        (folder / stage / "predictor.txt").write_text(f"{stage} of {game}")
    ltv_model._seal(folder, {"format": ltv_model.FORMAT, **MANIFEST, "game": game})
    return folder


@pytest.fixture
def local(tmp_path, monkeypatch):
    """A local registry of GAME and a genuine artifact of it. AutoGluon's loader is replaced by one
    that reads the stand-in predictors (and fails, as it does, on a folder without one)."""
    from ltv.models import automl

    monkeypatch.setattr(automl, "load", lambda path: (Path(path) / "predictor.txt").read_text())
    return reg.LocalRegistry(tmp_path / "registry", GAME), sealed(tmp_path / "artifact")


def corrupt(path: Path) -> None:
    (Path(path) / "payer" / "predictor.txt").write_text("changed")


def test_local_registry_numbers_versions_and_rolls_back_to_the_previous_champion(local) -> None:
    registry, artifact = local
    assert registry.versions() == [] and registry.champion() is None
    for status in (APPROVED, APPROVED, REJECTED, PENDING):
        registry.register(artifact, metrics={"normalized_gini": 0.5}, status=status, reason=status)
    assert [v.version for v in registry.versions()] == [1, 2, 3, 4]
    assert registry.champion().version == 2
    assert registry.approve(4, "looked").status == APPROVED and registry.champion().version == 4
    assert registry.get(1).lineage == reg.lineage(json.loads((artifact / "manifest.json").read_text()))
    assert registry.get(1).metrics == {"normalized_gini": 0.5}
    assert registry.artifact_json(1, "manifest.json") == json.loads((artifact / "manifest.json").read_text())
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


def test_versions_are_laid_out_as_documented_and_name_their_group(local) -> None:
    """`<root>/ltv-<game>/versions/<n>/`: the artifact's copy (still verifiable: relocatable), the
    record of its group, creation, metrics and lineage, and one status line per change."""
    from ltv.models import verify

    registry, artifact = local
    v = registry.register(artifact, metrics={"normalized_gini": 0.5}, status=PENDING, reason="first")
    folder = registry.root.parent / "ltv-galaxy-raiders" / "versions" / "1"
    assert Path(v.path) == folder / "model" and verify(folder / "model") == verify(artifact)
    record = json.loads((folder / "version.json").read_text())
    assert record["group"] == "ltv-galaxy-raiders" and record["metrics"] == {"normalized_gini": 0.5}
    assert record["lineage"] == reg.lineage(verify(artifact)) and record["created"] == v.created
    assert v.created.endswith("+00:00") and "T" in v.created, "created: a UTC time"
    registry.set_status(1, APPROVED, "second")
    lines = (folder / "status.jsonl").read_text().splitlines()
    assert [json.loads(line)["reason"] for line in lines] == ["first", "second"]
    assert registry.load(1).manifest["game"] == GAME


def test_metrics_that_json_cannot_hold_as_they_are_are_registered_as_text(local) -> None:
    """Evaluation metrics may be numpy scalars or dates: registering them does not fail."""
    registry, artifact = local
    v = registry.register(artifact, metrics={"rows": np.int64(3), "cutoff": np.datetime64("2025-03-03")},
                          status=PENDING, reason="x")
    assert v.metrics == {"rows": "3", "cutoff": "2025-03-03"}


def test_an_artifact_that_is_corrupt_unloadable_foreign_or_of_an_unknown_status_writes_nothing(local,
                                                                                               tmp_path) -> None:
    registry, artifact = local
    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    corrupt(broken)
    with pytest.raises(ArtifactError, match=r"is corrupt: missing \[\], changed \['payer/predictor.txt'\]"):
        registry.register(broken, metrics={}, status=APPROVED, reason="x")
    unloadable = sealed(tmp_path / "unloadable")
    (unloadable / "churn" / "predictor.txt").rename(unloadable / "churn" / "other.txt")
    from ltv.models import ltv_model

    manifest = json.loads((unloadable / "manifest.json").read_text())
    ltv_model._seal(unloadable, manifest)  # intact, but the loader finds no predictor
    with pytest.raises(ArtifactError, match="cannot be loaded: FileNotFoundError"):
        registry.register(unloadable, metrics={}, status=APPROVED, reason="x")
    with pytest.raises(ArtifactError, match=r"is a model of game 'dragon-merge', not 'galaxy-raiders'"):
        registry.register(sealed(tmp_path / "foreign", "dragon-merge"), metrics={}, status=APPROVED, reason="x")
    with pytest.raises(RegistryError, match="unknown status 'approved'"):
        registry.register(artifact, metrics={}, status="approved", reason="x")
    assert not registry.root.exists() and registry.versions() == []


def test_approval_and_rollback_verify_the_artifact_they_make_champion(local) -> None:
    """A registered copy that changed since is never made champion, by hand or by a rollback."""
    registry, artifact = local
    for status in (APPROVED, APPROVED, PENDING):
        registry.register(artifact, metrics={}, status=status, reason="trained")
    corrupt(registry.get(3).path)
    with pytest.raises(ArtifactError, match="corrupt"):
        registry.approve(3)
    corrupt(registry.get(1).path)
    with pytest.raises(ArtifactError, match="corrupt"):
        registry.rollback()
    assert [v.status for v in registry.versions()] == [APPROVED, APPROVED, PENDING], "nothing changed"
    assert registry.champion().version == 2


def test_default_reasons_and_a_reapproval_are_recorded_in_the_history(local) -> None:
    registry, artifact = local
    for _ in range(3):
        registry.register(artifact, metrics={}, status=PENDING, reason="trained")
    assert registry.approve(1).history[-1]["reason"] == "approved by hand"
    assert registry.reject(3).history[-1]["reason"] == "rejected by hand"
    registry.approve(2, "better")
    registry.rollback("bad scores")   # 2 -> 1: version 1 is still Approved
    registry.approve(2, "fixed")      # 2 is champion again, 1 is still Approved
    registry.reject(1, "retired")
    old, new = registry.rollback("worse")  # re-approves 1, which was Rejected: a new history line
    assert (old.version, new.version) == (2, 1)
    assert new.history[-1] | {"at": None, "by": None} == {"status": APPROVED, "at": None, "by": None,
                                                           "reason": "worse: re-approved to replace version 2"}


def test_errors_name_the_model_group_and_what_is_wrong(local) -> None:
    registry, artifact = local
    with pytest.raises(RegistryError, match="^'ltv-galaxy-raiders' has no champion to roll back$"):
        registry.rollback()
    with pytest.raises(RegistryError, match=r"^model group 'ltv-galaxy-raiders' has no version 1; versions: none$"):
        registry.get(1)
    registry.register(artifact, metrics={}, status=APPROVED, reason="x")
    with pytest.raises(RegistryError, match="^version 1 is the first approved version; there is no earlier champion "
                                            "to roll back to$"):
        registry.rollback()
    with pytest.raises(ArtifactError, match=r"^version 1 of 'ltv-galaxy-raiders' has no feature_stats.json in "):
        registry.artifact_json(1, "feature_stats.json")


# ----------------------------------------------------------------------------------------------
# a registration that fails part-way: nothing visible, nothing left


def leftovers(registry) -> list[str]:
    return sorted(p.name for p in registry.root.iterdir() if p.name != "versions")


def test_a_full_disk_while_copying_is_a_storage_error_that_leaves_nothing(local, monkeypatch) -> None:
    registry, artifact = local
    real = shutil.copytree

    def full_before_anything(src, dst, *args, **kwargs):  # the staging folder is never created
        raise OSError(errno.ENOSPC, "No space left on device")

    def full_half_way(src, dst, *args, **kwargs):  # the artifact copied, then the disk is full
        monkeypatch.setattr(shutil, "copytree", real)
        real(src, dst, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    for fault in (full_before_anything, full_half_way):
        monkeypatch.setattr(shutil, "copytree", fault)
        with pytest.raises(StorageError, match=f"^cannot write {registry.root}: No space left on device. Nothing was "
                                               "published"):
            registry.register(artifact, metrics={}, status=APPROVED, reason="x")
        assert registry.versions() == [] and leftovers(registry) == [], fault.__name__


def test_a_number_another_writer_claimed_first_is_skipped_and_a_failed_claim_leaves_nothing(local,
                                                                                            monkeypatch) -> None:
    """`register` claims the next number by renaming its staging folder onto it: if another writer
    took it in between, it claims the next one; if the rename fails otherwise, it raises and
    removes its staging folder. A leftover numbered folder (incomplete) is skipped, not reused."""
    registry, artifact = local
    real = os.rename

    def another_writer_first(src, dst):
        monkeypatch.setattr(os, "rename", real)
        Path(dst).mkdir()
        (Path(dst) / "version.json").write_text("{}")  # being written by the other writer
        raise OSError(errno.ENOTEMPTY, "Directory not empty")

    monkeypatch.setattr(os, "rename", another_writer_first)
    assert registry.register(artifact, metrics={}, status=APPROVED, reason="x").version == 2
    assert leftovers(registry) == []

    def fails_once(error):
        def rename(src, dst):
            monkeypatch.setattr(os, "rename", real)
            raise error
        return rename

    # a claim that fails otherwise: space or permission -> StorageError, anything else -> RegistryError
    for error, named, match in ((PermissionError(errno.EACCES, "Permission denied"), StorageError,
                                 "Permission denied.*rerun the same command"),
                                (OSError(errno.EXDEV, "Invalid cross-device link"), RegistryError,
                                 "cannot claim version 3 .*cross-device.*Nothing was registered")):
        monkeypatch.setattr(os, "rename", fails_once(error))
        with pytest.raises(named, match=match):
            registry.register(artifact, metrics={}, status=APPROVED, reason="x")
        assert leftovers(registry) == [] and sorted(p.name for p in registry.dir.iterdir()) == ["1", "2"]
    (registry.dir / "1" / "version.json").unlink()  # an incomplete version
    assert [v.version for v in registry.versions()] == [2]
    assert registry.register(artifact, metrics={}, status=APPROVED, reason="x").version == 3


def test_a_registration_killed_before_it_claims_a_number_leaves_only_what_sweep_clears(local) -> None:
    """Killed between writing its staging folder and claiming a number (a forked writer that
    dies there): no version appears, and `ltv.lake.sweep` (run at `ltv run`'s start) clears it."""
    from ltv.lake import sweep

    registry, artifact = local
    registry.register(artifact, metrics={}, status=APPROVED, reason="before")
    child = os.fork()
    if child == 0:  # pragma: no cover - the child dies inside register
        os.rename = lambda src, dst: os._exit(0)
        try:
            registry.register(artifact, metrics={}, status=APPROVED, reason="x")
        finally:
            os._exit(1)
    _, code = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(code) == 0, "the writer died at its claim"
    left = leftovers(registry)
    assert [v.version for v in registry.versions()] == [1] and len(left) == 1
    assert [p.name for p in sweep(registry.root.parent)] == left and leftovers(registry) == []


def test_a_status_change_on_a_full_disk_is_a_named_storage_error(local, monkeypatch) -> None:
    """Appending to status.jsonl is the registry's only in-place write: a full disk there says so
    by name (StorageError), not as a raw OSError."""
    registry, artifact = local
    version = registry.register(artifact, metrics={}, status=PENDING, reason="x").version

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError, match="No space left on device"):
        registry.set_status(version, REJECTED, "x")
