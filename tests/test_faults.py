"""Injected faults: a full disk and a read-only directory under the local lake, registry writes
racing each other, and a SageMaker API error while the pipeline's evaluate step resolves the
champion. (Kills of `ltv run` and between a partition's data and its marker: tests/test_crash.py;
an Athena failure in the middle of the Glue chain: tests/test_glue_jobs.py.)"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_config
from handmade import day
from handmade import write_lake
from ltv_cli import ltv
from test_catalogue import DAYS, INSTALLS, clean_events, unchanged
from test_container import REGION, aws  # noqa: F401 - moto with fake credentials, a fixture
from ltv.errors import RegistryError
from ltv.promotion import APPROVED, PENDING, REJECTED
from ltv.registry import LocalRegistry

LTV = str(Path(sys.executable).with_name("ltv"))


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """Raw logs of 8 days, player_day of the first 7 (built by the CLI)."""
    root = tmp_path / "lake"
    write_lake(root, make_config(), clean_events(), INSTALLS)
    code, output = ltv("features", "daily", "--game", "galaxy-raiders", "--lake", str(root), "--date", DAYS[0],
                       "--to", DAYS[-2])
    assert code == 0, output
    return root


def test_a_full_disk_is_a_storage_error_that_publishes_nothing(lake: Path) -> None:
    """The real `ltv` with a file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a
    full disk): a named error, no trace, nothing half-written; the same command recovers."""
    argv = [LTV, "features", "daily", "--game", "galaxy-raiders", "--lake", str(lake), "--date", DAYS[-1],
            "--no-check"]
    env = {**os.environ, "LTV_CONFIG_DIR": str(ROOT / "config" / "games")}

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))

    with unchanged(lake):
        full = subprocess.run(argv, capture_output=True, text=True, env=env, preexec_fn=small_disk, timeout=300)
    assert full.returncode == 2, full.stderr
    message = " ".join(full.stderr.split())
    assert "error: cannot write" in message and "File too large" in message and "Traceback" not in message
    assert "Nothing was published" in message and "rerun the same command" in message
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (lake / "galaxy-raiders" / "player_day" / f"dt={DAYS[-1]}" / "_SUCCESS").exists()


def test_a_directory_without_write_permission_is_a_storage_error(scoring_lake, monkeypatch) -> None:
    """`ltv predict` into a predictions folder it may not create (PermissionError injected: the
    tests may run as root, whom file modes do not stop)."""
    config, lake, engine, registry = scoring_lake
    real_mkdir = os.mkdir

    def denied(path, *args, **kwargs):
        if "predictions" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    from ltv.scoring import score

    score(config, lake, engine, registry, day("2025-04-14"))  # features built: only the new run is refused
    game = lake.root.parent / "galaxy-raiders.yaml"
    game.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    monkeypatch.setattr(os, "mkdir", denied)
    with unchanged(lake.root):
        code, output = ltv("predict", "--game", str(game), "--lake", str(lake.root), "--date", "2025-04-14")
    text = " ".join(output.split())
    assert code == 2 and "cannot write" in text and "Permission denied" in text and "fix the directory's permissions" in text


# ----------------------------------------------------------------------------------------------
# registry writes racing each other


def racing(n: int, name_prefix: str):
    """An `os.rename` that holds `n` threads at the rename of a `name_prefix...` entry until all
    `n` are there, so they claim the same version number at the same moment."""
    barrier, real, local = threading.Barrier(n, timeout=60), os.rename, threading.local()

    def rename(src, dst, *args, **kwargs):
        if Path(src).name.startswith(name_prefix) and not getattr(local, "waited", False):
            local.waited = True
            barrier.wait()
        try:
            return real(src, dst, *args, **kwargs)
        except OSError:
            rename.lost.append(Path(dst).name)
            raise

    rename.lost = []
    return rename


def test_concurrent_local_registrations_each_get_their_own_version(tmp_path, tiny_model, monkeypatch) -> None:
    registry = LocalRegistry(tmp_path / "registry", "galaxy-raiders")
    race = racing(4, ".staging-version")
    monkeypatch.setattr(os, "rename", race)
    results, errors = [], []

    def register(i: int) -> None:
        try:
            results.append(registry.register(tiny_model[0].path, metrics={"i": i}, status=(APPROVED, REJECTED)[i % 2],
                                             reason=f"writer {i}"))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and sorted(v.version for v in results) == [1, 2, 3, 4]
    assert race.lost.count("1") == 3, f"all four claimed version 1 at once; lost claims: {race.lost}"
    from ltv.models import verify

    for v in registry.versions():
        verify(Path(v.path))
        writer = v.metrics["i"]
        assert v.history[0]["reason"] == f"writer {writer}" and v.status == (APPROVED, REJECTED)[writer % 2]
    assert sorted(p.name for p in registry.root.iterdir()) == ["versions"], "no staging left"


def test_racing_status_changes_both_land_and_the_last_one_wins(tmp_path, tiny_model) -> None:
    registry = LocalRegistry(tmp_path / "registry", "galaxy-raiders")
    registry.register(tiny_model[0].path, metrics={}, status=PENDING, reason="manual approval")
    barrier = threading.Barrier(2, timeout=60)
    get = registry.get

    def synchronised_get(version: int):
        current = get(version)
        if threading.current_thread() is not threading.main_thread():
            barrier.wait()  # both read the same current status before either writes
        return current

    registry.get = synchronised_get
    threads = [threading.Thread(target=registry.set_status, args=(1, status, f"by {status}"))
               for status in (APPROVED, REJECTED)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    registry.get = get
    version = registry.get(1)
    assert [h["status"] for h in version.history][0] == PENDING and len(version.history) == 3
    assert {h["status"] for h in version.history[1:]} == {APPROVED, REJECTED}
    assert version.status == version.history[-1]["status"], "the status is the last change, whichever it was"


# ----------------------------------------------------------------------------------------------
# SageMaker


@pytest.fixture
def account(aws, monkeypatch):
    """moto (test_container's `aws`) with the game's model package group; boto3's default session."""
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session(region_name=REGION)
    boto3.client("sagemaker").create_model_package_group(ModelPackageGroupName="ltv-galaxy-raiders")
    return boto3.DEFAULT_SESSION


def throttled(session, operation: str) -> list[int]:
    """Every `operation` call of the session's clients answered by SageMaker's throttling error
    (HTTP 400, ThrottlingException): botocore's retries see a real error response."""
    from botocore.awsrequest import AWSResponse

    calls: list[int] = []

    class Raw:
        def stream(self, **_):
            yield b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'

    def answer(request, **_):
        calls.append(1)
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, Raw())

    session.events.register_first(f"before-send.sagemaker.{operation}", answer)
    return calls


def test_a_sagemaker_error_resolving_the_champion_fails_the_evaluate_step_cleanly(account, tiny_game, tiny_model,
                                                                                 tmp_path, monkeypatch) -> None:
    """The pipeline's evaluate step cannot list the group's packages (throttled, retried by
    botocore, still throttled): exit code 2, the reason in SageMaker's message file, and no
    evaluation.json, so the condition step has nothing to promote."""
    from pipelines import evaluate
    from test_container import evaluate_args, processing_dirs

    config, lake, _ = tiny_game
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    calls = throttled(account, "ListModelPackages")
    dirs = processing_dirs(tmp_path / "opt-ml", config, lake.datasets / tiny_model[2]["name"], tiny_model[0].path)
    monkeypatch.setenv("LTV_SM_ROOT", str(tmp_path / "opt-ml"))
    with unchanged(tmp_path / "opt-ml" / "processing", "evaluation/*"):
        assert evaluate.main(evaluate_args(config, dirs, "sagemaker")) == 2
    message = (tmp_path / "opt-ml" / "output" / "message").read_text()
    assert message.startswith("RegistryError: SageMaker registry 'ltv-galaxy-raiders': could not list the model "
                              "packages: ThrottlingException: Rate exceeded"), message
    assert len(calls) == 2, "botocore retried the throttled call before giving up"
    assert not (dirs["evaluation"] / evaluate.EVALUATION).exists()


def test_racing_sagemaker_status_changes_leave_one_consistent_winner(account, tmp_path) -> None:
    """Two writers read a package, then both change its status: SageMaker keeps the later write;
    the package's status and its last history entry agree, and the history log keeps both changes."""
    from ltv.sagemaker_registry import SageMakerRegistry

    s3 = account.client("s3")
    s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="artifacts", Key="m/model.tar.gz", Body=b"archive")
    first, second = (SageMakerRegistry("galaxy-raiders", region=REGION, image_uri="image", cache_dir=tmp_path / str(i))
                     for i in range(2))
    first.sm.create_model_package(ModelPackageGroupName="ltv-galaxy-raiders", ModelApprovalStatus=PENDING,
                                  InferenceSpecification=first.inference_specification("s3://artifacts/m/model.tar.gz"))
    stale = first._describe(1)
    second.set_status(1, REJECTED, "rejected by the second writer")
    first._describe = lambda version: stale  # the first writer read before the second wrote
    first.set_status(1, APPROVED, "approved by the first writer")
    version = second.get(1)
    entries = json.loads(s3.get_object(Bucket="artifacts", Key="m/history-1.json")["Body"].read())["entries"]
    assert version.status == APPROVED and version.history[-1]["status"] == APPROVED
    assert [e["reason"] for e in entries] == ["rejected by the second writer", "approved by the first writer"]
    with pytest.raises(RegistryError, match="no champion to roll back|first approved version"):
        second.rollback()
