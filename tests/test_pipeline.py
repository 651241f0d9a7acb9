"""The retraining pipeline as synthesized: its DAG, its definition against AWS's published schema,
the ML stack's image, roles, trigger and tags, and the pipeline created in moto from the template.

One synthesis of both example games per test process (jsii start-up and the SDK are slow:
conftest's `example_app`, shared with the CDK and security tests), through `build_app`, so
cdk-nag runs as in `cdk synth`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from test_cdk import GAMES, ROOT, as_list, flat, identity_statements, resources, stack, template  # noqa: I001

sys.path.append(str(ROOT))
from stacks.etl_jobs import SECRETS  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from conftest import make_config  # noqa: E402
from ltv import config as cfg  # noqa: E402
from ltv.promotion import APPROVED, PENDING  # noqa: E402
from ltv.sagemaker_registry import METADATA  # noqa: E402
from pipelines import retrain  # noqa: E402
from stacks.ml import INLINE_LIMIT, PLACEHOLDERS, sub_body  # noqa: E402
from stacks.names import Names  # noqa: E402

TOP_LEVEL = ["ResolveDataset", "Train", "Evaluate", "PromotionDecision"]
EDGES = {("ResolveDataset", "Train"), ("ResolveDataset", "Evaluate"), ("Train", "Evaluate"),
         ("Evaluate", "PromotionDecision"), ("Train", "Register-RegisterModel"),
         ("Evaluate", "Register-RegisterModel"), ("Evaluate", "NotPromoted")}
# What AWS's published schema (it predates them) rejects although the SageMaker API documents it.
# Reported to the maintainers of ../shared/tools/validate_pipeline_definition.py; anything else fails.
KNOWN_SCHEMA_GAPS = {
    r"Steps/\d+/Arguments/ProcessingOutputConfig/Outputs/0/S3Output/S3Uri: \{'Std:Join'.* is not of type 'string'":
        "Std:Join (defined by the schema, referenced nowhere): each execution writes under its own execution id",
    r"IfSteps/0/Arguments/ModelMetrics/ModelQuality/Statistics/S3Uri: \{'Std:Join'.* is not of type 'string'":
        "the same Join: the registered package points at its own execution's evaluation.json",
    r"IfSteps/0/Arguments: Additional properties are not allowed \('CustomerMetadataProperties' was unexpected\)":
        "CreateModelPackage's CustomerMetadataProperties (2022): the package's lineage",
    r"IfSteps/0/Arguments/InferenceSpecification/Containers/0: Additional properties are not allowed "
    r"\('Environment' was unexpected\)": "ModelPackageContainerDefinition.Environment, which the SDK always emits",
}


@pytest.fixture(scope="module")
def games() -> dict[str, cfg.GameConfig]:
    return {p.stem: cfg.load(p) for p in sorted(GAMES.glob("*.yaml"))}


@pytest.fixture(scope="module")
def app(example_app):
    return example_app


def pipeline_resource(app, config) -> dict[str, Any]:
    (resource,) = resources(template(app, config, "Ml"), "AWS::SageMaker::Pipeline").values()
    return resource["Properties"]


def definition_of(app, config) -> dict[str, Any]:
    """The synthesized definition with each ${Name} (a CloudFormation reference) left in place."""
    text, _ = pipeline_resource(app, config)["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    return json.loads(text)


def steps_of(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for step in definition["Steps"]:
        out[step["Name"]] = step
        for branch in ("IfSteps", "ElseSteps"):
            out |= {s["Name"]: s for s in step["Arguments"].get(branch, [])}
    return out


def references(node: Any) -> set[str]:
    """Names of the steps a part of the definition reads from (Get Steps.<name>...)."""
    if isinstance(node, dict):
        found = {node["Get"].split(".")[1]} if isinstance(node.get("Get"), str) and node["Get"].startswith("Steps.") else set()
        return found.union(*(references(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(references(v) for v in node)) if node else set()
    return set()


# ----------------------------------------------------------------------------------------------
# the definition


def shared_tool():
    """../shared/tools/validate_pipeline_definition.py when it is beside the repository, else the
    copy in tests/vendor (with the schema in tests/schemas), so a clean clone checks it too."""
    candidates = [base / "tools" / "validate_pipeline_definition.py" for base in (ROOT.parent / "shared", Path("/work/shared"))]
    path = next((p for p in candidates if p.exists()), Path(__file__).parent / "vendor" / "validate_pipeline_definition.py")
    spec = importlib.util.spec_from_file_location("validate_pipeline_definition", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_games_definition_validates_against_the_published_schema(app, games) -> None:
    tool = shared_tool()
    checked, gaps_seen = 0, set()
    for config in games.values():
        path = Path(app.outdir) / f"{Names.of(config).stack('Ml')}.template.json"
        for label, document in tool.definitions_in(path):
            checked += 1
            for problem in tool.validate(document):
                known = [gap for gap in KNOWN_SCHEMA_GAPS if re.search(gap, problem)]
                assert known, f"{label}: {problem}"
                gaps_seen.update(known)
    assert checked == len(games)
    assert gaps_seen == set(KNOWN_SCHEMA_GAPS), "a gap no longer occurs: drop it from KNOWN_SCHEMA_GAPS"


def test_the_dag_register_only_through_the_conditions_true_branch(app, games) -> None:
    definition = definition_of(app, games["galaxy-raiders"])
    assert [s["Name"] for s in definition["Steps"]] == TOP_LEVEL, "Register and the FailStep are only in branches"
    steps = steps_of(definition)
    own = lambda step: {k: v for k, v in step["Arguments"].items() if k not in ("IfSteps", "ElseSteps")}  # noqa: E731
    edges = {(source, name) for name, step in steps.items() for source in references(own(step))}
    assert edges == EDGES
    condition = steps["PromotionDecision"]["Arguments"]
    assert [s["Name"] for s in condition["IfSteps"]] == ["Register-RegisterModel"]
    assert [s["Name"] for s in condition["ElseSteps"]] == ["NotPromoted"]
    assert steps["Register-RegisterModel"]["Type"] == "RegisterModel" and steps["NotPromoted"]["Type"] == "Fail"
    for name, step in steps.items():
        assert re.fullmatch(r"[A-Za-z0-9\-_]{1,64}", step.get("DisplayName", "")), name
        assert len(step.get("Description", "")) > 20, name


def test_every_join_is_flat_as_the_sdk_emits_it(app, games) -> None:
    """A Std:Join among another's values is a shape SageMaker does not document (the SDK never
    builds one): every URI of an execution is one Join of the prefix, the execution id and names."""
    def joins(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if "Std:Join" in node:
                yield node["Std:Join"]
            for value in node.values():
                yield from joins(value)
        elif isinstance(node, list):
            for value in node:
                yield from joins(value)

    for config in games.values():
        found = list(joins(definition_of(app, config)))
        assert len(found) >= 3, "the dataset and evaluation outputs and the metrics URI are Joins"
        nested = [j for j in found if any(isinstance(v, dict) and "Std:Join" in v for v in j["Values"])]
        assert not nested, nested


def test_the_condition_reads_the_promotion_rule_from_evaluation_json(app, games) -> None:
    steps = steps_of(definition_of(app, games["dragon-merge"]))
    (property_file,) = steps["Evaluate"]["PropertyFiles"]
    assert property_file == {"PropertyFileName": "Evaluation", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    (output,) = steps["Evaluate"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "evaluation" and output["S3Output"]["LocalPath"] == "/opt/ml/processing/evaluation"
    json_get = lambda path: {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.Evaluation"},  # noqa: E731
                                             "Path": path}}
    assert steps["PromotionDecision"]["Arguments"]["Conditions"] == [
        {"Type": "Equals", "LeftValue": json_get("promotion.promote"), "RightValue": 1}]
    assert steps["NotPromoted"]["Arguments"]["ErrorMessage"] == json_get("promotion.reason")
    register = steps["Register-RegisterModel"]["Arguments"]
    metrics_uri = register["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]["Std:Join"]
    assert metrics_uri == {"On": "/", "Values": [*output["S3Output"]["S3Uri"]["Std:Join"]["Values"], "evaluation.json"]}, \
        "the package points at its own evaluation"
    assert register["CustomerMetadataProperties"] == {
        **{key: json_get(f"registration.{field}") for field, key in METADATA.items() if field != "status"},
        METADATA["status"]: {"Get": "Parameters.ModelApprovalStatus"}}
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert register["ModelPackageGroupName"] == "ltv-dragon-merge"
    (container,) = register["InferenceSpecification"]["Containers"]
    assert container["Image"] == "${ImageUri}" and container["ModelDataUrl"] == {
        "Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert register["InferenceSpecification"]["SupportedTransformInstanceTypes"] == ["ml.m5.2xlarge", "ml.m5.4xlarge"]


def test_parameters_and_job_settings_come_from_the_config(app, games) -> None:
    for game, approval in (("galaxy-raiders", APPROVED), ("dragon-merge", PENDING)):
        config = games[game]
        definition = definition_of(app, config)
        defaults = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
        sm = config.sagemaker
        assert defaults == {
            "DatasetVersion": "rolling", "ModelBudget": "config", "ModelApprovalStatus": approval,
            "TrainInstanceType": sm.training.instance_type, "TrainInstanceCount": 1,
            "TrainMaxRuntimeSeconds": sm.training.max_runtime_minutes * 60,
            "EvaluateInstanceType": sm.evaluation.instance_type, "EvaluateInstanceCount": 1,
            "EvaluateMaxRuntimeSeconds": sm.evaluation.max_runtime_minutes * 60}
        train = steps_of(definition)["Train"]["Arguments"]
        assert train["ResourceConfig"] == {"VolumeSizeInGB": sm.training.volume_gb,
                                           "InstanceCount": {"Get": "Parameters.TrainInstanceCount"},
                                           "InstanceType": {"Get": "Parameters.TrainInstanceType"},
                                           "VolumeKmsKeyId": "${GameKeyArn}"}
        assert train["HyperParameters"]["game"] == game and train["AlgorithmSpecification"]["TrainingImage"] == "${ImageUri}"
        assert [m["Name"] for m in train["AlgorithmSpecification"]["MetricDefinitions"]] == [
            "validation:normalized_gini", "validation:payer_f1", "validation:purchase_day_mae"]
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in train["InputDataConfig"]}
        assert channels == {"dataset": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.ResolveDataset.PropertyFiles.Dataset"},
                                                        "Path": "uri"}}, "config": "${ConfigUri}"}
        assert definition["PipelineExperimentConfig"] == {"ExperimentName": {"Get": "Execution.PipelineName"},
                                                          "TrialName": {"Get": "Execution.PipelineExecutionId"}}
    assert games["dragon-merge"].sagemaker.training.instance_type == "ml.m5.4xlarge"


def test_every_step_runs_the_games_image_with_its_role(app, games) -> None:
    steps = steps_of(definition_of(app, games["galaxy-raiders"]))
    for name in ("ResolveDataset", "Evaluate"):
        spec = steps[name]["Arguments"]["AppSpecification"]
        assert spec["ImageUri"] == "${ImageUri}" and spec["ContainerEntrypoint"][:3] == ["python", "-m", "pipelines"]
        assert steps[name]["Arguments"]["RoleArn"] == "${JobsRoleArn}"
    assert steps["Train"]["Arguments"]["RoleArn"] == "${JobsRoleArn}"
    assert steps["Evaluate"]["Arguments"]["AppSpecification"]["ContainerEntrypoint"][3] == "evaluate"
    assert "--region" in steps["Evaluate"]["Arguments"]["AppSpecification"]["ContainerArguments"]


def test_locations_reach_the_definition_as_cloudformation_references(app, games) -> None:
    for config in games.values():
        text, values = pipeline_resource(app, config)["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        assert set(re.findall(r"\$\{([^}!]+)\}", text)) == set(PLACEHOLDERS) == set(values)
        assert not any(placeholder in text for placeholder in PLACEHOLDERS.values())
        assert "cdk-hnb659fds-container-assets" in values["ImageUri"]["Fn::Sub"]
        assert values["JobsRoleArn"]["Fn::GetAtt"][1] == "Arn"
        assert "StorageCurated" in other_stack_output(values["CuratedBucket"])
        assert "StorageArtifacts" in other_stack_output(values["ArtifactsBucket"])
        asset = Path(app.outdir) / f"asset.{values['ConfigUri'].rsplit('/', 1)[1]}"
        shipped = cfg.load(asset)
        assert shipped.model_dump(exclude=SECRETS) == config.model_dump(exclude=SECRETS), \
            "the jobs read exactly the synthesized config"
        assert shipped.alerts.webhook_url is None, "less its secrets (stacks/etl_jobs.SECRETS)"


def test_the_definition_is_far_below_the_inline_limit(app, games) -> None:
    for config in games.values():
        size = len(pipeline_resource(app, config)["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0])
        print(f"{config.game.id}: definition {size:,} characters = {size / INLINE_LIMIT:.1%} of the inline limit "
              f"({INLINE_LIMIT:,}; CreatePipeline allows 1,048,576)")
        assert size < 0.05 * INLINE_LIMIT
    with pytest.raises(ValueError, match="PipelineDefinitionS3Location"):
        sub_body({"Steps": [{"Arguments": {"x": "y" * INLINE_LIMIT, **{k: v for k, v in PLACEHOLDERS.items()}}}]}, {})


def test_sub_body_keeps_literal_dollar_braces_literal() -> None:
    from aws_cdk import Stack

    body = {"Steps": [{"Name": "a", "Arguments": {"text": "price ${x}", **PLACEHOLDERS}}]}
    resolved = Stack().resolve(sub_body(body, {k: k.lower() for k in PLACEHOLDERS}))
    text = resolved["Fn::Sub"][0]
    assert "price ${!x}" in text and "${ImageUri}" in text


def test_the_definition_is_built_offline(monkeypatch) -> None:
    """No network (no STS, IAM, S3 or telemetry call) while the SDK builds the definition."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access while building the pipeline: {args}")

    import boto3

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # no session with credentials from earlier tests
    where = retrain.Locations(*PLACEHOLDERS.values())
    config = make_config("galaxy-raiders", sagemaker={"training": {"instance_type": "ml.c5.9xlarge"}})
    definition = retrain.definition(config, where, version="0.1.0+gabc")
    defaults = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    assert defaults["TrainInstanceType"] == "ml.c5.9xlarge", "a config change is a definition change"
    assert steps_of(definition)["Train"]["Arguments"]["HyperParameters"]["code_version"] == "0.1.0+gabc"


# ----------------------------------------------------------------------------------------------
# the stack


def test_the_image_is_built_at_deploy_from_the_staged_context(app, games) -> None:
    manifest = json.loads((Path(app.outdir) / f"{Names.of(games['galaxy-raiders']).stack('Ml')}.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    source = image["source"]
    assert source["platform"] == "linux/amd64" and source["dockerBuildArgs"]["CORE_WHEEL"].startswith("wheel/")
    context = Path(app.outdir) / source["directory"]
    text = re.sub(r"\\\n\s*", " ", (context / "Dockerfile").read_text())
    for line in text.splitlines():
        if line.startswith("COPY "):
            assert (context / line.split()[1].replace("${CORE_WHEEL}", source["dockerBuildArgs"]["CORE_WHEEL"])).exists()
    files = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}
    assert files == {"Dockerfile", "requirements/image.txt", source["dockerBuildArgs"]["CORE_WHEEL"],
                     *(f"pipelines/{p.name}" for p in (ROOT / "pipelines").glob("*.py"))}
    assert (context / "Dockerfile").read_text() == (ROOT / "Dockerfile").read_text()


def test_model_package_group_pipeline_and_tags(app, games) -> None:
    config = games["galaxy-raiders"]
    tpl = template(app, config, "Ml")
    tags = [{"Key": "ltv:game", "Value": "galaxy-raiders"}, {"Key": "team", "Value": "analytics"}]
    tpl.resource_count_is("AWS::SageMaker::ModelPackageGroup", 1)
    from aws_cdk.assertions import Match

    tpl.has_resource_properties("AWS::SageMaker::ModelPackageGroup", {
        "ModelPackageGroupName": "ltv-galaxy-raiders", "ModelPackageGroupDescription": Match.any_value()})
    tpl.has_resource_properties("AWS::SageMaker::Pipeline", Match.object_like({
        "PipelineName": "ltv-galaxy-raiders-retrain", "PipelineDisplayName": "ltv-galaxy-raiders-retrain",
        "RoleArn": {"Fn::GetAtt": [Match.string_like_regexp("PipelineRole"), "Arn"]}}))
    # stack tags (cdk.json's `@aws-cdk/core:explicitStackTags`): CloudFormation puts them on the group and the pipeline
    stack_tags = stack(app, config, "Ml").tags.tag_values()
    assert {t["Key"]: t["Value"] for t in tags}.items() <= stack_tags.items()
    # the Etl stack publishes the config object the pipeline's jobs read (one asset per game)
    assert set(stack(app, config, "Ml").dependencies) == {stack(app, config, "DataLake"), stack(app, config, "Etl")}


def test_the_pipeline_starts_after_the_dataset_job_succeeds(app, games) -> None:
    config = games["dragon-merge"]
    tpl = template(app, config, "Ml")
    (rule,) = resources(tpl, "AWS::Events::Rule").values()
    props = rule["Properties"]
    assert props["EventPattern"] == {"source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
                                     "detail": {"jobName": ["ltv-dragon-merge-dataset"], "state": ["SUCCEEDED"]}}
    (target,) = props["Targets"]
    assert flat(target["Arn"]).endswith(":sagemaker:ap-northeast-1:222222222222:pipeline/ltv-dragon-merge-retrain")
    assert target["SageMakerPipelineParameters"] == {"PipelineParameterList": [{"Name": "DatasetVersion",
                                                                                "Value": "rolling"}]}
    etl = Template.from_stack(stack(app, config, "Etl")).to_json()["Resources"]
    (schedule,) = [r for r in etl.values() if r["Type"] == "AWS::Events::Rule"
                   and r["Properties"]["Name"] == "ltv-dragon-merge-retrain-schedule"]
    assert schedule["Properties"]["ScheduleExpression"] == config.schedules.retrain, "the chain runs on schedules.retrain"
    trigger_role = [r for r in resources(tpl, "AWS::IAM::Policy").values() if r["Properties"]["PolicyName"] == "start-pipeline"]
    (statement,) = trigger_role[0]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sagemaker:StartPipelineExecution" and flat(statement["Resource"]) == flat(target["Arn"])


def policy_statements(tpl: Template, name: str) -> list[dict[str, Any]]:
    (policy,) = [r for r in resources(tpl, "AWS::IAM::Policy").values() if r["Properties"]["PolicyName"] == name]
    return policy["Properties"]["PolicyDocument"]["Statement"]


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_ml_roles_are_least_privilege(app, games, game) -> None:
    config = games[game]
    tpl = template(app, config, "Ml")
    statements = identity_statements(tpl)
    account, region = config.aws.account, config.aws.region
    star_actions = {"ecr:GetAuthorizationToken", "sagemaker:ListModelPackages", "cloudwatch:PutMetricData"}
    allowed = (f"arn:<AWS::Partition>:s3:::ltv-{game}-curated-{account}/datasets/",
               f"arn:<AWS::Partition>:s3:::ltv-{game}-curated-{account}/monitoring/state.json",  # exactly that object
               f"arn:<AWS::Partition>:s3:::ltv-{game}-artifacts-{account}/pipelines/",
               f"arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-{account}-{region}",
               f"arn:<AWS::Partition>:ecr:{region}:{account}:repository/cdk-hnb659fds-container-assets-{account}-{region}",
               f"arn:<AWS::Partition>:logs:{region}:{account}:log-group:/aws/sagemaker/",
               f"arn:<AWS::Partition>:sagemaker:{region}:{account}:")
    for st in statements:
        assert st["Effect"] == "Allow"
        actions = as_list(st["Action"])
        assert not any("*" in a or a.startswith(("s3:Delete", "sagemaker:Delete")) for a in actions), st["Sid"]
        for resource in as_list(st["Resource"]):
            text = flat(resource)
            if text == "*":
                assert set(actions) <= star_actions, st["Sid"]
                continue
            if text.startswith("<"):  # another stack's export: a bucket of the game, or its key
                assert "Storage" in text or "JobsRole" in text, text
                continue
            assert text.startswith(allowed), f"{st['Sid']}: {text}"
            assert "/monitoring/" not in text or text.endswith("/monitoring/state.json"), text
            if ":sagemaker:" in text:
                assert f"ltv-{game}" in text or text.endswith(("/pipelines-*", "experiment-trial/*",
                                                               "experiment-trial-component/*")), text
    jobs = {st["Sid"]: st for st in policy_statements(tpl, "ml-jobs")}
    assert jobs["ReadDatasets"]["Action"] == "s3:GetObject", "the jobs only read the curated data"
    assert jobs["TrainingMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}}
    pipeline = {st["Sid"]: st for st in policy_statements(tpl, "pipeline")}
    assert {a for st in pipeline.values() for a in as_list(st["Action"]) if a.startswith("s3:")} == {"s3:GetObject"}, \
        "the pipeline role only reads (its property files)"
    assert flat(pipeline["ReadPropertyFiles"]["Resource"]).endswith(f"/pipelines/{retrain.pipeline_name(config)}/*")
    assert pipeline["PassJobsRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert "JobsRole" in flat(pipeline["PassJobsRole"]["Resource"])
    for role in resources(tpl, "AWS::IAM::Role").values():
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"]["Service"] in ("sagemaker.amazonaws.com", "events.amazonaws.com")


# ----------------------------------------------------------------------------------------------
# the template in moto


def literal(value: Any, config: cfg.GameConfig) -> str:
    """A template value as CloudFormation would resolve it in the game's account (for moto)."""
    names = Names.of(config)
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        return value["Fn::Sub"].replace("${AWS::URLSuffix}", "amazonaws.com")
    if "Fn::GetAtt" in value:
        return f"arn:aws:iam::{config.aws.account}:role/{names.resource('ml-jobs')}"
    if "Fn::GetStackOutput" in value or "Fn::ImportValue" in value:
        return names.bucket("curated" if "Curated" in other_stack_output(value) else "artifacts")
    raise AssertionError(value)


def other_stack_output(value: dict) -> str:
    """The DataLake output a value reads: `Fn::GetStackOutput` (cdk.json's weak cross-stack
    references) or `Fn::ImportValue` (strong ones)."""
    return value["Fn::GetStackOutput"]["OutputName"] if "Fn::GetStackOutput" in value else value["Fn::ImportValue"]


def test_the_synthesized_pipeline_and_group_work_in_moto(app, games, monkeypatch) -> None:
    import boto3
    from moto import mock_aws

    from ltv.sagemaker_registry import SageMakerRegistry

    config = games["galaxy-raiders"]
    tpl = template(app, config, "Ml").to_json()["Resources"]
    (group,) = [r["Properties"] for r in tpl.values() if r["Type"] == "AWS::SageMaker::ModelPackageGroup"]
    props = pipeline_resource(app, config)
    text, values = props["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    for name, value in values.items():
        text = text.replace("${" + name + "}", literal(value, config))
    assert "${" not in text
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=config.aws.region)
        sm.create_model_package_group(ModelPackageGroupName=group["ModelPackageGroupName"],
                                      ModelPackageGroupDescription=group["ModelPackageGroupDescription"])
        sm.create_pipeline(PipelineName=props["PipelineName"], PipelineDefinition=text,
                           RoleArn=f"arn:aws:iam::{config.aws.account}:role/ltv-galaxy-raiders-pipeline")
        (rule,) = [r["Properties"] for r in tpl.values() if r["Type"] == "AWS::Events::Rule"]
        parameters = rule["Targets"][0]["SageMakerPipelineParameters"]["PipelineParameterList"]
        sm.start_pipeline_execution(PipelineName=props["PipelineName"], PipelineParameters=parameters)
        executions = sm.list_pipeline_executions(PipelineName=props["PipelineName"])["PipelineExecutionSummaries"]
        assert len(executions) == 1
        described = json.loads(sm.describe_pipeline(PipelineName=props["PipelineName"])["PipelineDefinition"])
        assert [s["Name"] for s in described["Steps"]] == TOP_LEVEL
        assert SageMakerRegistry(config.game.id, region=config.aws.region).versions() == []


# ----------------------------------------------------------------------------------------------
# the roles at work (tests/cloud.py enforces the template's policies)


def cloud_templates(app, config) -> Any:
    from cloud import Templates

    return Templates(Path(app.outdir), config.aws.account, config.aws.region)


def ml_role(tpl: Any, config, name: str) -> Any:
    from cloud import role

    stack = Names.of(config).stack("Ml")
    logical_id = next(k for k, r in tpl.resources(stack, "AWS::IAM::Role").items()
                      if tpl.resolve(stack, r["Properties"].get("RoleName")) == Names.of(config).resource(name))
    return role(tpl, stack, logical_id)


def join(node: Any, values: dict[str, str]) -> str:
    """A definition value as SageMaker evaluates it for one execution: `Std:Join` and `Get` resolved."""
    if isinstance(node, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], node)
    if "Std:Join" in node:
        return node["Std:Join"]["On"].join(join(v, values) for v in node["Std:Join"]["Values"])
    return values[node["Get"]]


@pytest.mark.parametrize("game", sorted(p.stem for p in GAMES.glob("*.yaml")))
def test_the_pipeline_role_reads_the_property_files_its_steps_write(app, games, game) -> None:
    """SageMaker Pipelines resolves `PropertyFile`/`JsonGet` by reading each step's JSON file from S3
    as the pipeline's role: read and (SSE-KMS) decrypt, for every property file of every execution."""
    from cloud import CallRecorder, kms_keys

    config = games[game]
    tpl, names = cloud_templates(app, config), Names.of(config)
    pipeline = ml_role(tpl, config, "pipeline")
    values = {"ArtifactsBucket": names.bucket("artifacts"), "Execution.PipelineExecutionId": "a1b2c3d4e5f6"}
    recorder = CallRecorder(config.aws.account, config.aws.region,
                            kms_keys(tpl, names.stack("DataLake"), "AWS::S3::Bucket"))
    files = []
    for step in steps_of(definition_of(app, config)).values():
        outputs = {o["OutputName"]: o for o in step["Arguments"].get("ProcessingOutputConfig", {}).get("Outputs", [])}
        for prop in step.get("PropertyFiles", []):
            uri = join(outputs[prop["OutputName"]]["S3Output"]["S3Uri"], values) + "/" + prop["FilePath"]
            bucket, key = uri.removeprefix("s3://").split("/", 1)
            files.append(key)
            with recorder.acting_as(pipeline):
                needs = recorder.for_call("s3", "GetObject", {"Bucket": bucket, "Key": key})
                assert {n.action for n in needs} == {"s3:GetObject", "kms:Decrypt"}
                recorder.enforce("s3", "GetObject", {"Bucket": bucket, "Key": key}, needs)  # raises if not allowed
    assert sorted(f.rsplit("/", 1)[1] for f in files) == ["dataset.json", "evaluation.json"]
    other = {"Bucket": names.bucket("curated"), "Key": "datasets/rolling-2025-03-03/part-0.parquet"}
    with recorder.acting_as(pipeline), pytest.raises(AssertionError, match="may not s3:GetObject"):
        recorder.enforce("s3", "GetObject", other, recorder.for_call("s3", "GetObject", other))


def test_resolve_dataset_runs_as_the_jobs_role_with_one_listing(app, games, monkeypatch) -> None:
    """The resolve-dataset step as its processing job runs it: the jobs role, exactly its template
    permissions. An incomplete version (no marker yet) is skipped, a missing key reads as absent
    (NoSuchKey, not S3's 403), and the versions come from one listing, not one request per version."""
    import datetime as dt

    import boto3
    from cloud import moto_account

    from pipelines import resolve

    config = games["galaxy-raiders"]
    tpl, names = cloud_templates(app, config), Names.of(config)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto_account(tpl, [names.stack("DataLake")], monkeypatch, dt.date(2025, 12, 31)) as account:
        bucket, setup = names.bucket("curated"), account.session.client("s3")
        for rows, (version, complete) in enumerate((("rolling-2025-03-03", True), ("rolling-2025-04-07", True),
                                                    ("rolling-2025-05-05", False))):
            files = {"manifest.json": json.dumps({"rows": 100 + rows, "cutoffs": ["2025-03-03"]}),
                     "train/part-0.parquet": "PAR1", **({"_SUCCESS": ""} if complete else {})}
            for name, body in files.items():
                setup.put_object(Bucket=bucket, Key=f"datasets/{version}/{name}", Body=body.encode())
        s3 = boto3.client("s3", region_name=config.aws.region)
        account.recorder.needs.clear()
        with account.recorder.acting_as(ml_role(tpl, config, "ml-jobs")):
            found = resolve.resolve(s3, f"s3://{bucket}", "rolling")
            with pytest.raises(s3.exceptions.NoSuchKey):
                s3.get_object(Bucket=bucket, Key="datasets/rolling-2025-05-05/_SUCCESS")
        assert found["version"] == "rolling-2025-04-07" and found["rows"] == 101
        calls = [n.why for n in account.recorder.needs if n.action.startswith("s3:")]
        assert calls == ["s3:ListObjectsV2", "s3:GetObject", "s3:GetObject"], calls


def test_the_evaluate_step_reads_the_monitoring_state_as_the_jobs_role(app, games, monkeypatch) -> None:
    """The evaluate step, as its processing job runs it (the jobs role, exactly its template
    permissions), reads the monitoring state at the URI its definition passes: the key the
    monitoring job publishes. Not yet published reads as "no incident" (NoSuchKey, not S3's 403);
    a label-decay incident awaiting a retrain becomes the decision's focus."""
    import datetime as dt

    from cloud import moto_account

    from ltv.lake import MONITORING_STATE
    from ltv.monitoring import RETRAIN_REQUESTED
    from ltv.promotion import Focus
    from pipelines import evaluate

    config = games["galaxy-raiders"]
    tpl, names = cloud_templates(app, config), Names.of(config)
    arguments = steps_of(definition_of(app, config))["Evaluate"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    uri = join(arguments[arguments.index("--monitoring-state") + 1], {"CuratedBucket": names.bucket("curated")})
    assert uri == f"s3://{names.bucket('curated')}/{MONITORING_STATE}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto_account(tpl, [names.stack("DataLake")], monkeypatch, dt.date(2025, 12, 31)) as account:
        jobs = ml_role(tpl, config, "ml-jobs")
        with account.recorder.acting_as(jobs):
            assert evaluate.decay_focus(uri, config, config.aws.region) is None
        state = {"incidents": {"label_decay": {"state": RETRAIN_REQUESTED, "metric": "payer_pr_auc",
                                               "cohorts": ["2025-11-03", "2025-11-10"]}}}
        account.session.client("s3").put_object(Bucket=names.bucket("curated"), Key=MONITORING_STATE,
                                                Body=json.dumps(state).encode())
        with account.recorder.acting_as(jobs):
            focus = evaluate.decay_focus(uri, config, config.aws.region)
        assert focus == Focus("label_decay", "payer_pr_auc", ("2025-11-03", "2025-11-10"))


def test_building_the_definition_imports_no_step_module() -> None:
    """The stacks build the definition at every synth: the steps' constants come from
    pipelines.contract, not from the step modules, whose imports reach AutoGluon and matplotlib."""
    import subprocess

    code = ("import sys, pipelines.retrain; print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'autogluon', 'pandas', 'numpy', 'sklearn', 'lightgbm')} | {m for m in sys.modules "
            "if m in ('ltv.models', 'pipelines.train', 'pipelines.evaluate', 'pipelines.resolve')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"
