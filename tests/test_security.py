"""The security model (docs/reliability.md), checked over every synthesized template of every
game at once, whatever stack a resource is in, so a resource added later (a Lambda, a queue, a
topic) is held to the same rules: IAM least privilege (no wildcard action on data, every role
scoped to its own game's resources, only AWS services may assume the roles), data at rest
encrypted with KMS (the game's key), TLS-only access, no public access, no secret in the code,
the configs, the templates or their assets, and log lines naming players by id only.
(Input paths that cannot leave their prefix: tests/test_catalogue.py and the raw writers'
bucket policy in tests/test_cdk.py.)"""
from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import GAMES, ROOT, make_config
from ltv import config as cfg
from stacks.names import Names

pytestmark = pytest.mark.slow

IDENTITY = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
RESOURCE_POLICIES = {"AWS::S3::BucketPolicy": "PolicyDocument", "AWS::SNS::TopicPolicy": "PolicyDocument",
                     "AWS::SQS::QueuePolicy": "PolicyDocument", "AWS::KMS::Key": "KeyPolicy"}
# actions IAM only grants on Resource "*" (no resource-level permission), each with why we need it
STAR_ONLY = {"ecr:GetAuthorizationToken": "log in to ECR to pull the game's image",
             "sagemaker:ListModelPackages": "find the champion (ListModelPackages has no resource ARN)",
             "cloudwatch:PutMetricData": "training, scoring and monitoring metrics, conditioned on their namespace",
             "xray:PutTraceSegments": "the Lambdas' traces (Powertools Tracer, active tracing)",
             "xray:PutTelemetryRecords": "the Lambdas' traces (Powertools Tracer, active tracing)"}
# services that hold game data at rest and the property that names their KMS key
ENCRYPTED = {"AWS::SNS::Topic": "KmsMasterKeyId", "AWS::SQS::Queue": "KmsMasterKeyId",
             "AWS::Logs::LogGroup": "KmsKeyId"}
SECRET_PATTERNS = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret access key": r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{40}\b",
    "private key": r"-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "Slack webhook": r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,}",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{36}\b",
    "credentials in a URL": r"https?://[^/\s:@'\"]+:[^/\s@'\"]+@",
}


@pytest.fixture(scope="module")
def cdk_out(example_app) -> Path:
    return Path(example_app.outdir)


@pytest.fixture(scope="module")
def templates(cdk_out) -> dict[str, dict[str, Any]]:
    return {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in sorted(cdk_out.glob("*.template.json"))}


@pytest.fixture(scope="module")
def games() -> dict[str, cfg.GameConfig]:
    return {p.stem: cfg.load(p) for p in sorted(GAMES.glob("*.yaml"))}


def game_of(stack: str, games: dict[str, cfg.GameConfig]) -> cfg.GameConfig:
    (config,) = [c for c in games.values() if stack.startswith(Names.of(c).stack(""))]
    return config


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r.get("Properties", {}) for k, r in template["Resources"].items() if r["Type"] == kind}


def identity_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    out = [st for kind in IDENTITY for p in resources(template, kind).values() for st in p["PolicyDocument"]["Statement"]]
    for role in resources(template, "AWS::IAM::Role").values():
        out += [st for policy in role.get("Policies", []) for st in policy["PolicyDocument"]["Statement"]]
    return out


def text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def flat(value: Any) -> str:
    """A resource as text, every reference to another resource written <ref>."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(flat(v) for v in value)
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(flat(p) for p in parts)
    return "<ref>"


def references(value: Any) -> list[tuple[str, Any]]:
    """The CloudFormation references inside a value: ("Ref"|"Fn::GetAtt"|..., argument)."""
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    if not isinstance(value, dict):
        return []
    found = [(k, v) for k, v in value.items() if k in ("Ref", "Fn::GetAtt", "Fn::ImportValue", "Fn::GetStackOutput")]
    return found + [r for v in value.values() for r in references(v)]


# ----------------------------------------------------------------------------------------------
# IAM


def test_no_statement_allows_a_wildcard_action(templates) -> None:
    """Identity and resource policies alike. One exception, AWS's default key policy: the account
    may administer its own key (`kms:*` to the account root), which delegates the key's use to
    the IAM policies checked here."""
    for stack, template in templates.items():
        statements = [("identity", st) for st in identity_statements(template)]
        for kind, prop in RESOURCE_POLICIES.items():
            statements += [(kind, st) for p in resources(template, kind).values() for st in p[prop]["Statement"]]
        for where, st in statements:
            if st["Effect"] != "Allow":
                continue
            wild = [a for a in as_list(st["Action"]) if "*" in a]
            if where == "AWS::KMS::Key" and wild == ["kms:*"]:
                assert re.fullmatch(r'\{"AWS": "arn:aws:iam::\d{12}:root"\}', text(st["Principal"])), (stack, st)
                continue
            assert not wild, f"{stack}: {where} statement {st.get('Sid')} allows {wild}"


def test_every_role_is_scoped_to_its_games_resources_and_assumed_by_aws_services_only(templates, games) -> None:
    for stack, template in templates.items():
        config = game_of(stack, games)
        names, others = Names.of(config), [Names.of(c) for c in games.values() if c.game.id != config.game.id]
        own_stacks = {t for t in templates if t.startswith(names.stack(""))}
        for st in identity_statements(template):
            for resource in as_list(st["Resource"]):
                if resource == "*":
                    assert set(as_list(st["Action"])) <= set(STAR_ONLY), f"{stack}: {st.get('Sid')} on '*'"
                    if "cloudwatch:PutMetricData" in as_list(st["Action"]):
                        assert "cloudwatch:namespace" in st.get("Condition", {}).get("StringEquals", {}), (stack, st)
                    continue
                literal = text(resource)
                for other in others:
                    assert other.prefix not in literal and other.database not in literal, (stack, st.get("Sid"))
                for kind, argument in references(resource):
                    if kind == "Fn::GetStackOutput":
                        assert argument["StackName"] in own_stacks, f"{stack}: {argument['StackName']} is another game's"
                    elif kind in ("Ref", "Fn::GetAtt"):
                        target = argument if isinstance(argument, str) else argument[0]
                        assert target.startswith("AWS::") or target in template["Resources"], (stack, target)
                arn = flat(resource)
                if "arn:" in arn:  # a literal ARN: one of the game's own names, or its account's CDK bootstrap
                    assert (names.prefix in arn or names.database in arn or arn.endswith(":catalog")
                            or "cdk-hnb659fds-" in arn and config.aws.account in arn
                            or f":log-group:/aws/lambda/{names.stack('')}" in arn  # CDK's own helper functions
                            or re.search(r":log-group:/aws/sagemaker/|:(training|processing)-job/pipelines-|"
                                         r":experiment-trial", arn)
                            # the account's default bus, for the game's own events only (their source)
                            or arn.endswith(f":{config.aws.account}:event-bus/default")
                            and "events:source" in st.get("Condition", {}).get("StringEquals", {})), \
                        f"{stack}: {st.get('Sid')}: {arn}"
        for role_id, role in resources(template, "AWS::IAM::Role").items():
            assert "ManagedPolicyArns" not in role, f"{stack}: {role_id} uses an AWS managed policy"
            for st in role["AssumeRolePolicyDocument"]["Statement"]:
                principal = st["Principal"]
                assert set(principal) == {"Service"} and all(str(s).endswith(".amazonaws.com")
                                                             for s in as_list(principal["Service"])), (stack, role_id)


# ----------------------------------------------------------------------------------------------
# encryption, TLS, public access


def test_data_at_rest_is_encrypted_with_the_games_kms_key(templates, games) -> None:
    """Buckets, topics, queues, log groups, the Athena results, the Glue jobs' outputs, logs and
    bookmarks, the SageMaker jobs' volumes and outputs: all with the game's key (rotated). The
    one exception: the bucket that receives S3 server access logs, which S3 can only deliver
    with S3-managed encryption (SSE-S3); it holds request logs, no game data."""
    for stack, template in templates.items():
        config = game_of(stack, games)
        for key in resources(template, "AWS::KMS::Key").values():
            assert key["EnableKeyRotation"] is True
        for bucket_id, bucket in resources(template, "AWS::S3::Bucket").items():
            rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
            if bucket["BucketName"] == Names.of(config).bucket("access-logs"):
                assert rule == {"SSEAlgorithm": "AES256"}
                assert not [b for b in resources(template, "AWS::S3::Bucket").values()
                            if b.get("LoggingConfiguration") is None and b is not bucket], "every other bucket logs"
                continue
            assert rule["SSEAlgorithm"] == "aws:kms" and "KMSMasterKeyID" in rule, f"{stack}: {bucket_id}"
        for kind, prop in ENCRYPTED.items():
            for resource_id, props in resources(template, kind).items():
                assert props.get(prop), f"{stack}: {kind} {resource_id} has no KMS key"
        for workgroup in resources(template, "AWS::Athena::WorkGroup").values():
            configuration = workgroup["WorkGroupConfiguration"]
            assert configuration["EnforceWorkGroupConfiguration"] is True
            assert configuration["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
        for job_id, job in resources(template, "AWS::Glue::Job").items():
            # the ETL jobs name their stack's configuration; the monitoring job the ETL stack's (an output)
            where, configuration_id = stack, job["SecurityConfiguration"].get("Ref")
            if configuration_id is None:
                output = job["SecurityConfiguration"]["Fn::GetStackOutput"]
                where = output["StackName"]
                assert where.startswith(Names.of(config).stack("")), f"{stack}: {job_id} uses another game's configuration"
                configuration_id = templates[where]["Outputs"][output["OutputName"]]["Value"]["Ref"]
            encryption = resources(templates[where], "AWS::Glue::SecurityConfiguration")[configuration_id]["EncryptionConfiguration"]
            assert encryption["S3Encryptions"][0]["S3EncryptionMode"] == "SSE-KMS"
            assert encryption["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
            assert encryption["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"
        for pipeline in resources(template, "AWS::SageMaker::Pipeline").values():
            body = json.loads(pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0])
            values = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][1]
            assert "Storage" in text(values["GameKeyArn"]), "the game's key, from its data-lake stack"
            jobs = [s for s in body["Steps"] if s["Type"] in ("Training", "Processing")]
            assert len(jobs) == 3
            for step in jobs:
                args = step["Arguments"]
                if step["Type"] == "Training":
                    volume, output = args["ResourceConfig"]["VolumeKmsKeyId"], args["OutputDataConfig"]["KmsKeyId"]
                else:
                    volume = args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"]
                    output = args["ProcessingOutputConfig"]["KmsKeyId"]
                assert volume == output == "${GameKeyArn}", step["Name"]


def test_data_moves_over_tls_only_and_nothing_is_public(templates) -> None:
    for stack, template in templates.items():
        policies = {p["Bucket"]["Ref"]: p["PolicyDocument"]["Statement"] for p in resources(template, "AWS::S3::BucketPolicy").values()}
        for bucket_id, bucket in resources(template, "AWS::S3::Bucket").items():
            assert bucket["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                                "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
            assert "AccessControl" not in bucket or bucket["AccessControl"] in ("Private", "LogDeliveryWrite")
            assert any(st["Effect"] == "Deny" and st["Action"] == "s3:*" and st["Condition"] == {"Bool": {
                "aws:SecureTransport": "false"}} for st in policies[bucket_id]), f"{stack}: {bucket_id} accepts plain HTTP"
        topic_policies = [p for p in resources(template, "AWS::SNS::TopicPolicy").values()]
        for topic_id in resources(template, "AWS::SNS::Topic"):
            statements = [st for p in topic_policies if {"Ref": topic_id} in p["Topics"] for st in p["PolicyDocument"]["Statement"]]
            assert any(st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
                       for st in statements), f"{stack}: topic {topic_id} accepts plain HTTP"
        for kind, prop in RESOURCE_POLICIES.items():
            for props in resources(template, kind).values():
                for st in props[prop]["Statement"]:
                    if st["Effect"] == "Allow":
                        assert text(st["Principal"]) not in ('"*"', '{"AWS": "*"}'), f"{stack}: public {kind}"
        for permission in resources(template, "AWS::Lambda::Permission").values():
            assert permission["Principal"] != "*" and ("SourceArn" in permission or "SourceAccount" in permission)


# ----------------------------------------------------------------------------------------------
# secrets


def scanned_files(cdk_out: Path) -> list[Path]:
    """The repository's tracked text files (code, configs, docs) and every synthesized template and asset."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = [ROOT / f for f in tracked if not f.startswith(("tests/vendor/", "tests/schemas/")) and (ROOT / f).is_file()]
    assets = [p for p in cdk_out.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml", ".py", ".txt", "")]
    published = third_party(cdk_out)
    return files + [p for p in assets if p not in published]


def third_party(cdk_out: Path) -> set[Path]:
    """The files of the published packages an asset bundles (the Lambdas' wheels, listed in their
    `*.dist-info/RECORD`): public code whose docs hold example URLs with a user and password, not
    ours to scan. The repository's own modules in an asset are copied sources, always scanned."""
    out = set()
    for record in cdk_out.rglob("*.dist-info/RECORD"):
        root = record.parent.parent
        out |= {root / line.split(",", 1)[0] for line in record.read_text().splitlines() if line}
    return out


def test_no_secret_in_the_code_the_configs_the_templates_or_their_assets(cdk_out, games) -> None:
    """Known credential shapes nowhere; and the configs' webhook URLs (a webhook URL lets anyone
    post to the channel) stay on the machine that synthesizes: not in a template, not in the
    config asset the jobs read (stacks/etl_jobs.SECRETS)."""
    webhooks = {c.alerts.webhook_url for c in games.values() if c.alerts.webhook_url}
    assert webhooks, "an example config has a webhook, so the check below can fail"
    found = []
    for path in scanned_files(cdk_out):
        try:
            content = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        found += [f"{path}: {name}" for name, pattern in SECRET_PATTERNS.items() if re.search(pattern, content)]
        if path.is_relative_to(cdk_out):
            found += [f"{path}: a config's webhook URL" for url in webhooks if url in content]
    assert not found, found
    assert any(re.search(SECRET_PATTERNS["Slack webhook"], s) for s in [
        "https://hooks.slack.com/services/" + "T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx"]), \
        "the patterns can match (the example is split so that this file does not match)"


def test_no_lambda_or_job_argument_carries_a_secret(templates) -> None:
    """No credential shape and no webhook URL in a Lambda's environment or a job's arguments; a
    function may name the Secrets Manager secret that holds one (it reads the value at run time)."""
    secrets = {p["Name"] for t in templates.values() for p in resources(t, "AWS::SecretsManager::Secret").values()}
    assert secrets, "an example game has a webhook secret"
    for stack, template in templates.items():
        values = [v for f in resources(template, "AWS::Lambda::Function").values()
                  for v in (f.get("Environment") or {}).get("Variables", {}).values()]
        values += [v for j in resources(template, "AWS::Glue::Job").values() for v in j.get("DefaultArguments", {}).values()]
        for value in values:
            for name, pattern in SECRET_PATTERNS.items():
                assert not re.search(pattern, text(value)), f"{stack}: {name} in {value}"
            # a URL would be the secret itself: the webhook's is read from the secret at run time
            assert not re.search(r"https?://", text(value)) and "hooks." not in text(value), (stack, value)
        names = {v for f in resources(template, "AWS::Lambda::Function").values()
                 for k, v in (f.get("Environment") or {}).get("Variables", {}).items() if "SECRET" in k}
        assert names <= secrets, f"{stack}: a function names a secret the stacks do not create: {names - secrets}"


# ----------------------------------------------------------------------------------------------
# log lines


def test_log_lines_name_players_by_id_only(tmp_path, caplog) -> None:
    """A day whose rows break several checks, through the Glue validate job (its log and the error
    Glue mails) and `ltv features daily`: the offending players are named, their amounts, times,
    levels and attributes are not (they are in the validation report, in the encrypted lake)."""
    from glue_jobs import validate
    from handmade import event, write_lake
    from ltv.errors import DataValidationError
    from ltv_cli import ltv
    from test_catalogue import write_yaml

    config = make_config()
    events = [event("p-1", "2025-03-01 10:00", "login"), event("p-1", "2025-03-02 10:00", "login"),
              event("whale-77", "2025-03-02 10:07:31", "purchase", 4321.987, level=9317),
              event("p-2", "2025-03-02 11:13:52", "session", seconds=-8625.5, level=6143)]
    write_lake(tmp_path / "lake", config, events, {"p-1": "2025-03-01 09:00", "whale-77": "2025-03-01 09:00",
                                                   "p-2": "2025-03-01 09:00"})
    private = ("4321", "8625", "10:07", "11:13", "9317", "6143")
    config_file = write_yaml(json.loads(json.dumps(config.model_dump(mode="json"))), tmp_path / "galaxy-raiders.yaml")
    caplog.set_level(logging.INFO)
    with pytest.raises(DataValidationError) as failure:
        validate.main(["--game", "galaxy-raiders", "--config", str(config_file), "--engine", "duckdb",
                       "--lake", str(tmp_path / "lake"), "--date", "2025-03-02"])
    code, output = ltv("features", "daily", "--game", str(config_file), "--lake", str(tmp_path / "lake"),
                       "--date", "2025-03-02")
    lines = [str(failure.value), output, *(r.getMessage() for r in caplog.records)]
    assert code == 2 and "revenue_range" in output and "negative_values" in output
    for line in lines:
        assert "whale-77" in line or "p-2" in line or "revenue_range" not in line
        leaked = [v for v in private if v in line]
        assert not leaked, f"{leaked} in a log line: {line}"
    report = json.loads((tmp_path / "lake" / "galaxy-raiders" / "monitoring" / "validation" / "dt=2025-03-02.json")
                        .read_text())
    assert "4321.987" in json.dumps(report), "the rows themselves are in the report"
