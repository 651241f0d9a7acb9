"""The game's image: its entrypoints run with SageMaker's path and HTTP contracts mapped to temp
dirs, on the tiny simulated game, and compared with the local flow; the Dockerfile checked
statically (no docker here): pinned base, locked dependencies only, a non-root user, the
entrypoints present."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from ltv.models import LTVModel
from ltv.promotion import APPROVED
from ltv.registry import LocalRegistry
from ltv.sagemaker_registry import METADATA, metadata_value, pack, unpack
from pipelines import container, evaluate, resolve, serve, train

pytestmark = pytest.mark.slow
REGION = "eu-west-1"
DAY = "2025-04-14"


def sagemaker_root(tmp: Path, config, dataset_dir: Path, hyperparameters: dict) -> Path:
    """/opt/ml as a training job sees it: the two channels and the job's configuration files."""
    channel = tmp / "input" / "data"
    shutil.copytree(dataset_dir, channel / "dataset")  # the contents of s3://<curated>/datasets/<version>/
    write_config(config, channel / "config")
    (tmp / "input" / "config").mkdir(parents=True)
    (tmp / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (tmp / "input" / "config" / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1",
                                                                              "hosts": ["algo-1"]}))
    return tmp


def write_config(config, directory: Path) -> Path:
    """The config as the stack ships it (stacks/etl_jobs._config_file): the validated model as YAML."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "0a1b2c.yaml"  # assets land under their hash
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True))
    return path


@pytest.fixture(scope="module")
def trained(tiny_game, tiny_model, tmp_path_factory):
    """The `train` entrypoint run on the tiny game's first dataset version, as SageMaker runs it."""
    config, lake, _ = tiny_game
    manifest = tiny_model[2]
    root = sagemaker_root(tmp_path_factory.mktemp("opt-ml"), config, lake.datasets / manifest["name"],
                          {"game": config.game.id, "budget": "config", "code_version": "0.1.0+image"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LTV_SM_ROOT", str(root))
        mp.setenv("LTV_CODE_VERSION", os.environ.get("LTV_CODE_VERSION", ""))  # restored afterwards
        out = io.StringIO()
        mp.setattr(sys, "stdout", out)
        code = train.main([])
    from ltv.version import code_version

    code_version.cache_clear()
    return root, code, out.getvalue()


def test_train_writes_an_artifact_that_predicts_like_ltv_train(trained, tiny_model) -> None:
    root, code, stdout = trained
    assert code == 0 and not (root / "output" / "failure").exists()
    artifact = LTVModel.load(root / "model")  # checksums verified: what SageMaker archives is the artifact
    reference, splits, manifest = tiny_model
    assert artifact.features == reference.features
    assert artifact.manifest["dataset"]["name"] == manifest["name"]
    assert artifact.manifest["trained_on"] == reference.manifest["trained_on"]
    assert artifact.manifest["code_version"] == "0.1.0+image"
    test = splits["test"]
    ours, theirs = artifact.predict(test), reference.predict(test)
    for column in ("ltv_expected", "p_payer", "p_churn", "p_day_1"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-3, atol=1e-4, err_msg=column)
    assert (ours["offer_day"] == theirs["offer_day"]).mean() > 0.99
    for name, value in reference.manifest["validation_metrics"].items():
        if value is not None:
            assert artifact.manifest["validation_metrics"][name] == pytest.approx(value, rel=1e-3, abs=1e-4), name


def test_train_prints_the_metrics_the_pipeline_reports_to_studio(trained) -> None:
    root, _, stdout = trained
    recorded = LTVModel.load(root / "model").manifest["validation_metrics"]
    for definition in train.metric_definitions():
        found = re.findall(definition["Regex"], stdout)
        name = definition["Name"].split(":", 1)[1]
        assert found and float(found[-1]) == pytest.approx(recorded[name], rel=1e-5), definition


def test_a_failed_training_job_says_why_in_the_failure_file(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "input" / "data" / "config").mkdir(parents=True)
    monkeypatch.setenv("LTV_SM_ROOT", str(tmp_path))
    assert container.main(["train"]) == 2
    assert "expected exactly one game config" in (tmp_path / "output" / "failure").read_text()
    assert container.main(["fit"]) == 2 and "usage: python -m pipelines" in capsys.readouterr().err


def test_a_long_failure_reason_is_cut_at_a_character_boundary(tmp_path) -> None:
    """SageMaker keeps the first KiB; a cut through a UTF-8 character would leave bytes AWS refuses."""
    from ltv.errors import LtvError

    def fail() -> str:
        raise LtvError("x" * 1001 + "ü" * 100)  # 'LtvError: ' + 1001 bytes: the KiB ends inside a 'ü'

    assert container.run(fail, tmp_path / "failure") == 2
    written = (tmp_path / "failure").read_bytes()
    assert len(written) == 1023 and written.decode("utf-8").endswith("x" + "ü" * 6)


def processing_dirs(tmp: Path, config, dataset_dir: Path, artifact: Path) -> dict[str, Path]:
    """The evaluate job's inputs as SageMaker downloads them: the training job's model.tar.gz,
    the dataset version, the config."""
    dirs = {name: tmp / "processing" / name for name in ("model", "dataset", "config", "evaluation")}
    dirs["model"].mkdir(parents=True)
    pack(artifact, dirs["model"] / evaluate.ARCHIVE)
    shutil.copytree(dataset_dir, dirs["dataset"])
    write_config(config, dirs["config"])
    return dirs


def evaluate_args(config, dirs: dict[str, Path], registry: str) -> list[str]:
    return ["--game", config.game.id, "--model", str(dirs["model"]), "--dataset", str(dirs["dataset"]),
            "--config", str(dirs["config"]), "--output", str(dirs["evaluation"]), "--registry", registry,
            "--region", REGION]


@pytest.fixture
def aws(monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(var, value)
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.mark.parametrize("decayed", [False, True], ids=["no-incident", "label-decay-awaits-this-retrain"])
def test_evaluate_takes_the_local_flows_decision_with_the_champion_from_sagemaker(
        aws, tiny_game, tiny_model, trained, tmp_path, monkeypatch, decayed) -> None:
    """The pipeline's decision is `ltv train`'s, including the focus `ltv run` gives a retrain that a
    label-decay incident asked for (read from the monitoring state the monitoring job publishes)."""
    import boto3

    from ltv.monitoring import RETRAIN_REQUESTED
    from ltv.promotion import Focus
    from ltv.sagemaker_registry import SageMakerRegistry
    from ltv.training import evaluate_against_champion

    config, lake, _ = tiny_game
    champion, splits, manifest = tiny_model
    bucket = "ltv-galaxy-raiders-artifacts-111111111111"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket,
                                                         CreateBucketConfiguration={"LocationConstraint": REGION})
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName="ltv-galaxy-raiders")
    SageMakerRegistry(config.game.id, region=REGION, artifact_uri=f"s3://{bucket}/pipelines/imported",
                      image_uri="image").register(champion.path, metrics={}, status=APPROVED, reason="champion")
    local = LocalRegistry(tmp_path / "registry", config.game.id)
    local.register(champion.path, metrics={}, status=APPROVED, reason="champion")
    challenger = LTVModel.load(trained[0] / "model")
    policy = next(p for p in config.monitoring.policies if p.signal == "label_decay")
    cohorts = sorted(splits["test"]["cutoff"].astype(str).unique())[-1:]  # the latest labelled cohort decayed
    metric = policy.metric or config.promotion.primary_metric
    focus = Focus(policy.name, metric, tuple(cohorts)) if decayed else None
    _, expected = evaluate_against_champion(challenger, splits, config, local, lake, focus=focus)

    dirs = processing_dirs(tmp_path / "opt-ml", config, lake.datasets / manifest["name"], trained[0] / "model")
    monkeypatch.setenv("LTV_SM_ROOT", str(tmp_path / "opt-ml"))
    state = {"incidents": {policy.name: {"state": RETRAIN_REQUESTED, "metric": metric, "cohorts": cohorts}}}
    boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key="monitoring/state.json",
                                                      Body=json.dumps(state).encode())
    where = ["--monitoring-state", f"s3://{bucket}/monitoring/{'state' if decayed else 'never-published'}.json"]
    assert evaluate.main(evaluate_args(config, dirs, "sagemaker") + where) == 0
    written = json.loads((dirs["evaluation"] / evaluate.EVALUATION).read_text())
    assert written["promotion"] == json.loads(json.dumps(expected.to_json()))
    if decayed:
        assert written["promotion"]["focus"]["metric"] == metric
        assert written["promotion"]["focus"]["cutoffs"] == cohorts
    else:
        assert written["promotion"]["focus"] is None
    assert written["promotion"]["promote"] in (0, 1) and written["champion"]["version"] == 1
    assert (dirs["evaluation"] / "report.html").stat().st_size > 10_000
    registration = written["registration"]
    assert registration["dataset"] == manifest["name"] and registration["reason"] == metadata_value(expected.reason)
    assert_registrable(written)


def assert_registrable(evaluation: dict) -> None:
    """The register step copies `registration` into CreateModelPackage's CustomerMetadataProperties
    (pipelines/retrain.py): each value must be one SageMaker accepts (its API model's constraints)."""
    import botocore.session

    from aws_constraints import violations

    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model(
        "CreateModelPackage").input_shape.members["CustomerMetadataProperties"]
    metadata = {METADATA[k]: v for k, v in evaluation["registration"].items()} | {METADATA["status"]: APPROVED}
    assert list(violations(shape, metadata, "CustomerMetadataProperties")) == []


def test_evaluate_without_a_champion_promotes_and_refuses_an_in_sample_test_period(
        tiny_game, tiny_model, trained, tmp_path, monkeypatch) -> None:
    config, lake, _ = tiny_game
    dataset = lake.datasets / tiny_model[2]["name"]
    monkeypatch.setenv("LTV_SM_ROOT", str(tmp_path / "opt-ml"))
    dirs = processing_dirs(tmp_path / "first", config, dataset, trained[0] / "model")
    assert evaluate.main(evaluate_args(config, dirs, str(tmp_path / "empty-registry"))) == 0
    written = json.loads((dirs["evaluation"] / evaluate.EVALUATION).read_text())
    assert written["promotion"]["promote"] == 1 and written["promotion"]["reason"].startswith("no champion yet")

    assert_registrable(written)

    # a model whose training reached past this dataset's test period (its lineage says so)
    seen = tmp_path / "seen-it"
    shutil.copytree(trained[0] / "model", seen)
    manifest = json.loads((seen / "manifest.json").read_text())
    manifest["trained_on"]["seen_until"] = "2099-01-01"
    (seen / "manifest.json").write_text(json.dumps(manifest))
    dirs = processing_dirs(tmp_path / "second", config, dataset, seen)
    assert evaluate.main(evaluate_args(config, dirs, str(tmp_path / "empty-registry"))) == 2
    message = (tmp_path / "opt-ml" / "output" / "message").read_text()
    assert message.startswith("InSampleError") and "in-sample" in message
    assert not (dirs["evaluation"] / evaluate.EVALUATION).exists()


def test_resolve_dataset_picks_the_newest_complete_rolling_version(aws, tiny_game, tiny_model, tmp_path,
                                                                   monkeypatch) -> None:
    import boto3

    config, lake, _ = tiny_game
    s3 = boto3.client("s3", region_name=REGION)
    bucket = "ltv-galaxy-raiders-curated-111111111111"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    source = lake.datasets / tiny_model[2]["name"]
    for version, complete in (("rolling-2025-03-03", True), ("rolling-2025-04-07", True),
                              ("rolling-2025-05-05", False), ("v1", True)):
        for f in source.rglob("*"):
            if f.is_file() and (complete or f.name != "_SUCCESS"):
                s3.upload_file(str(f), bucket, f"datasets/{version}/{f.relative_to(source)}")
    monkeypatch.setenv("LTV_SM_ROOT", str(tmp_path))
    out = tmp_path / "processing" / "dataset"
    assert resolve.main(["--curated-uri", f"s3://{bucket}", "--output", str(out)], s3=s3) == 0
    found = json.loads((out / resolve.PROPERTY_FILE).read_text())
    assert found["version"] == "rolling-2025-04-07" and found["uri"] == f"s3://{bucket}/datasets/rolling-2025-04-07/"
    assert found["rows"] == tiny_model[2]["rows"]
    assert resolve.main(["--curated-uri", f"s3://{bucket}", "--version", "v1", "--output", str(out)], s3=s3) == 0
    assert resolve.main(["--curated-uri", f"s3://{bucket}", "--version", "rolling-2025-05-05", "--output",
                         str(out)], s3=s3) == 2
    assert "complete versions: ['rolling-2025-03-03', 'rolling-2025-04-07', 'v1']" in (
        tmp_path / "output" / "message").read_text()


# ----------------------------------------------------------------------------------------------
# serve: SageMaker's HTTP contract, through gunicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """`python -m pipelines serve` (the image's ENTRYPOINT and command) with /opt/ml/model holding
    the unpacked archive, as in a transform job."""
    tmp_path = tmp_path_factory.mktemp("serve")
    root = tmp_path / "opt-ml"
    root.mkdir()
    unpack(pack(tiny_model[0].path, tmp_path / "model.tar.gz"), root / "model")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "pipelines", "serve"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT), "LTV_SM_ROOT": str(root),
                                                              "SAGEMAKER_BIND_TO_PORT": str(port), "LTV_MODEL_VERSION": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if call(url + "/ping")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("serve did not answer /ping: " + process.stdout.read1().decode())
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_scores_a_parquet_batch_like_ltv_predict(server, scoring_lake) -> None:
    import datetime as dt

    from ltv.scoring import read_predictions, score

    config, lake, engine, registry = scoring_lake
    score(config, lake, engine, registry, dt.date.fromisoformat(DAY))
    expected = read_predictions(lake, DAY).drop(columns=["dt", "run", "scored_at"])
    features = engine.query(f"SELECT * FROM features WHERE cutoff = '{DAY}'")
    buffer = io.BytesIO()
    features.to_parquet(buffer, index=False)
    status, body, content_type = call(server + "/invocations", buffer.getvalue(),
                                      {"Content-Type": serve.PARQUET, "Accept": serve.PARQUET})
    assert status == 200 and content_type == serve.PARQUET
    answer = pd.read_parquet(io.BytesIO(body))
    assert list(answer.columns) == [c for c, _ in __import__("ltv.scoring").scoring.prediction_columns(config)]
    pd.testing.assert_frame_equal(answer.drop(columns=["scored_at"]), expected, check_exact=False, rtol=1e-9)
    assert answer["driver_up_1"].notna().any(), "serve returns the explained players' drivers too"

    status, body, content_type = call(server + "/invocations", features.head(50).to_csv(index=False).encode(),
                                      {"Content-Type": serve.CSV})
    assert status == 200 and content_type == serve.CSV
    as_csv = pd.read_csv(io.BytesIO(body))
    np.testing.assert_allclose(as_csv["ltv_expected"], expected["ltv_expected"].head(50), rtol=1e-6)


def test_serve_refuses_what_it_cannot_score_with_a_reason(server) -> None:
    assert call(server + "/ping") == (200, b"ok\n", "text/plain")
    status, body, _ = call(server + "/invocations", b"{}", {"Content-Type": "application/json"})
    assert status == 415 and b"application/x-parquet" in body
    status, body, _ = call(server + "/invocations", b"player_id,cutoff\n1,2025-04-14\n",
                           {"Content-Type": serve.CSV, "Accept": "application/json"})
    assert status == 406 and b"can answer application/x-parquet or text/csv, not application/json" in body
    status, body, _ = call(server + "/invocations", b"not parquet", {"Content-Type": serve.PARQUET})
    assert status == 400 and b"not readable" in body
    status, body, _ = call(server + "/invocations", b"player_id,cutoff\n1,2025-04-14\n", {"Content-Type": serve.CSV})
    assert status == 400 and b"lack columns the model was trained on" in body
    assert call(server + "/models")[0] == 404


def test_serve_drops_its_workers_to_the_images_user_only_as_root(monkeypatch) -> None:
    monkeypatch.setenv("LTV_SERVE_USER", "ltv")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert serve.server_options() | {"user": "ltv", "group": "ltv"} == serve.server_options()
    assert serve.server_options()["bind"] == "0.0.0.0:8080" and serve.server_options()["workers"] == 1
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "user" not in serve.server_options()


# ----------------------------------------------------------------------------------------------
# the Dockerfile, statically


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_base_is_pinned_by_tag_and_digest() -> None:
    froms = [line.split()[1] for line in dockerfile() if line.startswith("FROM ")]
    assert froms and all(re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image) for image in froms), froms
    assert froms[0].startswith("python:3.11-"), "the core requires Python 3.11 (the lock is cp311)"


def test_dockerfile_installs_only_locked_hashed_dependencies_and_the_core_without_deps() -> None:
    installs = [cmd.strip() for line in dockerfile() if line.startswith("RUN ")
                for cmd in line[4:].split("&&") if "pip install" in cmd or "apt-get install" in cmd]
    pip = [c for c in installs if "pip install" in c]
    assert len(pip) == 2
    locked, core = pip
    assert "--require-hashes" in locked and re.search(r"-r \S+requirements\.txt", locked)
    assert set(re.sub(r"--\S+|-r \S+", "", locked.split("pip install", 1)[1]).split()) == set(), locked
    assert "--no-deps" in core and "--no-index" in core and core.split()[-1].endswith(".whl")
    for apt in (c for c in installs if "apt-get install" in c):
        packages = [w.strip("'\"") for w in apt.split("install", 1)[1].split() if not w.startswith("-")]
        assert packages and all("=" in p for p in packages), f"unpinned apt package in {apt!r}"


def test_dockerfile_apt_pins_survive_debian_point_releases() -> None:
    """A point release (12.x -> 12.x+1) replaces a package's `+deb12uN` revision in the archive and the
    old exact version stops resolving: pins name the upstream version and Debian revision, then `*`."""
    installs = [cmd for line in dockerfile() if line.startswith("RUN ") for cmd in line[4:].split("&&")
                if "apt-get install" in cmd]
    pins = [w.strip("'\"") for cmd in installs for w in cmd.split("install", 1)[1].split() if "=" in w]
    assert pins, "the OpenMP runtime is installed with a version pin"
    for pin in pins:
        name, version = pin.split("=", 1)
        assert re.fullmatch(r"[\w.:~-]+-\d+\*", version), f"{pin}: pin the upstream version and revision, then *"
        assert "+deb" not in version, f"{pin}: a point-release suffix stops resolving at the next point release"


def test_the_lock_pins_every_dependency_of_the_core_and_the_image_extra() -> None:
    lock = (ROOT / "requirements" / "image.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", lock, flags=re.M))
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 3)[-1])
    assert all("--hash=sha256:" in b for b in blocks if "==" in b), "every pin carries its hashes"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    wanted = [re.split(r"[\[<>=!; ]", r, maxsplit=1)[0] for r in
              project["dependencies"] + project["optional-dependencies"]["image"]]
    assert {norm(w) for w in wanted} <= {norm(p) for p in pins}, "the lock covers pyproject's base and image deps"
    assert {"gunicorn", "boto3", "autogluon-tabular", "lightgbm"} <= {norm(p) for p in pins}


def test_dockerfile_has_a_non_root_user_for_serving_and_the_entrypoints() -> None:
    lines = dockerfile()
    users = [re.search(r"useradd .*?(\w+)$", line).group(1) for line in lines if "useradd" in line]
    env = " ".join(line for line in lines if line.startswith("ENV "))
    assert users == ["ltv"] and "LTV_SERVE_USER=ltv" in env
    assert not any(line.startswith("USER root") for line in lines)
    assert [line for line in lines if line.startswith("ENTRYPOINT")] == ['ENTRYPOINT ["python", "-m", "pipelines"]']
    assert {"train", "serve", "evaluate", "resolve-dataset"} == set(container.COMMANDS)
    for module in container.COMMANDS.values():
        assert callable(__import__(module, fromlist=["main"]).main)
    assert "8080" in " ".join(line for line in lines if line.startswith("EXPOSE"))



def test_a_downloaded_dataset_is_read_in_place_and_only_when_complete(tiny_game, tiny_model, tmp_path) -> None:
    config, lake, _ = tiny_game
    download = tmp_path / "input" / "data" / "dataset"
    shutil.copytree(lake.datasets / tiny_model[2]["name"], download)
    splits, manifest = container.read_dataset(download, config)
    assert manifest == tiny_model[2]
    for name, frame in tiny_model[1].items():
        pd.testing.assert_frame_equal(splits[name], frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input"], "no lake is faked beside the download"
    (download / "_SUCCESS").unlink()
    with pytest.raises(container.LtvError, match="_SUCCESS"):
        container.read_dataset(download, config)
