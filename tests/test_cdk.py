"""The CDK app, synthesised offline: every resource of a game's account and its key properties.

One synthesis per test process (jsii start-up is slow: conftest's `example_app`, shared with the
pipeline and security tests): both example games through `build_app`, so cdk-nag (AWS Solutions)
runs on it exactly as in `cdk synth`. Assertions use `Template` with
`Match.object_like`, never hashed logical ids.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
for _var, _value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                     "AWS_DEFAULT_REGION": "eu-west-1"}.items():
    os.environ[_var] = _value

from conftest import GAMES, ROOT, make_config  # noqa: E402

sys.path.append(str(ROOT))  # stacks/ is not an installed package

from aws_cdk import App, Stack, Validations  # noqa: E402
from aws_cdk import aws_s3 as s3  # noqa: E402
from aws_cdk.assertions import Match, Template  # noqa: E402

from cloud import PolicyEvaluator, Templates  # noqa: E402
from ltv import config as cfg  # noqa: E402
from ltv import targets  # noqa: E402
from ltv.athena import projection_start, table_specs  # noqa: E402
from ltv.errors import ConfigError  # noqa: E402
from stacks.game import PROJECT, build_app, select_configs  # noqa: E402
from stacks.names import Names  # noqa: E402
from stacks.packaging import GLUE, GLUE_LOCK, read_lock, wheel_name_version, wheelhouse as download  # noqa: E402

GIB = 1024 ** 3
# words Hive DDL (Athena's) reserves that a partition key could plausibly be named
HIVE_RESERVED = {"date", "timestamp", "time", "year", "user", "table", "partition", "interval", "order", "group"}
IDENTITY_POLICIES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def placeholder_wheel(directory: Path) -> Path:
    """A stand-in for the core wheel: the stacks only stage it as an asset."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "player_ltv-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("ltv/__init__.py", "")
    return wheel


def synth(configs: list[cfg.GameConfig], outdir: Path) -> App:
    app = build_app(core_wheel=placeholder_wheel(outdir.parent / "wheel"), configs=configs, outdir=str(outdir))
    app.synth()  # raises if cdk-nag reports an unacknowledged finding
    return app


@pytest.fixture(scope="module")
def games() -> dict[str, cfg.GameConfig]:
    return {p.stem: cfg.load(p) for p in sorted(GAMES.glob("*.yaml"))}


@pytest.fixture(scope="module")
def app(example_app) -> App:
    return example_app


def stack(app: App, config: cfg.GameConfig, concern: str) -> Stack:
    return app.node.find_child(Names.of(config).stack(concern))


def template(app: App, config: cfg.GameConfig, concern: str) -> Template:
    return Template.from_stack(stack(app, config, concern))


def resources(tpl: Template, kind: str) -> dict[str, dict[str, Any]]:
    return tpl.find_resources(kind)


def props_named(tpl: Template, kind: str, key: str, name: str) -> dict[str, Any]:
    """Properties of the one resource of `kind` whose `key` (a dotted path) equals `name`."""
    found = []
    for res in resources(tpl, kind).values():
        value: Any = res["Properties"]
        for part in key.split("."):
            value = value.get(part, {}) if isinstance(value, dict) else {}
        if value == name:
            found.append(res["Properties"])
    assert len(found) == 1, f"{len(found)} {kind} with {key}={name}"
    return found[0]


# ----------------------------------------------------------------------------------------------
# the app


CONCERNS = ("DataLake", "Alerts", "Etl", "Ml", "Scoring", "Monitoring")


def test_every_game_config_synthesises_into_its_own_account(app, games):
    assert {"galaxy-raiders", "dragon-merge"} <= set(games)
    for config in games.values():
        for concern in CONCERNS:
            st = stack(app, config, concern)
            assert st.stack_name == f"Ltv-{Names.of(config).pascal}-{concern}"
            assert (st.account, st.region) == (config.aws.account, config.aws.region)
            assert st.tags.tag_values()["ltv:game"] == config.game.id
    depends = {c: {d.node.id.rsplit("-", 1)[1] for d in stack(app, games["galaxy-raiders"], c).dependencies}
               for c in CONCERNS}
    assert depends == {"DataLake": set(), "Alerts": {"DataLake"}, "Etl": {"DataLake", "Alerts"}, "Ml": {"DataLake", "Etl"},
                       "Scoring": {"DataLake", "Alerts", "Etl", "Ml"},
                       "Monitoring": {"DataLake", "Alerts", "Etl", "Ml", "Scoring"}}


def test_game_context_selects_one_config_and_no_context_selects_all():
    assert [c.game.id for c in select_configs("dragon-merge")] == ["dragon-merge"]
    assert sorted(c.game.id for c in select_configs(None)) == sorted(p.stem for p in GAMES.glob("*.yaml"))
    with pytest.raises(ConfigError, match="no such game config"):
        select_configs("space-golf")


def test_stack_tags_come_from_the_config(app, games):
    """Stack tags, which CloudFormation applies to every resource that takes tags."""
    manifest = json.loads((Path(app.outdir) / "manifest.json").read_text())["artifacts"]
    for concern in CONCERNS:
        tags = manifest[f"Ltv-GalaxyRaiders-{concern}"]["properties"]["tags"]
        assert tags == {"ltv:game": "galaxy-raiders", "team": "analytics", "game": "galaxy-raiders"}


# ----------------------------------------------------------------------------------------------
# data lake


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_data_buckets_are_kms_encrypted_private_logged_and_tls_only(app, games, game):
    config = games[game]
    tpl = template(app, config, "DataLake")
    key_id = next(iter(resources(tpl, "AWS::KMS::Key")))
    logs_id = next(k for k, v in resources(tpl, "AWS::S3::Bucket").items()
                   if v["Properties"]["BucketName"] == Names.of(config).bucket("access-logs"))
    for purpose, versioned in {"raw": True, "curated": True, "artifacts": True, "athena-results": False}.items():
        props = props_named(tpl, "AWS::S3::Bucket", "BucketName", Names.of(config).bucket(purpose))
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                         "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}}
        assert rule["BucketKeyEnabled"] is True
        assert props["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert props["LoggingConfiguration"] == {"DestinationBucketName": {"Ref": logs_id},
                                                 "LogFilePrefix": f"{purpose}/"}
        assert ("VersioningConfiguration" in props) is versioned
    for bucket_id in resources(tpl, "AWS::S3::Bucket"):
        tpl.has_resource_properties("AWS::S3::BucketPolicy", Match.object_like({
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
                "Effect": "Deny", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}}))
    tpl.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True, "KeyPolicy": Match.any_value(),
                                                  "Description": Match.any_value()})
    tpl.has_resource_properties("AWS::KMS::Alias", {"AliasName": f"alias/ltv-{game}", "TargetKeyId": Match.any_value()})


def lifecycle(tpl: Template, name: str) -> dict[str, dict[str, Any]]:
    props = props_named(tpl, "AWS::S3::Bucket", "BucketName", name)
    return {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}


def test_lifecycle_rules_come_from_the_config(app, games):
    galaxy, dragon = games["galaxy-raiders"], games["dragon-merge"]
    g, d = template(app, galaxy, "DataLake"), template(app, dragon, "DataLake")
    assert galaxy.stack.raw_logs_expiration_days is None and dragon.stack.raw_logs_expiration_days == 730
    assert "expire-objects" not in lifecycle(g, Names.of(galaxy).bucket("raw"))
    assert lifecycle(d, Names.of(dragon).bucket("raw"))["expire-objects"]["ExpirationInDays"] == 730
    for config, tpl in ((galaxy, g), (dragon, d)):
        names = Names.of(config)
        assert (lifecycle(tpl, names.bucket("curated"))["expire-old-versions"]["NoncurrentVersionExpiration"]
                == {"NoncurrentDays": config.stack.noncurrent_version_expiration_days})
        assert (lifecycle(tpl, names.bucket("access-logs"))["expire-access-logs"]["ExpirationInDays"]
                == config.stack.log_retention_days)
        assert lifecycle(tpl, names.bucket("athena-results"))["expire-objects"]["ExpirationInDays"] == 30


def lake_templates(app: App, config: cfg.GameConfig) -> Templates:
    return Templates(Path(app.outdir), config.aws.account, config.aws.region)


def bucket_policy(app: App, config: cfg.GameConfig, purpose: str) -> PolicyEvaluator:
    tpl, stack = lake_templates(app, config), Names.of(config).stack("DataLake")
    return PolicyEvaluator(tpl.resource_policy(stack, "AWS::S3::BucketPolicy", "PolicyDocument",
                                               {"Bucket": Names.of(config).bucket(purpose)}))


def key_policy(app: App, config: cfg.GameConfig) -> tuple[PolicyEvaluator, str]:
    """The key policy's grants to others than the game account itself (its root statement only
    delegates to the account's own IAM policies, which grant a log exporter nothing), and the key ARN."""
    tpl, stack = lake_templates(app, config), Names.of(config).stack("DataLake")
    key_id = next(iter(tpl.resources(stack, "AWS::KMS::Key")))
    own = {"AWS": f"arn:aws:iam::{config.aws.account}:root"}
    statements = [s for s in tpl.props(stack, key_id)["KeyPolicy"]["Statement"] if s.get("Principal") != own]
    return PolicyEvaluator(statements), tpl.resolve(stack, {"Fn::GetAtt": [key_id, "Arn"]})


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_raw_writers_may_put_under_their_prefixes_only(app, games, game):
    """The config's writers (a role of the game's account for galaxy-raiders, another account for
    dragon-merge) may write and list their prefixes of the raw bucket, nothing else."""
    config = games[game]
    writer = config.aws.raw_writers[0]
    who = writer.principal or f"arn:aws:iam::{writer.account}:role/exporter"
    raw = bucket_policy(app, config, "raw")
    bucket = f"arn:aws:s3:::{Names.of(config).bucket('raw')}"
    table = config.logs.events.table
    for action in ("s3:PutObject", "s3:AbortMultipartUpload"):
        assert raw.decide(action, f"{bucket}/{table}/dt=2025-05-01/export-0.parquet", principal=who) == "allow"
    assert raw.decide("s3:ListBucket", bucket, principal=who, context={"s3:prefix": f"{table}/dt=2025-05-01/"}) == "allow"
    for action, resource, context in [
            ("s3:PutObject", f"{bucket}/other/x.parquet", {}),                  # outside its prefixes
            ("s3:GetObject", f"{bucket}/{table}/dt=2025-05-01/export-0.parquet", {}),  # no read
            ("s3:DeleteObject", f"{bucket}/{table}/dt=2025-05-01/export-0.parquet", {}),
            ("s3:ListBucket", bucket, {"s3:prefix": ""})]:
        assert raw.decide(action, resource, principal=who, context=context) == "implicit-deny", (action, resource)
    stranger = "arn:aws:iam::999999999999:role/someone"
    assert raw.decide("s3:PutObject", f"{bucket}/{table}/x.parquet", principal=stranger) == "implicit-deny"
    curated = bucket_policy(app, config, "curated")
    assert not curated.allows("s3:PutObject", f"arn:aws:s3:::{Names.of(config).bucket('curated')}/x", principal=who)


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_raw_writers_use_the_game_key_only_through_s3_for_the_raw_bucket(app, games, game):
    config = games[game]
    writer = config.aws.raw_writers[0]
    who = writer.principal or f"arn:aws:iam::{writer.account}:role/exporter"
    key, key_arn = key_policy(app, config)
    via_s3 = {"kms:ViaService": f"s3.{config.aws.region}.amazonaws.com",
              "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{Names.of(config).bucket('raw')}"}
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert key.decide(action, key_arn, principal=who, context=via_s3) == "allow"
    assert key.decide("kms:GenerateDataKey", key_arn, principal=who, context={**via_s3, "kms:ViaService": "x"}) != "allow"
    other_bucket = {**via_s3, "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{Names.of(config).bucket('curated')}"}
    assert key.decide("kms:Decrypt", key_arn, principal=who, context=other_bucket) != "allow"
    assert key.decide("kms:Decrypt", key_arn, principal=who) != "allow", "not directly, only through S3"


def test_raw_objects_must_use_the_game_key(app, games):
    """A writer asking S3 for another key (or SSE-S3) is refused: the jobs could not read the object."""
    config = games["galaxy-raiders"]
    raw = bucket_policy(app, config, "raw")
    _, key_arn = key_policy(app, config)
    who, obj = config.aws.raw_writers[0].principal, f"arn:aws:s3:::{Names.of(config).bucket('raw')}/events/x.parquet"
    assert raw.decide("s3:PutObject", obj, principal=who) == "allow", "no header: the bucket's default key"
    assert raw.decide("s3:PutObject", obj, principal=who, context={
        "s3:x-amz-server-side-encryption": "aws:kms", "s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}) == "allow"
    assert raw.decide("s3:PutObject", obj, principal=who, context={"s3:x-amz-server-side-encryption": "AES256"}) == "deny"
    assert raw.decide("s3:PutObject", obj, principal=who, context={
        "s3:x-amz-server-side-encryption": "aws:kms",
        "s3:x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:eu-west-1:999999999999:key/theirs"}) == "deny"


def test_raw_writer_config_errors_say_what_to_fix():
    with pytest.raises(ConfigError, match="give exactly one of `principal`"):
        make_config(aws={"raw_writers": [{"prefixes": ["events/"]}]})
    with pytest.raises(ConfigError, match=r"not under a raw table's folder; start each with one of \['events/', 'players/'\]"):
        make_config(aws={"raw_writers": [{"account": "333333333333", "prefixes": ["logs/"]}]})
    with pytest.raises(ConfigError, match=r"raw_writers.0.principal: .*IAM role or user ARN"):
        make_config(aws={"raw_writers": [{"principal": "exporter", "prefixes": ["events/"]}]})
    with pytest.raises(ConfigError, match=r"prefixes.0: .*ending in '/'"):
        make_config(aws={"raw_writers": [{"account": "333333333333", "prefixes": ["events"]}]})


def test_cdk_json_sets_every_recommended_feature_flag_of_the_installed_aws_cdk_lib():
    """Before the first deployment: flipping a flag later can replace resources."""
    import tarfile

    import aws_cdk

    bundle = next((Path(aws_cdk.__file__).parent / "_jsii").glob("aws-cdk-lib@*.jsii.tgz"))
    with tarfile.open(bundle) as tar:
        recommended = json.load(tar.extractfile("package/recommended-feature-flags.json"))
    context = json.loads((PROJECT / "cdk.json").read_text())["context"]
    assert {k: v for k, v in recommended.items() if context.get(k) != v} == {}


def test_removal_policy_comes_from_the_config(app, games):
    tpl = template(app, games["galaxy-raiders"], "DataLake")
    for kind in ("AWS::S3::Bucket", "AWS::KMS::Key"):
        assert {r["DeletionPolicy"] for r in resources(tpl, kind).values()} == {"Retain"}


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_glue_catalog_has_every_table_with_config_columns_and_projection(app, games, game):
    config = games[game]
    tpl = template(app, config, "DataLake")
    database = "ltv_" + game.replace("-", "_")
    tpl.has_resource_properties("AWS::Glue::Database", {"CatalogId": config.aws.account,
                                                        "DatabaseInput": Match.object_like({"Name": database})})
    # Lake Formation: new tables of the database are governed by IAM alone, whatever the account's defaults
    tpl.has_resource_properties("AWS::Glue::Database", {"CatalogId": config.aws.account, "DatabaseInput": Match.object_like({
        "CreateTableDefaultPermissions": [{"Permissions": ["ALL"], "Principal": {
            "DataLakePrincipalIdentifier": "IAM_ALLOWED_PRINCIPALS"}}]})})
    tables = {r["Properties"]["TableInput"]["Name"]: r["Properties"] for r in resources(tpl, "AWS::Glue::Table").values()}
    ev, pl = config.logs.events, config.logs.players
    assert set(tables) == {ev.table, pl.table, "player_day", "player_summary", "features", "labels", "datasets",
                           "predictions", "latest_predictions", "targets"}
    ident = "string" if config.logs.player_id_type == "string" else "bigint"
    raw_columns = {c["Name"]: c["Type"] for c in tables[ev.table]["TableInput"]["StorageDescriptor"]["Columns"]}
    assert raw_columns[ev.columns.player_id.lower()] == ident
    assert raw_columns[ev.columns.event_time.lower()] == "timestamp"
    assert raw_columns[ev.columns.revenue.lower()] == "double"
    if ev.columns.currency:
        assert raw_columns[ev.columns.currency.lower()] == "string"
    player_attrs = {c["Name"] for c in tables[pl.table]["TableInput"]["StorageDescriptor"]["Columns"]}
    assert {a.lower() for a in pl.attributes.values()} <= player_attrs
    start = str(projection_start(config))
    history = dt.timedelta(days=config.features.n_steps * config.features.step_days)
    assert start == str(config.aws.logs_start or config.datasets.first_start - history), "the game's first day"
    for name, key in {ev.table: "dt", pl.table: "dt", "player_day": "dt", "player_summary": "cutoff",
                      "features": "cutoff", "labels": "cutoff"}.items():
        table_input = tables[name]["TableInput"]
        assert table_input["PartitionKeys"] == [{"Name": key, "Type": "string"}]
        assert {"projection.enabled": "true", f"projection.{key}.type": "date",
                f"projection.{key}.format": "yyyy-MM-dd",
                f"projection.{key}.range": f"{start},NOW"}.items() <= table_input["Parameters"].items()
        assert table_input["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    datasets = tables["datasets"]["TableInput"]["Parameters"]
    assert datasets["projection.version.type"] == "injected"
    assert datasets["projection.split.values"] == "train,validation,test"
    assert datasets["storage.location.template"]["Fn::Join"][1][-1] == "/datasets/${version}/split=${split}/"
    predictions, latest = tables["predictions"]["TableInput"], tables["latest_predictions"]["TableInput"]
    assert [k["Name"] for k in predictions["PartitionKeys"]] == ["game", "dt", "run"]
    assert [k["Name"] for k in latest["PartitionKeys"]] == ["game", "dt"]
    for table in (predictions, latest):  # the publisher registers complete runs: no projection of half-written ones
        assert not any(k.startswith("projection.") for k in table["Parameters"]), table["Parameters"]
        assert table["StorageDescriptor"]["Columns"] == predictions["StorageDescriptor"]["Columns"]
    # the target lists: partitioned like the runs they come from, registered by their writer, the
    # columns of the files it writes (player_id typed as the predictions')
    listed = tables["targets"]["TableInput"]
    assert listed["PartitionKeys"] == predictions["PartitionKeys"]
    assert not any(k.startswith("projection.") for k in listed["Parameters"]), listed["Parameters"]
    assert [(c["Name"], c["Type"]) for c in listed["StorageDescriptor"]["Columns"]] == targets.columns(config)
    assert [c["Name"] for c in listed["StorageDescriptor"]["Columns"]] == targets.COLUMNS
    assert listed["StorageDescriptor"]["Columns"][0] == predictions["StorageDescriptor"]["Columns"][0]
    assert listed["StorageDescriptor"]["Location"]["Fn::Join"][1][-1] == "/targets/"
    for table in tables.values():  # a reserved word in Athena's (Hive) DDL needs quoting in every query
        assert not {k["Name"] for k in table["TableInput"]["PartitionKeys"]} & HIVE_RESERVED
    summary = {c["Name"]: c["Type"] for c in tables["player_summary"]["TableInput"]["StorageDescriptor"]["Columns"]}
    assert list(summary.items()) == list(table_specs(config)["player_summary"].columns)
    assert (summary["revenue"], summary["rounded_revenue_sq"], summary["purchase_gaps"]) == \
        ("decimal(38,9)", "decimal(38,12)", "bigint"), "exact sums: decimals and integers"
    feature_columns = [c["Name"] for c in tables["features"]["TableInput"]["StorageDescriptor"]["Columns"]]
    assert feature_columns == [c for c, _ in table_specs(config)["features"].columns]
    assert f"revenue_w{config.features.n_steps}" in feature_columns and "cutoff" not in feature_columns


def test_projection_starts_at_the_configured_first_day_of_logs():
    config = make_config("galaxy-raiders", aws={"logs_start": "2024-06-01"})
    assert str(projection_start(config)) == "2024-06-01"


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_athena_workgroup_is_v3_enforced_encrypted_with_the_configured_scan_cutoff(app, games, game):
    config = games[game]
    tpl = template(app, config, "DataLake")
    key_id = next(iter(resources(tpl, "AWS::KMS::Key")))
    tpl.has_resource_properties("AWS::Athena::WorkGroup", {
        "Name": f"ltv-{game}", "State": "ENABLED", "Description": Match.any_value(),
        "RecursiveDeleteOption": False,
        "WorkGroupConfiguration": {
            "EnforceWorkGroupConfiguration": True, "PublishCloudWatchMetricsEnabled": True,
            "BytesScannedCutoffPerQuery": config.stack.athena_bytes_scanned_cutoff_gb * GIB,
            "EngineVersion": {"SelectedEngineVersion": "Athena engine version 3"},
            "ResultConfiguration": {
                "OutputLocation": Match.any_value(), "ExpectedBucketOwner": config.aws.account,
                "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": {"Fn::GetAtt": [key_id, "Arn"]}}}}})
    assert {games["galaxy-raiders"].stack.athena_bytes_scanned_cutoff_gb,
            games["dragon-merge"].stack.athena_bytes_scanned_cutoff_gb} == {100, 200}


# ----------------------------------------------------------------------------------------------
# ETL


def job_props(tpl: Template) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["Name"]: r["Properties"] for r in resources(tpl, "AWS::Glue::Job").values()}


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_glue_jobs_settings_and_arguments(app, games, game):
    config = games[game]
    jobs = job_props(template(app, config, "Etl"))
    assert set(jobs) == {f"ltv-{game}-{j}" for j in ("validate", "player-day", "cutoffs", "dataset")}
    scripts = {}
    for name, props in jobs.items():
        assert props["Command"]["Name"] == "glueetl" and props["GlueVersion"] == "5.0"
        assert props["ExecutionClass"] == "FLEX", "non-urgent jobs run on spare capacity"
        assert props["Timeout"] == config.stack.glue_timeout_minutes
        assert props["ExecutionProperty"] == {"MaxConcurrentRuns": config.stack.glue_max_concurrency}
        assert "Ref" in props["SecurityConfiguration"]
        args = props["DefaultArguments"]
        assert args["--game"] == game and args["--database"] == "ltv_" + game.replace("-", "_")
        assert args["--workgroup"] == f"ltv-{game}"
        assert args["--config"].startswith("s3://cdk-") and args["--config"].endswith(".yaml")
        assert args["--extra-py-files"].startswith("s3://cdk-") and args["--extra-py-files"].endswith(".zip"), \
            "one entry: the core wheel (a loose .py would land in S3 under its hash and not be importable)"
        assert args["--custom-logGroup-prefix"] == f"/aws-glue/jobs/ltv-{game}"
        assert not {"--enable-continuous-cloudwatch-log", "--continuous-log-logGroup"} & set(args), "Glue <= 4.0 only"
        assert args["--python-modules-installer-option"] == "--no-index"
        scripts[name] = props["Command"]["ScriptLocation"]
    assert len(set(scripts.values())) == 4
    assert jobs[f"ltv-{game}-dataset"]["DefaultArguments"]["--version"] == "rolling"
    assert jobs[f"ltv-{game}-validate"]["MaxRetries"] == 0, "a failed validation fails again: no retry"
    assert {jobs[f"ltv-{game}-{j}"]["MaxRetries"] for j in ("player-day", "cutoffs", "dataset")} == \
        {config.stack.glue_max_retries}


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_glue_installs_exactly_the_locked_wheels_under_their_real_names(app, games, game):
    """Every wheel of requirements/glue.txt, at its pinned version, by an S3 URI whose last part is
    the wheel's own file name (pip refuses anything else), deployed by the wheelhouse deployment
    under a prefix versioned by the lock; nothing unlocked."""
    config = games[game]
    tpl = template(app, config, "Etl")
    uris = next(iter(job_props(tpl).values()))["DefaultArguments"]["--additional-python-modules"].split(",")
    wheelhouse = download(GLUE)
    prefix = f"s3://{Names.of(config).bucket('artifacts')}/glue/wheelhouse/{wheelhouse.digest}/"
    assert all(u.startswith(prefix) for u in uris)
    pinned = {wheel_name_version(u.removeprefix(prefix)) for u in uris}  # raises on a name that is not a wheel's
    assert pinned == {(p.name, p.version) for p in read_lock(GLUE_LOCK).values()}
    assert {"numpy", "pandas", "pyarrow"} <= {name for name, _ in pinned}, "not Glue's own older copies"
    deployment = next(iter(resources(tpl, "Custom::CDKBucketDeployment").values()))["Properties"]
    assert deployment["DestinationBucketKeyPrefix"] == f"glue/wheelhouse/{wheelhouse.digest}/"
    assert deployment["Prune"] is False and deployment["RetainOnDelete"] is True, \
        "a running job keeps its wheels while a new lock deploys"
    staged = Templates(Path(app.outdir), config.aws.account, config.aws.region).asset_file(
        Names.of(config).stack("Etl"), f"s3://{deployment['SourceBucketNames'][0]}/{deployment['SourceObjectKeys'][0]}")
    assert sorted(p.name for p in staged.iterdir()) == sorted(u.removeprefix(prefix) for u in uris)
    for job in resources(tpl, "AWS::Glue::Job"):
        deps = tpl.to_json()["Resources"][job].get("DependsOn", [])
        assert any(d.startswith("JobsWheelhouseDeploymentCustomResource") for d in deps), "wheels before the jobs"


def test_the_jobs_receive_exactly_the_validated_config(app, games):
    """The --config asset is the synthesised config, less its secret (the webhook URL): loading it
    gives back an equal GameConfig."""
    outdir = Path(app.outdir)
    for game, config in games.items():
        uri = job_props(template(app, config, "Etl"))[f"ltv-{game}-validate"]["DefaultArguments"]["--config"]
        asset = outdir / f"asset.{uri.rsplit('/', 1)[1]}"
        assert cfg.load(asset) == config.model_copy(update={"alerts": config.alerts.model_copy(
            update={"webhook_url": None})})


def test_glue_security_configuration_and_logs_use_the_game_key(app, games):
    config = games["dragon-merge"]
    tpl = template(app, config, "Etl")
    key_arn = Match.object_like({"Fn::GetStackOutput": Match.object_like({
        "StackName": "Ltv-DragonMerge-DataLake", "OutputName": Match.string_like_regexp("StorageKey")})})
    tpl.has_resource_properties("AWS::Glue::SecurityConfiguration", {
        "Name": Match.string_like_regexp(r"^ltv-dragon-merge-etl-[0-9a-f]{8}$"), "EncryptionConfiguration": {
            "CloudWatchEncryption": {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": key_arn},
            "JobBookmarksEncryption": {"JobBookmarksEncryptionMode": "CSE-KMS", "KmsKeyArn": key_arn},
            "S3Encryptions": [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": key_arn}]}})
    groups = {r["Properties"]["LogGroupName"]: r["Properties"] for r in resources(tpl, "AWS::Logs::LogGroup").values()
              if "LogGroupName" in r["Properties"]}
    assert set(groups) == {"/aws-glue/jobs/ltv-dragon-merge/output", "/aws-glue/jobs/ltv-dragon-merge/error"}, \
        "where Glue 5.0 writes with --custom-logGroup-prefix"
    for props in groups.values():
        assert props["RetentionInDays"] == 180 and key_arn.test(props["KmsKeyId"]).is_success
    for props in (r["Properties"] for r in resources(tpl, "AWS::Logs::LogGroup").values()):
        assert props["RetentionInDays"] == config.stack.log_retention_days and "KmsKeyId" in props, "every log group"


def test_the_security_configuration_is_renamed_when_its_settings_change():
    """Glue security configurations are replaced, not updated, and a replacement needs a new name."""
    from stacks.etl_jobs import _security_configuration

    stack = Stack(App(), "S")
    names = Names("g", "111111111111")
    a = stack.resolve(_security_configuration(Stack(stack, "A"), names, "arn:aws:kms:eu-west-1:1:key/a").name)
    b = stack.resolve(_security_configuration(Stack(stack, "B"), names, "arn:aws:kms:eu-west-1:1:key/b").name)
    again = stack.resolve(_security_configuration(Stack(stack, "C"), names, "arn:aws:kms:eu-west-1:1:key/a").name)
    assert a != b and a == again and a.startswith("ltv-g-etl-")


def test_the_jobs_log_only_to_their_two_log_groups(app, games):
    config = games["galaxy-raiders"]
    statements = identity_statements(template(app, config, "Etl"))
    logs = {flat(r) for s in statements for a in as_list(s["Action"]) if a.startswith("logs:")
            for r in as_list(s["Resource"]) if "/aws-glue/" in flat(r)}
    base = f"arn:<AWS::Partition>:logs:{config.aws.region}:{config.aws.account}:log-group:/aws-glue/jobs/ltv-galaxy-raiders"
    assert logs == {f"{base}/output", f"{base}/error", f"{base}/output:log-stream:*", f"{base}/error:log-stream:*"}


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_workflows_chain_the_jobs_on_the_configured_schedules(app, games, game):
    config = games[game]
    tpl = template(app, config, "Etl")
    triggers = {r["Properties"]["Name"]: r["Properties"] for r in resources(tpl, "AWS::Glue::Trigger").values()}
    jobs = {r["Properties"]["Name"]: k for k, r in resources(tpl, "AWS::Glue::Job").items()}
    workflows = {r["Properties"]["Name"]: k for k, r in resources(tpl, "AWS::Glue::Workflow").items()}
    assert set(workflows) == {f"ltv-{game}-daily-etl", f"ltv-{game}-dataset"}
    start = triggers[f"ltv-{game}-daily-start"]
    assert start["Type"] == "SCHEDULED" and start["Schedule"] == config.schedules.daily_etl
    assert start["WorkflowName"] == {"Ref": workflows[f"ltv-{game}-daily-etl"]}
    assert start["Actions"] == [{"JobName": {"Ref": jobs[f"ltv-{game}-validate"]}}]
    for before, after in (("validate", "player-day"), ("player-day", "cutoffs")):
        t = triggers[f"ltv-{game}-after-{before}"]
        assert t["Type"] == "CONDITIONAL" and t["StartOnCreation"] is True
        assert t["Predicate"] == {"Logical": "AND", "Conditions": [
            {"JobName": {"Ref": jobs[f"ltv-{game}-{before}"]}, "LogicalOperator": "EQUALS", "State": "SUCCEEDED"}]}
        assert t["Actions"] == [{"JobName": {"Ref": jobs[f"ltv-{game}-{after}"]}}]
    dataset = triggers[f"ltv-{game}-dataset-start"]  # started by EventBridge: the schedule or a drift alarm
    assert dataset["Type"] == "EVENT" and dataset["EventBatchingCondition"] == {"BatchSize": 1}
    assert dataset["Actions"] == [{"JobName": {"Ref": jobs[f"ltv-{game}-dataset"]}}]
    schedule = props_named(tpl, "AWS::Events::Rule", "Name", f"ltv-{game}-retrain-schedule")
    assert schedule["ScheduleExpression"] == config.schedules.retrain
    target, = schedule["Targets"]
    assert target["Arn"] == f"arn:aws:glue:{config.aws.region}:{config.aws.account}:workflow/ltv-{game}-dataset"
    role = next(r["Properties"] for k, r in resources(tpl, "AWS::IAM::Role").items()
                if {"Fn::GetAtt": [k, "Arn"]} == target["RoleArn"])
    assert role["RoleName"] == f"ltv-{game}-start-dataset"
    tpl.has_resource_properties("AWS::IAM::Policy", {"PolicyName": "start-dataset", "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [{"Sid": "NotifyDatasetWorkflow", "Effect": "Allow",
                                                "Action": "glue:NotifyEvent", "Resource": target["Arn"]}]},
        "Roles": Match.any_value()})
    assert config.schedules.daily_etl != games["galaxy-raiders" if game == "dragon-merge" else "dragon-merge"].schedules.daily_etl


def test_failed_jobs_publish_to_the_games_encrypted_alert_topic(app, games):
    alerts = template(app, games["galaxy-raiders"], "Alerts")
    topic_id = next(iter(resources(alerts, "AWS::SNS::Topic")))
    alerts.has_resource_properties("AWS::SNS::Topic", Match.object_like({
        "TopicName": "ltv-galaxy-raiders-alerts",
        "KmsMasterKeyId": Match.object_like({"Fn::GetStackOutput": Match.any_value()})}))
    tpl = template(app, games["galaxy-raiders"], "Etl")
    assert not resources(tpl, "AWS::SNS::Topic"), "one topic per game, in the alerts stack"
    rule = props_named(tpl, "AWS::Events::Rule", "Name", "ltv-galaxy-raiders-etl-job-failed")
    assert rule["EventPattern"] == {"source": ["aws.glue"], "detail-type": ["Glue Job State Change"], "detail": {
        "jobName": [f"ltv-galaxy-raiders-{j}" for j in ("validate", "player-day", "cutoffs", "dataset", "monitor",
                                                                        "targets")],
        "state": ["FAILED", "TIMEOUT", "ERROR", "STOPPED"]}}
    target, = rule["Targets"]
    assert target["Id"] == "EtlFailureTopic" and target["Arn"]["Fn::GetStackOutput"]["StackName"] == \
        "Ltv-GalaxyRaiders-Alerts"
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"]["message"] == "$.detail.message", "the job's error message is in the mail"
    assert json.loads(transformer["InputTemplate"].replace("<", "{").replace(">", "}")).startswith("Glue job {job}")
    alerts.has_resource_properties("AWS::SNS::TopicPolicy", {"Topics": [{"Ref": topic_id}], "PolicyDocument": {
        "Version": "2012-10-17", "Statement": Match.array_with([Match.object_like({
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish",
            "Condition": {"ArnEquals": {"aws:SourceArn":
                                        "arn:aws:events:eu-west-1:111111111111:rule/ltv-galaxy-raiders-etl-job-failed"}}})])}})
    key = next(iter(resources(template(app, games["galaxy-raiders"], "DataLake"), "AWS::KMS::Key").values()))
    grants = [st for st in key["Properties"]["KeyPolicy"]["Statement"]
              if st["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"] and st["Resource"] == "*"
              and "Condition" not in st]
    services = {svc for st in grants for svc in as_list(st["Principal"].get("Service", []))}
    assert services == {"events.amazonaws.com", "cloudwatch.amazonaws.com"}, "rules and alarms publish to the topic"


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_the_configured_alert_emails_are_subscribed_to_the_alert_topic(app, games, game):
    config = games[game]
    tpl = template(app, config, "Alerts")
    topic_id = next(iter(resources(tpl, "AWS::SNS::Topic")))
    subscriptions = [r["Properties"] for r in resources(tpl, "AWS::SNS::Subscription").values()]
    emails = [s for s in subscriptions if s["Protocol"] == "email"]
    assert config.alerts.emails and sorted(s["Endpoint"] for s in emails) == sorted(config.alerts.emails)
    assert all(s["TopicArn"] == {"Ref": topic_id} for s in subscriptions)
    assert [s["Protocol"] for s in subscriptions if s not in emails] == (["lambda"] if config.alarms.webhook else [])


# ----------------------------------------------------------------------------------------------
# IAM: least privilege


def identity_statements(tpl: Template) -> list[dict[str, Any]]:
    out = []
    for kind in IDENTITY_POLICIES:
        for res in resources(tpl, kind).values():
            out += res["Properties"]["PolicyDocument"]["Statement"]
    for role in resources(tpl, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"], "no AWS managed policies: they grant far too much"
        for policy in role["Properties"].get("Policies", []):
            out += policy["PolicyDocument"]["Statement"]
    return out


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def flat(value: Any) -> str:
    """A resource with its intrinsics flattened to text, e.g. arn:<AWS::Partition>:s3:::bucket/*."""
    if isinstance(value, str):  # partition literals (`@aws-cdk/core:enablePartitionLiterals`) read as the token
        return value.replace("arn:aws:", "arn:<AWS::Partition>:")
    if "Fn::Join" in value:
        return value["Fn::Join"][0].join(flat(v) for v in value["Fn::Join"][1])
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetStackOutput" in value:
        return f"<{value['Fn::GetStackOutput']['OutputName']}>"
    return "<" + json.dumps(value, sort_keys=True) + ">"


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_iam_has_no_wildcard_actions_and_only_the_games_resources(app, games, game):
    config = games[game]
    statements = [s for concern in ("DataLake", "Etl") for s in identity_statements(template(app, config, concern))]
    assert statements, "the ETL role has a policy"
    account, region = config.aws.account, config.aws.region
    allowed_prefixes = (
        f"arn:<AWS::Partition>:s3:::ltv-{game}-", f"arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-{account}-{region}/",
        f"arn:<AWS::Partition>:glue:{region}:{account}:", f"arn:<AWS::Partition>:athena:{region}:{account}:workgroup/ltv-{game}",
        f"arn:<AWS::Partition>:logs:{region}:{account}:log-group:/aws-glue/jobs/ltv-{game}/")
    for st in statements:
        assert st["Effect"] == "Allow"
        for action in as_list(st["Action"]):
            assert "*" not in action, f"wildcard action {action}"
        for resource in as_list(st["Resource"]):
            text = flat(resource)
            assert text != "*", f"{st['Sid']}: Resource '*'"
            if text.startswith("<"):  # another stack's output (the game's buckets or key) or a log group of its own
                assert "Storage" in text or "DeployLogs" in text, text
                continue
            assert text.startswith(allowed_prefixes), f"{st['Sid']}: {text} is not one of the game's resources"
            if "cdk-hnb659fds-assets" in text:
                assert "*" not in text, "job code: exact asset objects only"
            if ":glue:" in text:
                assert text.split(":glue:", 1)[1].split(":", 2)[2].split("/")[0] in ("catalog", "database", "table", "workflow")
                assert "*" not in text and ("ltv_" + game.replace("-", "_") in text or "ltv-" + game in text
                                            or text.endswith(":catalog"))
    actions = {a for st in statements for a in as_list(st["Action"])}
    assert not {a for a in actions if a.startswith("glue:") and ("Delete" in a or "Update" in a or "Create" in a)}, \
        "read-only catalog: partition projection needs no registration"
    assert "s3:DeleteObject" in actions and "s3:DeleteBucket" not in actions


def test_raw_logs_are_read_only_for_the_jobs(app, games):
    statements = identity_statements(template(app, games["galaxy-raiders"], "Etl"))
    raw = [s for s in statements if any("ltv-galaxy-raiders-raw-" in flat(r) for r in as_list(s["Resource"]))]
    assert raw and {a for s in raw for a in as_list(s["Action"])} == {"s3:GetObject"}


# ----------------------------------------------------------------------------------------------
# guard rails: cdk-nag and cfn-lint


def acknowledgments(app: App) -> list[tuple[str, str, str]]:
    """(construct path, rule id, reason) of every cdk-nag acknowledgment in the app."""
    out = []
    for construct in app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for key, reason in entry.data.items():  # {"<scope>::<rule id>": reason}
                    out.append((construct.node.path, key.split("::", 1)[1], reason))
    return out


def test_cdk_nag_runs_on_synth_and_every_acknowledgment_has_a_reason(app):
    acks = acknowledgments(app)
    assert acks, "the app acknowledges its cdk-nag findings explicitly"
    for path, rule, reason in acks:
        assert rule.startswith("AwsSolutions-"), (path, rule)
        assert len(reason.split()) >= 8, f"{path}: {rule} needs a real reason, got {reason!r}"
    rules = {rule.split("[")[0] for _, rule, _ in acks}
    assert rules == {"AwsSolutions-S1", "AwsSolutions-IAM5", "AwsSolutions-L1", "AwsSolutions-SQS3",
                     "AwsSolutions-SMG4", "AwsSolutions-GL1", "AwsSolutions-GL3"}, rules


def test_cdk_nag_fails_the_synthesis_of_a_non_compliant_resource(tmp_path):
    app = build_app(core_wheel=placeholder_wheel(tmp_path), configs=[], outdir=str(tmp_path / "out"))
    s3.Bucket(Stack(app, "Careless"), "Open")  # no encryption key, no TLS policy, no access logs
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*AwsSolutions-S10"):
        app.synth()


def test_cfn_lint_reports_nothing_on_any_template(app, games):
    """No error, and no warning either (cfn-lint exits non-zero on warnings too)."""
    from cfnlint.api import ManualArgs, lint_file

    templates = sorted(Path(app.outdir).glob("*.template.json"))
    assert len(templates) == len(CONCERNS) * len(games)
    for config in games.values():
        for concern in CONCERNS:
            path = Path(app.outdir) / f"{Names.of(config).stack(concern)}.template.json"
            matches = lint_file(path, config=ManualArgs(regions=[config.aws.region]))
            assert not matches, f"{path.name}: " + "; ".join(f"{m.rule.id} {m.message}" for m in matches)


# ----------------------------------------------------------------------------------------------
# a config-only change is a real redeploy


def test_changing_only_the_config_changes_the_templates_as_expected(app, games, tmp_path):
    changed = make_config("galaxy-raiders", schedules={"daily_etl": "cron(15 3 * * ? *)"},
                          stack={"athena_bytes_scanned_cutoff_gb": 42, "glue_timeout_minutes": 45,
                                 "log_retention_days": 30, "raw_logs_expiration_days": 365})
    other = synth([changed], tmp_path / "cdk.out")
    before = {c: template(app, games["galaxy-raiders"], c).to_json()["Resources"] for c in ("DataLake", "Etl")}
    after = {c: template(other, changed, c).to_json()["Resources"] for c in ("DataLake", "Etl")}
    assert {c: set(r) for c, r in before.items()} == {c: set(r) for c, r in after.items()}, "same resources"
    diff = {(c, lid) for c in before for lid in before[c] if before[c][lid] != after[c][lid]}
    kinds = {after[c][lid]["Type"] for c, lid in diff}
    assert kinds == {"AWS::S3::Bucket", "AWS::Athena::WorkGroup", "AWS::Glue::Trigger", "AWS::Glue::Job",
                     "AWS::Logs::LogGroup", "AWS::IAM::Policy"}, kinds
    tpl = template(other, changed, "Etl")
    tpl.has_resource_properties("AWS::Glue::Trigger", Match.object_like({"Name": "ltv-galaxy-raiders-daily-start",
                                                                         "Schedule": "cron(15 3 * * ? *)"}))
    assert {p["Timeout"] for p in job_props(tpl).values()} == {45}
    old_config = job_props(template(app, games["galaxy-raiders"], "Etl"))["ltv-galaxy-raiders-cutoffs"]["DefaultArguments"]
    new_config = job_props(tpl)["ltv-galaxy-raiders-cutoffs"]["DefaultArguments"]
    assert old_config["--config"] != new_config["--config"], "the jobs get the new config (new asset)"
    template(other, changed, "DataLake").has_resource_properties("AWS::Athena::WorkGroup", Match.object_like({
        "WorkGroupConfiguration": Match.object_like({"BytesScannedCutoffPerQuery": 42 * GIB})}))
    assert lifecycle(template(other, changed, "DataLake"),
                     "ltv-galaxy-raiders-raw-111111111111")["expire-objects"]["ExpirationInDays"] == 365


# ----------------------------------------------------------------------------------------------
# scoring: S3 event -> Lambda -> batch transform -> EventBridge -> published run (stacks/scoring.py)


def function_named(tpl: Template, name: str) -> tuple[str, dict[str, Any]]:
    (logical_id, res), = [(k, r) for k, r in resources(tpl, "AWS::Lambda::Function").items()
                          if r["Properties"].get("FunctionName") == name]
    return logical_id, res["Properties"]


def role_statements(tpl: Template, role_logical_id: str) -> list[dict[str, Any]]:
    return [st for res in resources(tpl, "AWS::IAM::Policy").values() if {"Ref": role_logical_id} in res["Properties"]["Roles"]
            for st in res["Properties"]["PolicyDocument"]["Statement"]]


def resolved_evaluator(app: App, config: cfg.GameConfig, concern: str, role_logical_id: str) -> PolicyEvaluator:
    """The role's statements with the template's intrinsics resolved as AWS would resolve them."""
    tpl = Templates(Path(app.outdir), config.aws.account, config.aws.region)
    return PolicyEvaluator(tpl.policy_statements(Names.of(config).stack(concern), role_logical_id))


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_the_scoring_lambda_is_notified_of_features_markers_only(app, games, game):
    config = games[game]
    tpl = template(app, config, "Scoring")
    score_id, score = function_named(tpl, f"ltv-{game}-score")
    notification, = [r["Properties"] for r in resources(tpl, "Custom::S3BucketNotifications").values()]
    assert notification["BucketName"] == f"ltv-{game}-curated-{config.aws.account}"
    assert notification["Managed"] is False, "the bucket belongs to the data-lake stack: only this entry is ours"
    entry, = notification["NotificationConfiguration"]["LambdaFunctionConfigurations"]
    assert entry["Events"] == ["s3:ObjectCreated:*"]
    assert sorted((r["Name"], r["Value"]) for r in entry["Filter"]["Key"]["FilterRules"]) == \
        [("prefix", "features/"), ("suffix", "_SUCCESS")]
    assert entry["LambdaFunctionArn"] == {"Fn::GetAtt": [score_id, "Arn"]}
    tpl.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunction", "FunctionName": {"Fn::GetAtt": [score_id, "Arn"]},
        "Principal": "s3.amazonaws.com", "SourceAccount": config.aws.account,
        "SourceArn": f"arn:aws:s3:::ltv-{game}-curated-{config.aws.account}"})
    env = score["Environment"]["Variables"]
    assert env["LTV_SCORING_INSTANCE_TYPE"] == config.sagemaker.transform_instance_types[0]
    assert env["LTV_SCORING_MAX_PAYLOAD_MB"] == str(config.scoring.max_payload_mb)
    assert env["LTV_SCORING_SCORING_CRON"] == config.schedules.scoring
    assert not any("package" in k.lower() or "version" in k.lower() for k in env), "the champion is resolved at run time"


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_scoring_functions_trace_reserve_concurrency_and_keep_failed_events(app, games, game):
    config = games[game]
    tpl = template(app, config, "Scoring")
    alerts = template(app, config, "Alerts")
    queue, = [r["Properties"] for r in resources(alerts, "AWS::SQS::Queue").values()]
    assert queue["QueueName"] == f"ltv-{game}-failed-events"
    assert queue["MessageRetentionPeriod"] == config.alarms.failed_events_retention_days * 86400
    assert "Fn::GetStackOutput" in queue["KmsMasterKeyId"], "encrypted with the game's key"
    reserved = {f"ltv-{game}-score": config.scoring.reserved_concurrency, f"ltv-{game}-scoring-publish": 1}
    for name, concurrency in reserved.items():
        logical_id, fn = function_named(tpl, name)
        assert fn["Runtime"] == "python3.11" and fn["TracingConfig"] == {"Mode": "Active"}
        assert fn["ReservedConcurrentExecutions"] == concurrency
        assert fn["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == f"LTV/{game}"
        invoke, = [r["Properties"] for r in resources(tpl, "AWS::Lambda::EventInvokeConfig").values()
                   if r["Properties"]["FunctionName"] == {"Ref": logical_id}]
        assert invoke["MaximumRetryAttempts"] == 2
        destination = invoke["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetStackOutput"]
        assert destination["StackName"] == f"Ltv-{Names.of(config).pascal}-Alerts"
    rule = props_named(tpl, "AWS::Events::Rule", "Name", f"ltv-{game}-scoring-finished")
    assert rule["EventPattern"] == {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Transform Job State Change"],
                                    "detail": {"TransformJobName": [{"prefix": f"ltv-{game}-"}],
                                               "TransformJobStatus": ["Completed", "Failed", "Stopped"]}}
    publish_id, _ = function_named(tpl, f"ltv-{game}-scoring-publish")
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [publish_id, "Arn"]}


def test_no_reserved_concurrency_when_the_config_reserves_none(tmp_path):
    config = make_config("galaxy-raiders", scoring={"reserved_concurrency": None})
    other = synth([config], tmp_path / "cdk.out")
    tpl = template(other, config, "Scoring")
    assert all("ReservedConcurrentExecutions" not in r["Properties"]
               for r in resources(tpl, "AWS::Lambda::Function").values())


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_scoring_permissions_are_the_games_own_prefixes_group_and_jobs(app, games, game):
    config = games[game]
    tpl = template(app, config, "Scoring")
    account, region = config.aws.account, config.aws.region
    curated, artifacts = f"arn:aws:s3:::ltv-{game}-curated-{account}", f"arn:aws:s3:::ltv-{game}-artifacts-{account}"
    sm = f"arn:aws:sagemaker:{region}:{account}"
    roles = {r["Properties"].get("Description", ""): k for k, r in resources(tpl, "AWS::IAM::Role").items()}
    score = resolved_evaluator(app, config, "Scoring", next(k for d, k in roles.items() if d.startswith("Starts")))
    publish = resolved_evaluator(app, config, "Scoring", next(k for d, k in roles.items() if d.startswith("Publishes")))
    transform = resolved_evaluator(app, config, "Scoring", next(k for d, k in roles.items() if "transform jobs" in d))
    lists = resolved_evaluator(app, config, "Scoring", next(k for d, k in roles.items() if "targets job" in d))
    listed, database = f"{curated}/targets/game={game}/dt=2025-04-14/run=r", f"ltv_{game.replace('-', '_')}"
    glue_arn, bus = f"arn:aws:glue:{region}:{account}", f"arn:aws:events:{region}:{account}:event-bus/default"
    ready = {"events:source": targets.EVENT_SOURCE, "events:detail-type": targets.EVENT_DETAIL_TYPE}
    allowed = [
               (publish, "glue:StartJobRun", f"{glue_arn}:job/ltv-{game}-targets"),
               (publish, "s3:GetObject", f"{listed}/_NOTIFIED"),
               (lists, "s3:GetObject", f"{curated}/predictions/game={game}/dt=2025-04-14/run=r/part-0.parquet.out"),
               (lists, "s3:PutObject", f"{listed}/part-0.parquet"),
               (lists, "glue:CreatePartition", f"{glue_arn}:table/{database}/targets"),(score, "s3:GetObject", f"{curated}/features/cutoff=2025-04-14/part-0.parquet"),
               (score, "s3:PutObject", f"{artifacts}/scoring/manifests/ltv-{game}-20250414-0123456789.manifest"),
               (score, "sagemaker:DescribeModelPackage", f"{sm}:model-package/ltv-{game}/7"),
               (score, "sagemaker:CreateModel", f"{sm}:model/ltv-{game}-v7"),
               (score, "sagemaker:CreateTransformJob", f"{sm}:transform-job/ltv-{game}-20250414-0123456789"),
               (publish, "s3:PutObject", f"{curated}/predictions/game={game}/dt=2025-04-14/_LATEST"),
               (publish, "glue:UpdatePartition", f"arn:aws:glue:{region}:{account}:table/ltv_{game.replace('-', '_')}/"
                                                 "latest_predictions"),
               (transform, "s3:GetObject", f"{artifacts}/pipelines/ltv-{game}-retrain/models/x/output/model.tar.gz"),
               (transform, "s3:PutObject", f"{curated}/predictions/game={game}/dt=2025-04-14/run=r/part-0.parquet.out")]
    for evaluator, action, resource in allowed:
        assert evaluator.allows(action, resource), (action, resource)
    denied = [(score, "s3:GetObject", f"{curated}/labels/cutoff=2025-04-14/part-0.parquet"),
              (score, "s3:PutObject", f"{curated}/features/cutoff=2025-04-14/_SUCCESS"),
              (score, "s3:DeleteObject", f"{curated}/features/cutoff=2025-04-14/part-0.parquet"),
              (score, "sagemaker:DescribeModelPackage", f"{sm}:model-package/ltv-another-game/7"),
              (score, "sagemaker:CreateTransformJob", f"{sm}:transform-job/someone-elses-job"),
              (score, "sagemaker:CreateModel", f"{sm}:model/anything"),
              (score, "sagemaker:DeleteModel", f"{sm}:model/ltv-{game}-v7"),
              (publish, "s3:PutObject", f"{curated}/features/cutoff=2025-04-14/_SUCCESS"),
              (publish, "glue:DeleteTable", f"arn:aws:glue:{region}:{account}:table/ltv_{game.replace('-', '_')}/predictions"),
              (publish, "glue:CreatePartition", f"arn:aws:glue:{region}:{account}:table/ltv_{game.replace('-', '_')}/features"),
              (transform, "s3:PutObject", f"{curated}/features/cutoff=2025-04-14/part-0.parquet"),
              (transform, "s3:GetObject", f"{curated}/player_day/dt=2025-04-14/part-0.parquet"),
              (publish, "glue:StartJobRun", f"{glue_arn}:job/ltv-{game}-cutoffs"),
              (publish, "s3:PutObject", f"{listed}/_NOTIFIED"),
              (lists, "s3:PutObject", f"{curated}/predictions/game={game}/dt=2025-04-14/_LATEST"),
              (lists, "s3:PutObject", f"{curated}/features/cutoff=2025-04-14/_SUCCESS"),
              (lists, "s3:DeleteObject", f"{listed}/part-0.parquet"),
              (lists, "glue:CreatePartition", f"{glue_arn}:table/{database}/predictions"),
              (lists, "glue:UpdatePartition", f"{glue_arn}:table/{database}/targets"),
              (lists, "glue:DeleteTable", f"{glue_arn}:table/{database}/targets"),
              (lists, "events:PutEvents", f"arn:aws:events:{region}:{account}:event-bus/another-bus")]
    for evaluator, action, resource in denied:
        assert not evaluator.allows(action, resource), (action, resource)
    # the one event, on the default bus, and nothing else in its name
    assert lists.allows("events:PutEvents", bus, context=ready)
    assert not lists.allows("events:PutEvents", bus, context={**ready, "events:detail-type": "Anything Else"})
    assert not lists.allows("events:PutEvents", bus, context={**ready, "events:source": "aws.glue"})
    job = props_named(tpl, "AWS::Glue::Job", "Name", f"ltv-{game}-targets")
    assert job["Command"]["ScriptLocation"].endswith(".py") and job["GlueVersion"] == "5.0"
    assert job["MaxRetries"] == config.stack.glue_max_retries, "idempotent: a failed run is retried"
    assert score.allows("iam:PassRole", f"arn:aws:iam::{account}:role/ltv-{game}-transform",
                        context={"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert not score.allows("iam:PassRole", f"arn:aws:iam::{account}:role/ltv-{game}-transform",
                            context={"iam:PassedToService": "lambda.amazonaws.com"})
    for st in identity_statements(tpl):
        for action in as_list(st["Action"]):
            assert "*" not in action, f"wildcard action {action}"
        if "*" in as_list(st["Resource"]):  # only what has no resource-level permissions, or is conditioned
            assert set(as_list(st["Action"])) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords",
                                                  "sagemaker:ListModelPackages", "ecr:GetAuthorizationToken",
                                                  "cloudwatch:PutMetricData"}, st
            if "cloudwatch:PutMetricData" in as_list(st["Action"]):
                assert st["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TransformJobs"}}


# ----------------------------------------------------------------------------------------------
# monitoring, alarms, topic, retraining (stacks/monitoring.py, stacks/alerting.py)


def alarms(tpl: Template) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["AlarmName"]: r["Properties"] for r in resources(tpl, "AWS::CloudWatch::Alarm").values()}


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_policy_alarms_have_the_configs_thresholds(app, games, game):
    from ltv.monitoring import alarm_threshold
    from stacks.monitoring import AWS_SIGNALS

    config = games[game]
    found = alarms(template(app, config, "Monitoring"))
    measured = [p for p in config.monitoring.policies if p.signal in AWS_SIGNALS]
    assert len(measured) == 4 < len(config.monitoring.policies), "validation failures alarm as failed Glue jobs"
    for policy in measured:
        alarm = found[f"ltv-{game}-policy-{policy.name.replace('_', '-')}"]
        assert alarm["Namespace"] == f"LTV/{game}" and alarm["MetricName"] == "PolicyValue"
        assert sorted((d["Name"], d["Value"]) for d in alarm["Dimensions"]) == [("Policy", policy.name),
                                                                               ("Signal", policy.signal)]
        assert alarm["Threshold"] == alarm_threshold(policy)
        assert alarm["ComparisonOperator"] == ("GreaterThanOrEqualToThreshold" if policy.signal == "feature_drift"
                                               else "GreaterThanThreshold")
        assert alarm["TreatMissingData"] == "ignore" and "AlarmActions" not in alarm
    drift = next(p for p in config.monitoring.policies if p.signal == "feature_drift")
    assert found[f"ltv-{game}-policy-feature-drift"]["Threshold"] == drift.min_features
    galaxy, dragon = games["galaxy-raiders"], games["dragon-merge"]
    assert alarm_threshold(galaxy.monitoring.policies[0]) != alarm_threshold(dragon.monitoring.policies[0]), \
        "the two configs differ here, so the test can tell where the threshold came from"


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_operational_alarms_watch_every_failure_and_notify_the_topic(app, games, game):
    config = games[game]
    found = alarms(template(app, config, "Monitoring"))
    expected = {  # name -> (namespace, metric, dimensions, notifies)
        "glue-job-failures": ("AWS/Events", "TriggeredRules", {"RuleName": f"ltv-{game}-etl-job-failed"}, False),
        "pipeline-failures": ("AWS/Events", "TriggeredRules", {"RuleName": f"ltv-{game}-pipeline-failed"}, False),
        "score-errors": ("AWS/Lambda", "Errors", {"FunctionName": f"ltv-{game}-score"}, True),
        "scoring-publish-errors": ("AWS/Lambda", "Errors", {"FunctionName": f"ltv-{game}-scoring-publish"}, True),
        "failed-events": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": f"ltv-{game}-failed-events"}, True),
        "no-approved-package": (f"LTV/{game}", "NoApprovedPackage", {"service": "scoring"}, True),
        "transform-failures": (f"LTV/{game}", "TransformJobsFailed", {"service": "scoring-publish"}, False),
        "missed-scoring-run": (f"LTV/{game}", "MissedScoringRuns", {}, True),
    }
    if config.alarms.webhook:
        expected["alerts-webhook-errors"] = ("AWS/Lambda", "Errors", {"FunctionName": f"ltv-{game}-alerts-webhook"}, True)
    for name, (namespace, metric, dims, notifies) in expected.items():
        alarm = found[f"ltv-{game}-{name}"]
        assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric), name
        assert {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])} == dims, name
        assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        if notifies:
            assert len(alarm["AlarmActions"]) == 1
            assert alarm["AlarmActions"][0]["Fn::GetStackOutput"]["StackName"] == f"Ltv-{Names.of(config).pascal}-Alerts"
        else:
            assert "AlarmActions" not in alarm, f"{name}: its event reaches the topic with the details"
    assert len(found) == len(expected) + 4
    docs = (PROJECT / "docs" / "operations.md").read_text()
    for name in found:
        assert name.replace(game, "<game>") in docs, f"docs/operations.md does not explain {name}"


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_a_retraining_policys_alarm_and_the_schedule_start_the_dataset_workflow(app, games, game):
    config = games[game]
    tpl = template(app, config, "Monitoring")
    dataset = f"arn:aws:glue:{config.aws.region}:{config.aws.account}:workflow/ltv-{game}-dataset"
    retraining = [p for p in config.monitoring.policies if p.retrain and p.signal != "validation_failure"]
    assert retraining, "both example games retrain on some policy"
    rule = props_named(tpl, "AWS::Events::Rule", "Name", f"ltv-{game}-retrain-on-alarm")
    ids = {r["Properties"]["AlarmName"]: k for k, r in resources(tpl, "AWS::CloudWatch::Alarm").items()}
    assert rule["EventPattern"] == {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
                                    "resources": [{"Fn::GetAtt": [ids[f"ltv-{game}-policy-{p.name.replace('_', '-')}"],
                                                                  "Arn"]} for p in retraining],
                                    "detail": {"state": {"value": ["ALARM"]}}}
    target, = rule["Targets"]
    assert target["Arn"] == dataset and target["RoleArn"]["Fn::GetStackOutput"]["StackName"].endswith("-Etl")
    schedule = props_named(template(app, config, "Etl"), "AWS::Events::Rule", "Name", f"ltv-{game}-retrain-schedule")
    assert schedule["ScheduleExpression"] == config.schedules.retrain and schedule["Targets"][0]["Arn"] == dataset
    trigger = props_named(tpl, "AWS::Glue::Trigger", "Name", f"ltv-{game}-monitor-start")
    assert trigger["Type"] == "SCHEDULED" and trigger["Schedule"] == config.schedules.monitoring
    job = props_named(tpl, "AWS::Glue::Job", "Name", f"ltv-{game}-monitor")
    assert trigger["Actions"] == [{"JobName": {"Ref": next(k for k, r in resources(tpl, "AWS::Glue::Job").items()
                                                            if r["Properties"]["Name"] == f"ltv-{game}-monitor")}}]
    assert job["MaxRetries"] == 0 and job["GlueVersion"] == "5.0"
    assert job["DefaultArguments"]["--topic_arn"]["Fn::GetStackOutput"]["StackName"].endswith("-Alerts")


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_model_approvals_and_pipeline_failures_reach_the_topic(app, games, game):
    config = games[game]
    tpl = template(app, config, "Monitoring")
    approval = props_named(tpl, "AWS::Events::Rule", "Name", f"ltv-{game}-model-approval")
    assert approval["EventPattern"] == {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
                                        "detail": {"ModelPackageGroupName": [f"ltv-{game}"],
                                                   "ModelApprovalStatus": ["Approved", "Rejected"]}}
    failed = props_named(tpl, "AWS::Events::Rule", "Name", f"ltv-{game}-pipeline-failed")
    assert failed["EventPattern"]["detail"] == {
        "pipelineArn": [f"arn:aws:sagemaker:{config.aws.region}:{config.aws.account}:pipeline/ltv-{game}-retrain"],
        "currentStepStatus": ["Failed"], "stepName": [{"anything-but": ["NotPromoted"]}]}, "not promoted is no failure"
    assert "$.detail.failureReason" in failed["Targets"][0]["InputTransformer"]["InputPathsMap"].values()
    policy, = [r["Properties"] for r in resources(template(app, config, "Alerts"), "AWS::SNS::TopicPolicy").values()]
    sources = {st["Sid"]: st["Condition"] for st in policy["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"}
    rule_arn = lambda name: f"arn:aws:events:{config.aws.region}:{config.aws.account}:rule/ltv-{game}-{name}"  # noqa: E731
    assert sources == {
        "GameAlarmsPublish": {"ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{config.aws.region}:{config.aws.account}"
                                                            f":alarm:ltv-{game}-*"},
                              "StringEquals": {"aws:SourceAccount": config.aws.account}},
        "EtlJobFailedRulePublishes": {"ArnEquals": {"aws:SourceArn": rule_arn("etl-job-failed")}},
        "ModelApprovalRulePublishes": {"ArnEquals": {"aws:SourceArn": rule_arn("model-approval")}},
        "PipelineFailedRulePublishes": {"ArnEquals": {"aws:SourceArn": rule_arn("pipeline-failed")}}}


def test_the_webhook_url_lives_in_secrets_manager_never_in_the_template(app, games):
    dragon, galaxy = games["dragon-merge"], games["galaxy-raiders"]
    assert dragon.alarms.webhook and dragon.alerts.webhook_url and not galaxy.alarms.webhook
    tpl = template(app, dragon, "Alerts")
    secret, = [r["Properties"] for r in resources(tpl, "AWS::SecretsManager::Secret").values()]
    assert secret["Name"] == "ltv/dragon-merge/alerts-webhook" and secret["SecretString"].startswith("not-set")
    assert dragon.alerts.webhook_url not in json.dumps(tpl.to_json()), "the config's (local) URL is not shipped"
    _, fn = function_named(tpl, "ltv-dragon-merge-alerts-webhook")
    assert fn["Environment"]["Variables"]["LTV_WEBHOOK_SECRET"] == "ltv/dragon-merge/alerts-webhook"
    assert not resources(template(app, galaxy, "Alerts"), "AWS::SecretsManager::Secret")
