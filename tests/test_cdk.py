"""The CDK app, synthesised offline: every resource of a game's account and its key properties.

One synthesis per module (jsii start-up is slow): both example games through `build_app`, so
cdk-nag (AWS Solutions) runs on it exactly as in `cdk synth`. Assertions use `Template` with
`Match.object_like`, never hashed logical ids.
"""
from __future__ import annotations

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

from ltv import config as cfg  # noqa: E402
from ltv.athena import table_specs  # noqa: E402
from ltv.errors import ConfigError  # noqa: E402
from stacks.game import build_app, select_configs  # noqa: E402
from stacks.names import Names  # noqa: E402
from stacks.packaging import GLUE_JOB_DEPENDENCIES, job_requirements  # noqa: E402

GIB = 1024 ** 3
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
def app(games, tmp_path_factory) -> App:
    return synth(list(games.values()), tmp_path_factory.mktemp("cdk") / "cdk.out")


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


def test_every_game_config_synthesises_into_its_own_account(app, games):
    assert {"galaxy-raiders", "dragon-merge"} <= set(games)
    for config in games.values():
        for concern in ("DataLake", "Etl", "Ml"):
            st = stack(app, config, concern)
            assert st.stack_name == f"Ltv-{Names.of(config).pascal}-{concern}"
            assert (st.account, st.region) == (config.aws.account, config.aws.region)
            assert st.tags.tag_values()["ltv:game"] == config.game.id
    assert stack(app, games["galaxy-raiders"], "Etl").dependencies == [stack(app, games["galaxy-raiders"], "DataLake")]


def test_game_context_selects_one_config_and_no_context_selects_all():
    assert [c.game.id for c in select_configs("dragon-merge")] == ["dragon-merge"]
    assert sorted(c.game.id for c in select_configs(None)) == sorted(p.stem for p in GAMES.glob("*.yaml"))
    with pytest.raises(ConfigError, match="no such game config"):
        select_configs("space-golf")


def test_stack_tags_come_from_the_config(app, games):
    tpl = template(app, games["galaxy-raiders"], "DataLake")
    tpl.has_resource_properties("AWS::S3::Bucket", Match.object_like({
        "BucketName": "ltv-galaxy-raiders-raw-111111111111",
        "Tags": Match.array_with([{"Key": "team", "Value": "analytics"}])}))


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
                                                  "Description": Match.any_value(), "Tags": Match.any_value()})
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
    tables = {r["Properties"]["TableInput"]["Name"]: r["Properties"] for r in resources(tpl, "AWS::Glue::Table").values()}
    ev, pl = config.logs.events, config.logs.players
    assert set(tables) == {ev.table, pl.table, "player_day", "features", "labels", "datasets", "predictions"}
    ident = "string" if config.logs.player_id_type == "string" else "bigint"
    raw_columns = {c["Name"]: c["Type"] for c in tables[ev.table]["TableInput"]["StorageDescriptor"]["Columns"]}
    assert raw_columns[ev.columns.player_id.lower()] == ident
    assert raw_columns[ev.columns.event_time.lower()] == "timestamp"
    assert raw_columns[ev.columns.revenue.lower()] == "double"
    if ev.columns.currency:
        assert raw_columns[ev.columns.currency.lower()] == "string"
    player_attrs = {c["Name"] for c in tables[pl.table]["TableInput"]["StorageDescriptor"]["Columns"]}
    assert {a.lower() for a in pl.attributes.values()} <= player_attrs
    for name, key in {ev.table: "dt", pl.table: "dt", "player_day": "dt", "features": "cutoff", "labels": "cutoff"}.items():
        table_input = tables[name]["TableInput"]
        assert table_input["PartitionKeys"] == [{"Name": key, "Type": "string"}]
        assert {"projection.enabled": "true", f"projection.{key}.type": "date",
                f"projection.{key}.format": "yyyy-MM-dd",
                f"projection.{key}.range": "2015-01-01,NOW"}.items() <= table_input["Parameters"].items()
        assert table_input["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    datasets = tables["datasets"]["TableInput"]["Parameters"]
    assert datasets["projection.version.type"] == "injected"
    assert datasets["projection.split.values"] == "train,validation,test"
    assert datasets["storage.location.template"]["Fn::Join"][1][-1] == "/datasets/${version}/split=${split}/"
    feature_columns = [c["Name"] for c in tables["features"]["TableInput"]["StorageDescriptor"]["Columns"]]
    assert feature_columns == [c for c, _ in table_specs(config)["features"].columns]
    assert f"revenue_w{config.features.n_steps}" in feature_columns and "cutoff" not in feature_columns


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_athena_workgroup_is_v3_enforced_encrypted_with_the_configured_scan_cutoff(app, games, game):
    config = games[game]
    tpl = template(app, config, "DataLake")
    key_id = next(iter(resources(tpl, "AWS::KMS::Key")))
    tpl.has_resource_properties("AWS::Athena::WorkGroup", {
        "Name": f"ltv-{game}", "State": "ENABLED", "Description": Match.any_value(), "Tags": Match.any_value(),
        "RecursiveDeleteOption": False,
        "WorkGroupConfiguration": {
            "EnforceWorkGroupConfiguration": True, "PublishCloudWatchMetricsEnabled": True,
            "BytesScannedCutoffPerQuery": config.stack.athena_bytes_scanned_cutoff_gb * GIB,
            "EngineVersion": {"SelectedEngineVersion": "Athena engine version 3"},
            "ResultConfiguration": {
                "OutputLocation": Match.any_value(),
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
        assert props["Timeout"] == config.stack.glue_timeout_minutes
        assert props["MaxRetries"] == config.stack.glue_max_retries
        assert props["ExecutionProperty"] == {"MaxConcurrentRuns": config.stack.glue_max_concurrency}
        assert "Ref" in props["SecurityConfiguration"]
        args = props["DefaultArguments"]
        assert args["--game"] == game and args["--database"] == "ltv_" + game.replace("-", "_")
        assert args["--workgroup"] == f"ltv-{game}"
        assert args["--config"].startswith("s3://cdk-") and args["--config"].endswith(".yaml")
        common, core = args["--extra-py-files"].split(",")
        assert common.endswith(".py") and core.endswith(".zip")
        assert args["--additional-python-modules"] == ",".join(job_requirements())
        assert args["--continuous-log-logGroup"] == f"/aws-glue/jobs/ltv-{game}"
        scripts[name] = props["Command"]["ScriptLocation"]
    assert len(set(scripts.values())) == 4
    assert jobs[f"ltv-{game}-dataset"]["DefaultArguments"]["--version"] == "rolling"


def test_job_dependencies_are_pinned_to_the_tested_versions():
    from importlib.metadata import version

    pins = dict(p.split("==") for p in job_requirements())
    assert set(pins) == set(GLUE_JOB_DEPENDENCIES)
    assert all(pins[name] == version(name) for name in pins)


def test_the_jobs_receive_exactly_the_validated_config(app, games):
    """The --config asset is the synthesised config: loading it gives back an equal GameConfig."""
    outdir = Path(app.outdir)
    for game, config in games.items():
        uri = job_props(template(app, config, "Etl"))[f"ltv-{game}-validate"]["DefaultArguments"]["--config"]
        asset = outdir / f"asset.{uri.rsplit('/', 1)[1]}"
        assert cfg.load(asset) == config


def test_glue_security_configuration_and_logs_use_the_game_key(app, games):
    config = games["dragon-merge"]
    tpl = template(app, config, "Etl")
    key_arn = Match.object_like({"Fn::ImportValue": Match.string_like_regexp("StorageKey")})
    tpl.has_resource_properties("AWS::Glue::SecurityConfiguration", {"Name": "ltv-dragon-merge-etl", "EncryptionConfiguration": {
        "CloudWatchEncryption": {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": key_arn},
        "JobBookmarksEncryption": {"JobBookmarksEncryptionMode": "CSE-KMS", "KmsKeyArn": key_arn},
        "S3Encryptions": [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": key_arn}]}})
    tpl.has_resource_properties("AWS::Logs::LogGroup", {"LogGroupName": "/aws-glue/jobs/ltv-dragon-merge",
                                                        "RetentionInDays": 180, "KmsKeyId": key_arn,
                                                        "Tags": Match.any_value()})


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
    dataset = triggers[f"ltv-{game}-dataset-start"]
    assert dataset["Schedule"] == config.schedules.retrain
    assert dataset["Actions"] == [{"JobName": {"Ref": jobs[f"ltv-{game}-dataset"]}}]
    assert config.schedules.daily_etl != games["galaxy-raiders" if game == "dragon-merge" else "dragon-merge"].schedules.daily_etl


def test_failed_jobs_publish_to_the_encrypted_failure_topic(app, games):
    tpl = template(app, games["galaxy-raiders"], "Etl")
    topic_id = next(iter(resources(tpl, "AWS::SNS::Topic")))
    tpl.has_resource_properties("AWS::SNS::Topic", Match.object_like({
        "TopicName": "ltv-galaxy-raiders-etl-failures",
        "KmsMasterKeyId": Match.object_like({"Fn::ImportValue": Match.any_value()})}))
    rule = next(iter(resources(tpl, "AWS::Events::Rule").values()))["Properties"]
    assert rule["EventPattern"] == {"source": ["aws.glue"], "detail-type": ["Glue Job State Change"], "detail": {
        "jobName": [f"ltv-galaxy-raiders-{j}" for j in ("validate", "player-day", "cutoffs", "dataset")],
        "state": ["FAILED", "TIMEOUT", "ERROR", "STOPPED"]}}
    assert rule["Targets"] == [{"Id": "EtlFailureTopic", "Arn": {"Ref": topic_id}}]
    tpl.has_resource_properties("AWS::SNS::TopicPolicy", {"Topics": [{"Ref": topic_id}], "PolicyDocument": {
        "Version": "2012-10-17", "Statement": Match.array_with([Match.object_like({
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish",
            "Condition": {"ArnEquals": {"aws:SourceArn": Match.any_value()}}})])}})
    lake = template(app, games["galaxy-raiders"], "DataLake")
    lake.has_resource_properties("AWS::KMS::Key", Match.object_like({"KeyPolicy": {"Version": "2012-10-17", "Statement": Match.array_with([{
        "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*"}])}}))


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
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return value["Fn::Join"][0].join(flat(v) for v in value["Fn::Join"][1])
    if "Ref" in value:
        return f"<{value['Ref']}>"
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
        f"arn:<AWS::Partition>:logs:{region}:{account}:log-group:/aws-glue/")
    for st in statements:
        assert st["Effect"] == "Allow"
        for action in as_list(st["Action"]):
            assert "*" not in action, f"wildcard action {action}"
        for resource in as_list(st["Resource"]):
            text = flat(resource)
            assert text != "*", f"{st['Sid']}: Resource '*'"
            if text.startswith("<"):  # another stack's export: one of the game's buckets or its key
                assert "Storage" in text, text
                continue
            assert text.startswith(allowed_prefixes), f"{st['Sid']}: {text} is not one of the game's resources"
            if "cdk-hnb659fds-assets" in text:
                assert "*" not in text, "job code: exact asset objects only"
            if ":glue:" in text:
                assert text.split(":glue:", 1)[1].split(":", 2)[2].split("/")[0] in ("catalog", "database", "table", "workflow")
                assert "*" not in text and ("ltv_" + game.replace("-", "_") in text or "ltv-" + game in text
                                            or text.endswith(":catalog"))
    actions = {a for st in statements for a in as_list(st["Action"])}
    assert not {a for a in actions if a.startswith("glue:") and ("Delete" in a or "Update" in a or "Create" in a
                                                                 and a != "glue:BatchCreatePartition")}
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
    assert rules == {"AwsSolutions-S1", "AwsSolutions-IAM5"}, rules


def test_cdk_nag_fails_the_synthesis_of_a_non_compliant_resource(tmp_path):
    app = build_app(core_wheel=placeholder_wheel(tmp_path), configs=[], outdir=str(tmp_path / "out"))
    s3.Bucket(Stack(app, "Careless"), "Open")  # no encryption key, no TLS policy, no access logs
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*AwsSolutions-S10"):
        app.synth()


def test_cfn_lint_reports_nothing_on_any_template(app, games):
    """No error, and no warning either (cfn-lint exits non-zero on warnings too)."""
    from cfnlint.api import ManualArgs, lint_file

    templates = sorted(Path(app.outdir).glob("*.template.json"))
    assert len(templates) == 3 * len(games)
    for config in games.values():
        for concern in ("DataLake", "Etl", "Ml"):
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
