"""The model registry, one behavioural suite over both backends: the local directory registry and
the SageMaker Model Registry (against moto). Then what only one backend has: the local registry's
claim of version numbers, SageMaker's pagination, metadata history and changes made in Studio."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from ltv.errors import ArtifactError, RegistryError
from ltv.promotion import APPROVED, PENDING, REJECTED
from ltv.registry import LocalRegistry, ModelVersion, group_name
from ltv_cli import ltv

pytestmark = pytest.mark.slow

GAME, REGION, BUCKET = "galaxy-raiders", "eu-west-1", "ltv-galaxy-raiders-artifacts-111111111111"
IMAGE = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/cdk-hnb659fds-container-assets-111111111111-eu-west-1:abc"


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    """moto with fake credentials, the game's artifacts bucket and its model package group."""
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(var, value)
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        for game in (GAME, "dragon-merge"):
            boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=group_name(game))
        yield


def sagemaker_registry(tmp_path: Path, game: str = GAME, page_size: int = 2):
    from ltv.sagemaker_registry import SageMakerRegistry

    return SageMakerRegistry(game, region=REGION, page_size=page_size, artifact_uri=f"s3://{BUCKET}/pipelines/imported",
                             image_uri=IMAGE, cache_dir=tmp_path / f"cache-{game}")


@pytest.fixture(params=["local", "sagemaker"])
def backend(request, tmp_path) -> str:
    if request.param == "sagemaker":
        request.getfixturevalue("aws")
    return request.param


def make_registry(backend: str, tmp_path: Path, game: str = GAME):
    return LocalRegistry(tmp_path / "registry", game) if backend == "local" else sagemaker_registry(tmp_path, game)


@pytest.fixture
def registry(backend, tmp_path):
    return make_registry(backend, tmp_path)


def artifact_present(version: ModelVersion) -> bool:
    if isinstance(version.path, Path):
        return version.path.exists()
    import boto3

    bucket, key = version.path.removeprefix("s3://").split("/", 1)
    return boto3.client("s3", region_name=REGION).head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


# ----------------------------------------------------------------------------------------------
# the behavioural suite: both backends


def test_versions_are_numbered_and_the_champion_is_the_latest_approved(registry, tiny_model) -> None:
    model = tiny_model[0]
    v1 = registry.register(model.path, metrics={"normalized_gini": 0.8}, status=APPROVED, reason="first")
    v2 = registry.register(model.path, metrics={"normalized_gini": 0.7}, status=REJECTED, reason="worse")
    v3 = registry.register(model.path, metrics={"normalized_gini": 0.9}, status=PENDING, reason="manual")
    assert [v.version for v in registry.versions()] == [1, 2, 3]
    assert [v.status for v in registry.versions()] == [APPROVED, REJECTED, PENDING]
    assert registry.champion().version == v1.version
    assert registry.get(2).metrics == {"normalized_gini": 0.7}
    registry.approve(3, "looked at the report")
    assert registry.champion().version == 3
    assert [h["status"] for h in registry.get(3).history] == [PENDING, APPROVED]
    assert registry.get(3).history[-1]["reason"] == "looked at the report"
    assert v2.lineage["dataset"]["name"] == tiny_model[2]["name"]
    assert v3.lineage["config_hash"] == model.manifest["config_hash"]
    assert registry.load(3).predict(tiny_model[1]["test"].head(5)).shape[0] == 5


def test_rollback_reapproves_the_previous_champion_and_deletes_nothing(registry, tiny_model) -> None:
    path = tiny_model[0].path
    registry.register(path, metrics={}, status=APPROVED, reason="v1")
    registry.register(path, metrics={}, status=REJECTED, reason="v2")
    registry.register(path, metrics={}, status=APPROVED, reason="v3")
    old, new = registry.rollback("bad scores after the release")
    assert (old.version, old.status, new.version) == (3, REJECTED, 1)
    assert registry.champion().version == 1
    assert "rolled back to version 1" in registry.get(3).history[-1]["reason"]
    assert len(registry.versions()) == 3 and all(artifact_present(v) for v in registry.versions())
    with pytest.raises(RegistryError, match="first approved version"):
        registry.rollback()


def test_rollback_reapproves_the_previous_champion_even_when_it_is_not_the_oldest(registry, tiny_model) -> None:
    """v1 then v2 were champions, v3 was rejected, v4 is the champion: the rollback goes back to
    v2 (the champion before v4), not to v1 (the oldest ever approved); a second one to v1."""
    path = tiny_model[0].path
    for status in (APPROVED, APPROVED, REJECTED, PENDING):
        registry.register(path, metrics={}, status=status, reason=status)
    registry.reject(1, "superseded by version 2")
    registry.approve(4, "looked at the report")
    old, new = registry.rollback("bad scores after the release")
    assert (old.version, old.status, new.version, new.status) == (4, REJECTED, 2, APPROVED)
    assert registry.champion().version == 2
    assert registry.get(1).status == REJECTED and registry.get(3).status == REJECTED
    old, new = registry.rollback("v2 too")
    assert (old.version, new.version) == (2, 1) and registry.champion().version == 1
    assert [h["status"] for h in registry.get(1).history] == [APPROVED, REJECTED, APPROVED]


def test_rollback_without_a_champion_is_refused(registry, tiny_model) -> None:
    registry.register(tiny_model[0].path, metrics={}, status=PENDING, reason="manual approval pending")
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback()
    with pytest.raises(RegistryError, match="unknown status"):
        registry.set_status(1, "Maybe", "no such status")
    with pytest.raises(RegistryError, match="no version 7"):
        registry.get(7)


def test_a_corrupt_or_foreign_artifact_is_refused_before_anything_is_written(backend, registry, tiny_model,
                                                                             tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model[0].path, broken)
    (broken / "payer" / "predictor.pkl").write_bytes(b"not a predictor")
    with pytest.raises(ArtifactError, match="corrupt"):
        registry.register(broken, metrics={}, status=APPROVED, reason="x")
    assert registry.versions() == [] and registry.champion() is None
    other = make_registry(backend, tmp_path / "other", "dragon-merge")
    with pytest.raises(ArtifactError, match="not 'dragon-merge'"):
        other.register(tiny_model[0].path, metrics={}, status=APPROVED, reason="x")
    if backend == "sagemaker":
        import boto3

        assert "Contents" not in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)


def test_registry_cli_approves_and_rolls_back_with_either_backend(backend, registry, tiny_model, tmp_path) -> None:
    registry.register(tiny_model[0].path, metrics={"normalized_gini": 0.8}, status=APPROVED, reason="a")
    registry.register(tiny_model[0].path, metrics={"normalized_gini": 0.9}, status=PENDING, reason="b")
    base = ["--game", GAME, "--lake", str(tmp_path), "--registry", backend]
    if backend == "local":  # the CLI finds the local registry under the lake
        shutil.move(str(tmp_path / "registry"), str(tmp_path / GAME / "registry"))
    assert ltv("registry", "approve", *base, "2", "--reason", "ok")[0] == 0
    code, listing = ltv("registry", "list", *base)
    assert code == 0 and "2 ★" in listing and "Approved" in listing and "0.900" in listing
    assert ltv("registry", "rollback", *base)[0] == 0
    shown = json.loads(ltv("registry", "show", *base, "2")[1])
    assert shown["status"] == REJECTED and "rolled back to version 1" in shown["history"][-1]["reason"]
    assert [h["status"] for h in shown["history"]] == [PENDING, APPROVED, REJECTED]


# ----------------------------------------------------------------------------------------------
# local only


def test_local_versions_are_immutable(tmp_path, tiny_model) -> None:
    registry = LocalRegistry(tmp_path / "registry", GAME)
    v1 = registry.register(tiny_model[0].path, metrics={"a": 1}, status=APPROVED, reason="x")
    before = (v1.path.parent / "version.json").read_text()
    # a second writer that already claimed number 2 cannot be overwritten: the next number is used
    (registry.dir / "2").mkdir()
    (registry.dir / "2" / "version.json").write_text(json.dumps({"created": "x", "metrics": {}, "lineage": {}}))
    (registry.dir / "2" / "status.jsonl").write_text(json.dumps({"status": REJECTED}) + "\n")
    v = registry.register(tiny_model[0].path, metrics={"a": 2}, status=APPROVED, reason="y")
    assert v.version == 3 and (registry.dir / "2" / "version.json").read_text().startswith('{"created": "x"')
    assert (v1.path.parent / "version.json").read_text() == before


# ----------------------------------------------------------------------------------------------
# SageMaker only


def pipeline_metadata(status: str) -> dict[str, str]:
    return {"ltv:dataset": "rolling-2025-06-02", "ltv:registered-status": status}


def calls(registry) -> Counter:
    """Counts of the SageMaker API calls the registry makes from now on."""
    counter: Counter = Counter()
    registry.sm.meta.events.register("before-call.sagemaker.*", lambda model, **_: counter.update([model.name]))
    return counter


def package(registry, status: str) -> int:
    """A model package made directly through the API, as the pipeline's register step makes them."""
    registry.s3.put_object(Bucket=BUCKET, Key="pipelines/x/model.tar.gz", Body=b"a training job's archive")
    arn = registry.sm.create_model_package(
        ModelPackageGroupName=registry.group, ModelApprovalStatus=status, ModelPackageDescription="by the pipeline",
        InferenceSpecification=registry.inference_specification(f"s3://{BUCKET}/pipelines/x/model.tar.gz"),
        CustomerMetadataProperties=pipeline_metadata(status))["ModelPackageArn"]
    return int(arn.rsplit("/", 1)[1])


def test_sagemaker_champion_is_the_latest_approved_across_pages(aws, tmp_path) -> None:
    registry = sagemaker_registry(tmp_path, page_size=2)
    statuses = [APPROVED, REJECTED, APPROVED, PENDING, APPROVED, REJECTED, PENDING]
    for status in statuses:
        package(registry, status)
    counted = calls(registry)
    assert registry.champion().version == 5
    assert counted["ListModelPackages"] == 2, "three Approved packages, two per page"
    counted.clear()
    assert [(v.version, v.status) for v in registry.versions()] == list(enumerate(statuses, start=1))
    assert counted["ListModelPackages"] == 4, "seven packages, two per page"
    registry.reject(5, "drifted")
    assert registry.champion().version == 3
    assert sagemaker_registry(tmp_path, page_size=100).champion().version == 3
    assert counted["DeleteModelPackage"] == 0 and len(registry.versions()) == 7


def test_sagemaker_registry_leaves_no_directory_behind_unless_it_loads_a_model(aws, tmp_path, monkeypatch) -> None:
    """A CLI call or a Lambda start that only lists, approves or resolves the champion writes
    nothing to disk (it used to leave an empty temporary directory each time)."""
    import tempfile

    from ltv.sagemaker_registry import SageMakerRegistry

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    registry = SageMakerRegistry(GAME, region=REGION, artifact_uri=f"s3://{BUCKET}/pipelines/imported", image_uri=IMAGE)
    package(registry, APPROVED)
    assert registry.champion().version == 1 and [v.status for v in registry.versions()] == [APPROVED]
    registry.reject(1, "drifted")
    assert list(tmp_path.iterdir()) == []
    assert registry.cache.parent == tmp_path and registry.cache.name.startswith(f"ltv-{GAME}-models-")


def test_the_sagemaker_registrys_own_cache_is_removed_when_the_process_exits(tmp_path) -> None:
    """A CLI call that loads a model unpacks it in a temporary directory: gone after the call
    (every `ltv ... --registry sagemaker` used to leave one in /tmp)."""
    code = ("import tempfile, sys; tempfile.tempdir = sys.argv[1]\n"
            "from ltv.sagemaker_registry import SageMakerRegistry\n"
            "registry = SageMakerRegistry('g', sagemaker=object(), s3=object())\n"
            "(registry.cache / '1').mkdir(); (registry.cache / '1' / 'manifest.json').write_text('{}')\n"
            "print(registry.cache)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    made = Path(done.stdout.strip())
    assert made.parent == tmp_path and made.name.startswith("ltv-g-models-")
    assert list(tmp_path.iterdir()) == []


def test_sagemaker_status_reason_lineage_and_history_live_on_the_package(aws, tmp_path, tiny_model) -> None:
    registry = sagemaker_registry(tmp_path)
    version = registry.register(tiny_model[0].path, metrics={"minmax": 0.7}, status=PENDING,
                                reason="minmax 0.7120 beats champion 0.7050 by +0.0070")
    registry.approve(version.version, "reviewed the report")
    described = registry.sm.describe_model_package(ModelPackageName=version.lineage["package"])
    assert described["ModelApprovalStatus"] == APPROVED
    assert described["ApprovalDescription"] == "reviewed the report"
    metadata = described["CustomerMetadataProperties"]
    manifest = tiny_model[0].manifest
    assert metadata["ltv:dataset"] == manifest["dataset"]["name"]
    assert metadata["ltv:config-hash"] == manifest["config_hash"]
    assert metadata["ltv:code-version"] == manifest["code_version"]
    assert metadata["ltv:seen-until"] == manifest["trained_on"]["seen_until"]
    assert metadata["ltv:registered-status"] == PENDING and metadata["ltv:changes"] == "1"
    log = registry.s3.get_object(Bucket=BUCKET, Key=version.path.removeprefix(f"s3://{BUCKET}/").rsplit("/", 1)[0]
                                 + f"/history-{version.version}.json")
    assert [e["from"] for e in json.loads(log["Body"].read())["entries"]] == [PENDING]
    assert described["InferenceSpecification"]["Containers"][0]["Image"] == IMAGE
    assert registry.get(version.version).metrics == {"minmax": 0.7}
    assert registry.get(version.version).history[0]["reason"].startswith("minmax 0.7120 beats")


def test_sagemaker_changes_made_in_studio_show_in_the_history_and_count_for_rollback(aws, tmp_path) -> None:
    registry = sagemaker_registry(tmp_path)
    first, second = package(registry, PENDING), package(registry, APPROVED)
    # the first was approved in Studio, then superseded and rejected there: no ltv entry for either change
    registry.sm.update_model_package(ModelPackageArn=registry._package_arn(first), ModelApprovalStatus=APPROVED,
                                     ApprovalDescription="approved in Studio",
                                     CustomerMetadataProperties=pipeline_metadata(PENDING))  # Studio keeps it
    history = registry.get(first).history
    assert [h["status"] for h in history] == [PENDING, APPROVED] and history[-1]["reason"] == "approved in Studio"
    registry.reject(first, "superseded")
    assert registry.get(first).ever_approved
    old, new = registry.rollback("second is broken")
    assert (old.version, new.version, new.status) == (second, first, APPROVED)


# a promotion reason as ltv.promotion writes it, and a hand-written one with what metadata cannot hold
REASON = ("minmax 0.7120 beats champion 0.7000 by +0.0120 (required 0.001); guards within tolerance, "
          'see {"report": "report.html"}\nchecked by Zoë 😀')


def test_sagemaker_history_keeps_every_change_whole_within_the_api_limits(aws, tmp_path, tiny_model) -> None:
    """Every value sent is held to SageMaker's constraints by the suite's hook (conftest): reasons
    with ( ) ; , " { } and line breaks, and 60 changes, more than the 50 metadata entries a package has."""
    registry = sagemaker_registry(tmp_path)
    number = registry.register(tiny_model[0].path, metrics={"minmax": 0.7}, status=PENDING, reason=REASON).version
    for i in range(60):
        registry.set_status(number, (APPROVED, REJECTED)[i % 2], f"change {i}: {REASON}" + "x" * 1100 * (i == 0))
    described = registry.sm.describe_model_package(ModelPackageName=registry._package_arn(number))
    assert len(described["CustomerMetadataProperties"]) <= 50
    assert described["CustomerMetadataProperties"]["ltv:reason"].startswith(
        "minmax 0.7120 beats champion 0.7000 by +0.0120 required 0.001 guards within tolerance")
    assert described["ApprovalDescription"].startswith("change 59: minmax") and "\n" not in described["ApprovalDescription"]
    version = registry.get(number)
    assert version.status == REJECTED  # the last of 60 alternating changes
    assert [h["status"] for h in version.history] == [PENDING] + [(APPROVED, REJECTED)[i % 2] for i in range(60)]
    assert [h["reason"] for h in version.history[1:]] == [f"change {i}: {REASON}" + "x" * 1100 * (i == 0)
                                                         for i in range(60)]


def test_sagemaker_concurrent_changes_keep_each_others_history(aws, tmp_path, monkeypatch) -> None:
    """Two changes of one version at the same moment: the second append sees the first's write
    (a conditional put fails), reads again and appends after it; no entry is lost."""
    registry, other = sagemaker_registry(tmp_path), sagemaker_registry(tmp_path / "other")
    number = package(registry, PENDING)
    put = registry.s3.put_object
    raced = []

    def racing_put(**request):
        if not raced and request["Key"].endswith(f"history-{number}.json"):
            raced.append(other.set_status(number, REJECTED, "rejected by a colleague meanwhile"))
        return put(**request)

    monkeypatch.setattr(registry.s3, "put_object", racing_put)
    registry.set_status(number, APPROVED, "approved")
    log = json.loads(registry.s3.get_object(Bucket=BUCKET, Key=f"pipelines/x/history-{number}.json")["Body"].read())
    assert raced and [e["reason"] for e in log["entries"]] == ["rejected by a colleague meanwhile", "approved"]
    assert log["package"] == registry._package_arn(number)
    assert {"approved", "rejected by a colleague meanwhile"} <= {h["reason"] for h in other.get(number).history}


@pytest.mark.parametrize("text", [REASON, "", "   ", "(;)", "é" * 300, "😀" * 200, "a\x00b\u2028c", "x" * 255 + "😀"])
def test_metadata_values_and_descriptions_are_what_sagemaker_accepts(text) -> None:
    """Checked against the patterns and limits of SageMaker's own API model (botocore's)."""
    import botocore.session

    from aws_constraints import violations
    from ltv.sagemaker_registry import description, metadata_value

    request = botocore.session.get_session().get_service_model("sagemaker").operation_model("UpdateModelPackage")
    params = {"ModelPackageArn": "arn:aws:sagemaker:eu-west-1:111111111111:model-package/ltv-g/1",
              "ApprovalDescription": description(text), "CustomerMetadataProperties": {"ltv:reason": metadata_value(text)}}
    assert list(violations(request.input_shape, params, "UpdateModelPackage")) == []
    assert not list(violations(request.service_model.operation_model("CreateModelPackage").input_shape,
                               {"ModelPackageDescription": description(text)}, "CreateModelPackage"))
    assert metadata_value("gain +0.01 (required 0.001); ok") == "gain +0.01 required 0.001 ok"


def test_sagemaker_registry_needs_the_group_and_says_how_to_get_it(aws, tmp_path) -> None:
    from ltv.sagemaker_registry import SageMakerRegistry

    with pytest.raises(RegistryError, match="^model package group 'ltv-space-golf' not found in eu-west-1: deploy the game's "
                                            r"ML stack \(make deploy GAME=space-golf\) or check the credentials' account "
                                            "and region$"):
        SageMakerRegistry("space-golf", region=REGION).versions()
    elsewhere = SageMakerRegistry(GAME, region="us-east-2")
    assert elsewhere.sm.meta.region_name == elsewhere.s3.meta.region_name == "us-east-2"
    with pytest.raises(RegistryError, match="^registering into SageMaker outside the pipeline needs artifact_uri "):
        SageMakerRegistry(GAME, region=REGION).register(Path("x"), metrics={}, status=APPROVED, reason="x")


def test_sagemaker_backend_imports_neither_autogluon_nor_pandas() -> None:
    """The scoring Lambda resolves the champion with this module and cannot carry AutoGluon."""
    code = ("import sys, ltv.sagemaker_registry; heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('autogluon', 'pandas', 'numpy', 'lightgbm', 'sklearn') or m.startswith('ltv.models')]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert out.stdout.strip() == "[]"


def test_sagemaker_without_credentials_is_a_registry_error_not_a_traceback(tmp_path) -> None:
    from botocore.exceptions import NoCredentialsError

    from ltv.sagemaker_registry import SageMakerRegistry

    class NoCredentials:
        meta = type("Meta", (), {"region_name": REGION})()

        def describe_model_package_group(self, **_):
            raise NoCredentialsError()

    registry = SageMakerRegistry(GAME, region=REGION, sagemaker=NoCredentials(), s3=object())
    with pytest.raises(RegistryError, match="Unable to locate credentials.*AWS_PROFILE"):
        registry.champion()


# ----------------------------------------------------------------------------------------------
# SageMaker, fast (no trained model: the artifact's check is stubbed, the archive is a folder of files)


def stub_artifact(tmp_path: Path, monkeypatch, game: str = GAME) -> Path:
    """An artifact folder (a manifest and a nested file) that `check_artifact` accepts as is."""
    import ltv.sagemaker_registry as smr

    artifact = tmp_path / "artifact"
    (artifact / "payer").mkdir(parents=True)
    manifest = {"game": game, "dataset": {"name": "v1-2025-03-03-12w", "fingerprint": "f1"}, "config_hash": "c0ffee",
                "code_version": "1.2.3", "created": "2025-06-01T10:00:00+00:00",
                "trained_on": {"seen_until": "2025-05-26"}}
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    (artifact / "payer" / "model.bin").write_bytes(b"\x00weights")
    checked = []
    monkeypatch.setattr(smr, "check_artifact", lambda path, g, status: checked.append((path, g, status)) or manifest)
    return artifact


def test_sagemaker_register_stores_the_archive_metrics_lineage_and_serving_spec(aws, tmp_path, monkeypatch) -> None:
    import tarfile

    from ltv.registry import CONTENT_TYPES
    from ltv.sagemaker_registry import METADATA, SageMakerRegistry, description, registration

    artifact = stub_artifact(tmp_path, monkeypatch)
    registry = SageMakerRegistry(GAME, region=REGION, artifact_uri=f"s3://{BUCKET}/pipelines/imported/", image_uri=IMAGE,
                                 transform_instance_types=("ml.c5.xlarge", "ml.m5.xlarge"), cache_dir=tmp_path / "c")
    version = registry.register(artifact, metrics={"minmax": 0.7, "at": dt.date(2025, 6, 1)},  # a date: stored by its text
                                status=PENDING, reason=REASON)
    assert version.version == 1 and version.status == PENDING and registry.versions() == [version]
    prefix = version.path.removeprefix(f"s3://{BUCKET}/")
    assert prefix.startswith("pipelines/imported/") and prefix.endswith("/model.tar.gz") and "//" not in prefix
    folder = prefix.rsplit("/", 1)[0]
    archive = tmp_path / "got.tar.gz"
    registry.s3.download_file(BUCKET, prefix, str(archive))
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "payer", "payer/model.bin"]
        assert tar.extractfile("payer/model.bin").read() == b"\x00weights"
    stats = registry.s3.get_object(Bucket=BUCKET, Key=f"{folder}/evaluation.json")
    assert stats["ContentType"] == "application/json"
    assert json.loads(stats["Body"].read()) == {"model": {"minmax": 0.7, "at": "2025-06-01"}}
    assert version.metrics == {"minmax": 0.7, "at": "2025-06-01"}
    described = registry.sm.describe_model_package(ModelPackageName=version.lineage["package"])
    assert described["ModelPackageDescription"] == description(REASON)
    assert described["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{folder}/evaluation.json"}
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert described["CustomerMetadataProperties"] == {
        METADATA[k]: v for k, v in (registration(manifest, REASON) | {"status": PENDING}).items()}
    assert described["CustomerMetadataProperties"]["ltv:seen-until"] == "2025-05-26"
    assert described["CustomerMetadataProperties"]["ltv:dataset-fingerprint"] == "f1"
    assert described["CustomerMetadataProperties"]["ltv:trained"] == "2025-06-01T10:00:00+00:00"
    assert registry.inference_specification("s3://b/k") == {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/k"}], "SupportedContentTypes": list(CONTENT_TYPES),
        "SupportedResponseMIMETypes": list(CONTENT_TYPES), "SupportedTransformInstanceTypes": ["ml.c5.xlarge", "ml.m5.xlarge"]}
    assert version.lineage | {"package": None} == {
        "dataset": {"name": "v1-2025-03-03-12w", "fingerprint": "f1"}, "config_hash": "c0ffee", "code_version": "1.2.3",
        "trained": "2025-06-01T10:00:00+00:00", "seen_until": "2025-05-26", "image": IMAGE, "image_digest": None,
        "package": None}
    assert version.lineage["package"].endswith(f":model-package/{group_name(GAME)}/1")
    assert version.history == ({"status": PENDING, "at": version.created, "by": described["CreatedBy"]["UserProfileName"],
                                "reason": described["CustomerMetadataProperties"]["ltv:reason"]},)
    assert version.created == described["CreationTime"].isoformat(timespec="seconds")
    assert registration({"config_hash": "c", "code_version": "v", "created": "t"}, "r") == {
        "dataset": "-", "dataset_fingerprint": "-", "config_hash": "c", "code_version": "v", "trained": "t",
        "seen_until": "-", "reason": "r"}


def test_sagemaker_load_unpacks_once_and_artifact_json_streams_one_document(aws, tmp_path, monkeypatch) -> None:
    from ltv.errors import ArtifactError
    from ltv.models import LTVModel

    artifact = stub_artifact(tmp_path, monkeypatch)
    registry = sagemaker_registry(tmp_path)
    number = registry.register(artifact, metrics={}, status=APPROVED, reason="first").version
    monkeypatch.setattr(LTVModel, "load", classmethod(lambda cls, path: ("loaded", path)))
    counted = Counter()
    registry.s3.meta.events.register("before-call.s3.*", lambda model, **_: counted.update([model.name]))
    loaded = registry.load(number)
    counted.clear()
    assert loaded == ("loaded", tmp_path / f"cache-{GAME}" / str(number))
    assert (loaded[1] / "payer" / "model.bin").read_bytes() == b"\x00weights"
    assert sorted(p.name for p in (tmp_path / f"cache-{GAME}").iterdir()) == [str(number)], "no archive or staging left"
    assert registry.load(number) == loaded and not counted, "the second load reads the unpacked copy"
    assert registry.artifact_json(number, "manifest.json")["config_hash"] == "c0ffee"
    counted.clear()
    assert registry.artifact_json(number, "manifest.json")["game"] == GAME and not counted, "read once"
    with pytest.raises(ArtifactError, match=f"version {number}'s archive s3://{BUCKET}/.*model.tar.gz has no stats.json"):
        registry.artifact_json(number, "stats.json")
    with pytest.raises(ArtifactError, match="has no payer$"):
        registry.artifact_json(number, "payer")  # a folder, not a document
    key = registry.get(number).path.removeprefix(f"s3://{BUCKET}/")
    registry.s3.put_object(Bucket=BUCKET, Key=key, Body=b"not a tar archive")
    with pytest.raises(ArtifactError, match=f"version {number}'s archive .* is not readable"):
        registry.artifact_json(number, "feature_stats.json")
    fresh = sagemaker_registry(tmp_path / "fresh")
    with pytest.raises(ArtifactError, match="is not a readable model archive"):
        fresh.load(number)
    assert not any((tmp_path / "fresh" / f"cache-{GAME}").iterdir()), "a failed unpack leaves nothing behind"


def test_sagemaker_approve_needs_the_archive_and_rollback_says_why_on_both_versions(aws, tmp_path) -> None:
    from ltv.errors import ArtifactError

    registry = sagemaker_registry(tmp_path)
    with pytest.raises(RegistryError, match=f"^'{group_name(GAME)}' has no champion to roll back$"):
        registry.rollback()
    first, second = package(registry, APPROVED), package(registry, APPROVED)
    registry.reject(first, "superseded")
    old, new = registry.rollback("drift")
    assert (old.version, old.status, new.version, new.status) == (second, REJECTED, first, APPROVED)
    assert old.history[-1]["reason"] == f"drift: rolled back to version {first}"
    assert old.history[-1]["status"] == REJECTED
    assert registry.get(first).history[-1]["reason"] == f"drift: re-approved to replace version {second}"
    assert registry.reject(first).history[-1]["reason"] == "rejected by hand"
    assert registry.approve(first).history[-1]["reason"] == "approved by hand"
    described = registry.sm.describe_model_package(ModelPackageName=registry._package_arn(first))
    assert described["CustomerMetadataProperties"]["ltv:changes"] == "4"
    unchanged = registry.set_status(first, APPROVED, "again")
    assert unchanged.history == registry.get(first).history and unchanged.history[-1]["reason"] == "approved by hand"
    assert registry.sm.describe_model_package(ModelPackageName=registry._package_arn(first))[
        "CustomerMetadataProperties"]["ltv:changes"] == "4", "no change, no entry"
    with pytest.raises(RegistryError, match="unknown status 'Live'"):
        registry.set_status(first, "Live", "x")
    registry.s3.delete_object(Bucket=BUCKET, Key="pipelines/x/model.tar.gz")
    with pytest.raises(ArtifactError, match=rf"version {second}'s model archive s3://{BUCKET}/pipelines/x/model.tar.gz "
                                            r"is not readable \(404\); it cannot become champion"):
        registry.approve(second, "try")
    assert registry.get(second).status == REJECTED
    with pytest.raises(RegistryError, match=f"model group '{group_name(GAME)}' has no version 9; versions: \\[1, 2\\]"):
        registry.get(9)
    with pytest.raises(RegistryError, match="expected an s3:// URI, got 'https://x/y'"):
        from ltv.sagemaker_registry import _split_s3
        _split_s3("https://x/y")


def test_sagemaker_history_gives_up_after_its_attempts_and_failures_name_the_call(aws, tmp_path, monkeypatch) -> None:
    from botocore.exceptions import ClientError

    from ltv import runs
    from ltv.sagemaker_registry import HISTORY_ATTEMPTS

    registry = sagemaker_registry(tmp_path)
    number = package(registry, PENDING)
    attempts = []

    def always_conflict(self, key, body, *, expect=None):
        attempts.append(key)
        raise runs.Conflict("changed meanwhile")

    monkeypatch.setattr(runs.S3Store, "put", always_conflict)
    with pytest.raises(RegistryError, match=rf"version {number}'s status changed, but its history "
                                            rf"s3://{BUCKET}/pipelines/x/history-{number}.json kept changing under "
                                            rf"{HISTORY_ATTEMPTS} attempts"):
        registry.set_status(number, APPROVED, "approved")
    assert len(attempts) == HISTORY_ATTEMPTS == 8
    history = registry.get(number).history
    assert [h["status"] for h in history] == [PENDING, APPROVED], "the change shows, as one made outside ltv"
    assert history[-1]["reason"] == "approved"
    monkeypatch.undo()

    def refused(*_, **__):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "ListModelPackages")

    monkeypatch.setattr(registry.sm, "get_paginator", lambda name: SimpleNamespace(paginate=refused))
    with pytest.raises(RegistryError, match=f"^SageMaker registry '{group_name(GAME)}': could not list the model "
                                            "packages: AccessDenied: not allowed$"):
        registry.versions()
    monkeypatch.undo()
    # each failing call says what could not be done
    artifact = stub_artifact(tmp_path, monkeypatch)
    for client, method, what in ((registry.s3, "upload_file", "upload the model archive"),
                                 (registry.sm, "create_model_package", "create the model package"),
                                 (registry.sm, "update_model_package", "update the model package"),
                                 (registry.s3, "get_object", "read the version's history")):
        with monkeypatch.context() as patch:
            patch.setattr(client, method, refused)
            with pytest.raises(RegistryError, match=f": could not {what}: .*AccessDenied"):
                if method in ("update_model_package", "get_object"):
                    registry.set_status(number, REJECTED, "no")
                else:
                    registry.register(artifact, metrics={}, status=PENDING, reason="r")


def test_sagemaker_history_of_a_package_marks_changes_made_outside_ltv() -> None:
    from ltv.sagemaker_registry import _history, _iso, _who

    created = dt.datetime(2025, 6, 1, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
    desc = {"ModelApprovalStatus": REJECTED, "CreationTime": created, "ModelPackageDescription": "by the pipeline",
            "CreatedBy": {"UserProfileName": "ana"}, "LastModifiedTime": "2025-06-03", "ApprovalDescription": "bad",
            "LastModifiedBy": {"UserProfileArn": "arn:aws:sagemaker:x:user-profile/d/bo"},
            "CustomerMetadataProperties": {}}
    changes = [{"status": APPROVED, "from": PENDING, "at": "t1", "by": "ci", "reason": "good"},
               {"status": PENDING, "from": REJECTED, "at": "t2", "by": "ci", "reason": "review again"}]
    assert list(_history(desc, changes)) == [
        {"status": PENDING, "at": "2025-06-01T10:00:00+00:00", "by": "ana", "reason": "by the pipeline"},
        {"status": APPROVED, "at": "t1", "by": "ci", "reason": "good"},
        {"status": REJECTED, "at": None, "by": "outside ltv", "reason": "changed outside ltv (SageMaker Studio or the API)"},
        {"status": PENDING, "at": "t2", "by": "ci", "reason": "review again"},
        {"status": REJECTED, "at": "2025-06-03", "by": "arn:aws:sagemaker:x:user-profile/d/bo", "reason": "bad"}]
    registered = {**desc, "ModelApprovalStatus": APPROVED,
                  "CustomerMetadataProperties": {"ltv:registered-status": APPROVED, "ltv:reason": "promoted"}}
    assert _history(registered, []) == ({"status": APPROVED, "at": "2025-06-01T10:00:00+00:00", "by": "ana",
                                         "reason": "promoted"},)
    no_metadata = {k: v for k, v in desc.items() if k not in ("CreatedBy", "ModelPackageDescription")}
    assert _history(no_metadata, [])[0] == {"status": REJECTED, "at": "2025-06-01T10:00:00+00:00", "by": "SageMaker",
                                            "reason": ""}
    assert _history(no_metadata, changes[:1])[0]["status"] == PENDING, "registered as the first change's 'from'"
    assert _who({}) == "SageMaker (pipeline or API)" and _who(None) == "SageMaker" and _who("x") == "x"
    assert _who({"UserProfileName": "ana", "UserProfileArn": "arn"}) == "ana"
    assert _iso("2025-06-01") == "2025-06-01"


def test_sagemaker_metrics_are_empty_when_the_statistics_are_missing_or_unreadable(aws, tmp_path) -> None:
    registry = sagemaker_registry(tmp_path)
    number = package(registry, PENDING)
    desc = registry._describe(number)
    assert registry._metrics(desc) == {}
    quality = lambda uri: {**desc, "ModelMetrics": {"ModelQuality": {"Statistics": {"S3Uri": uri}}}}  # noqa: E731
    assert registry._metrics(quality(f"s3://{BUCKET}/absent.json")) == {}
    for body, expected in ((b"{not json", {}), (b'{"other": 1}', {}), (b'{"model": {"gini": 0.5}}', {"gini": 0.5})):
        registry.s3.put_object(Bucket=BUCKET, Key="m.json", Body=body)
        assert registry._metrics(quality(f"s3://{BUCKET}/m.json")) == expected, body


def test_metadata_values_and_descriptions_keep_what_they_can_and_cut_where_aws_counts() -> None:
    from ltv.sagemaker_registry import _fit, _units, description, metadata_value

    assert metadata_value("a_b.c:d/e=f+g-h@i 9") == "a_b.c:d/e=f+g-h@i 9"
    assert metadata_value("ok\n\t(x);  y,z") == "ok x y z"
    assert metadata_value("") == metadata_value(" ;; ") == "-"
    assert metadata_value("é" * 300) == "é" * 253 + "..."
    assert metadata_value("😀 ok") == "ok", "a symbol is not a letter"
    assert metadata_value("𝐀" * 200) == "𝐀" * 126 + "..." and _units("𝐀") == 2  # a letter of two UTF-16 units
    assert metadata_value("x" * 256) == "x" * 256
    assert description("line one\r\nline two\u2028three\x85four") == "line one line two three four"
    assert description("a\x00b\tc") == "a b c"
    assert description("Zoë 😀 {x}; (y)") == "Zoë 😀 {x}; (y)"
    assert description("x" * 1100) == "x" * 1021 + "..."
    assert description("x" * 1024) == "x" * 1024
    assert _fit("abcdef", 5) == "ab..." and _fit("abcde", 5) == "abcde" and _fit("ab😀cd", 5) == "ab..."
