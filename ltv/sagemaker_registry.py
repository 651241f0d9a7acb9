"""The SageMaker Model Registry backend of `ltv.registry.Registry` (boto3).

The same concepts as the local registry, in SageMaker's terms: the game's model package group
`ltv-<game>`; versions are its model packages (`ModelPackageVersion`); a version's status is its
`ModelApprovalStatus`, the reason of the latest change its `ApprovalDescription`; the champion
is the latest Approved package, which is what batch scoring uses. Nothing is ever deleted: a
rollback rejects the champion and re-approves the previous one.

Where each part of a `ModelVersion` lives on a model package:

- artifact: `InferenceSpecification.Containers[0].ModelDataUrl`, the `model.tar.gz` SageMaker
  training wrote (the checksummed artifact folder at the archive's root), next to the image
  that serves it (SageMaker records the image digest itself);
- lineage: customer metadata `ltv:dataset`, `ltv:config-hash`, `ltv:code-version`, ... (see
  `METADATA`), written by the pipeline's register step from `evaluation.json` or by `register`;
  SageMaker accepts only letters, digits, spaces and `_.:/=+-@` there (at most 256 characters,
  50 entries), so every value goes through `metadata_value`;
- metrics: the `model` block of the evaluation JSON that `ModelMetrics.ModelQuality.Statistics`
  points to (the pipeline's `evaluation.json`);
- history: SageMaker keeps only the current status (and its `ApprovalDescription`), so every
  change made here is appended to a JSON log beside the archive (`history-<version>.json`, by
  conditional writes: concurrent changes never drop each other's entries), and the package's
  `ltv:changes` counts them. Changes made elsewhere (the Studio UI, the API) are recognised as
  such from the current status and shown as "outside ltv".

This module imports only boto3 and light core modules (no pandas, no AutoGluon): the scoring
Lambda resolves the champion with it. `load` and `register` import the models when called.
"""
from __future__ import annotations

import atexit
import datetime as dt
import json
import re
import shutil
import tarfile
import tempfile
import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from ltv.errors import ArtifactError, RegistryError
from ltv.registry import (APPROVED, CONTENT_TYPES, REJECTED, ModelVersion, check_artifact, check_status, group_name,
                          lineage, rollback_plan, status_entry)
from ltv.runs import ABSENT, Conflict, S3Store

if TYPE_CHECKING:
    from ltv.models import LTVModel

# lineage/registration field -> customer metadata key (values: see `metadata_value`)
METADATA = {"dataset": "ltv:dataset", "dataset_fingerprint": "ltv:dataset-fingerprint",
            "config_hash": "ltv:config-hash", "code_version": "ltv:code-version", "trained": "ltv:trained",
            "seen_until": "ltv:seen-until", "reason": "ltv:reason", "status": "ltv:registered-status"}
CHANGES = "ltv:changes"   # changes made through ltv (absent: none, so there is no history log to read)
HISTORY_ATTEMPTS = 8      # conditional appends to the history log before giving up
# SageMaker's CustomerMetadataValue: [\p{L}\p{Z}\p{N}_.:/=+\-@], 1 to 256 characters (the API model's pattern)
VALUE_CHARS, VALUE_PUNCTUATION = 256, set("_.:/=+-@")
# ModelPackageDescription ([\p{L}\p{M}\p{Z}\p{S}\p{N}\p{P}]*) and ApprovalDescription (Java's `.*`, no line
# terminator): both at most 1024 characters
DESCRIPTION_CHARS = 1024
_LINE_BREAKS = re.compile(r"[\n\r\x85\u2028\u2029]+")


def registration(manifest: dict[str, Any], reason: str) -> dict[str, str]:
    """The customer metadata values of a model package (keys as in `METADATA`, without `status`),
    from the artifact's manifest and the promotion decision's reason; every value fits SageMaker's limit.

    The pipeline's evaluate step writes this block into evaluation.json and its register step
    copies each field into the package's metadata; `SageMakerRegistry.register` does the same."""
    origin = lineage(manifest)
    dataset = origin.get("dataset") or {}
    values = {"dataset": dataset.get("name"), "dataset_fingerprint": dataset.get("fingerprint"),
              "config_hash": origin["config_hash"], "code_version": origin["code_version"],
              "trained": origin["trained"], "seen_until": (manifest.get("trained_on") or {}).get("seen_until"),
              "reason": reason}
    return {k: metadata_value(str(v) if v is not None else "-") for k, v in values.items()}


def metadata_value(text: str) -> str:
    """`text` as a customer metadata value SageMaker accepts: each run of other characters (the
    reasons' `( ) ; ,`, JSON, line breaks) becomes one space, and it is cut to 256 characters."""
    kept = "".join(c if c in VALUE_PUNCTUATION or unicodedata.category(c)[0] in "LNZ" else " " for c in text)
    return _fit(" ".join(kept.split()) or "-", VALUE_CHARS)


def description(text: str) -> str:
    """`text` as a ModelPackageDescription or ApprovalDescription: one line, no control or
    unassigned characters, at most 1024 characters."""
    text = _LINE_BREAKS.sub(" ", text)
    return _fit("".join(c if unicodedata.category(c)[0] != "C" else " " for c in text), DESCRIPTION_CHARS)


def pack(artifact: Path, archive: Path) -> Path:
    """`model.tar.gz` as SageMaker training writes it: the artifact folder's files at the root."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(Path(artifact).rglob("*")):
            tar.add(path, arcname=str(path.relative_to(artifact)), recursive=False)
    return archive


def unpack(archive: Path, target: Path) -> Path:
    """Extract a `model.tar.gz` into `target` (a new folder); members leaving it are refused."""
    target.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as e:
        shutil.rmtree(target, ignore_errors=True)
        raise ArtifactError(f"{archive} is not a readable model archive: {e}") from None
    return target


def _fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters as AWS counts them (UTF-16 units), the cut shown by '...'."""
    if _units(text) <= limit:
        return text
    text = text[:limit]
    while _units(text) > limit - 3:
        text = text[:-1]
    return text + "..."


def _units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise RegistryError(f"expected an s3:// URI, got {uri!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class SageMakerRegistry:
    """The model package group of one game, in the SageMaker Model Registry.

    `region` defaults to the environment's; `page_size` is how many packages one list call
    returns (the API's maximum, 100, by default). `register` (used outside the pipeline, e.g.
    to import a locally trained model) needs `artifact_uri` (an s3:// prefix for the archive and
    its metrics) and `image_uri` (the game's image, which serves the model)."""

    def __init__(self, game: str, *, region: str | None = None, page_size: int = 100,
                 artifact_uri: str | None = None, image_uri: str | None = None,
                 transform_instance_types: tuple[str, ...] = ("ml.m5.xlarge",), cache_dir: Path | None = None,
                 sagemaker: Any = None, s3: Any = None) -> None:
        self.game, self.group = game, group_name(game)
        self.sm = sagemaker or boto3.client("sagemaker", region_name=region)
        self.s3 = s3 or boto3.client("s3", region_name=region)
        self.page_size, self.artifact_uri, self.image_uri = page_size, artifact_uri, image_uri
        self.transform_instance_types = list(transform_instance_types)
        self._cache = Path(cache_dir) if cache_dir else None
        self._group_arn: str | None = None
        self._documents: dict[tuple[int, str], dict[str, Any]] = {}

    @property
    def cache(self) -> Path:
        """Where loaded archives are unpacked: `cache_dir`, else a temporary directory made on the
        first load (listing, approving or resolving the champion leaves nothing on disk) and
        removed when the process exits (a loaded model reads its files until then)."""
        if self._cache is None:
            self._cache = Path(tempfile.mkdtemp(prefix=f"ltv-{self.game}-models-"))
            atexit.register(shutil.rmtree, self._cache, ignore_errors=True)
        return self._cache

    # -- reading

    def versions(self) -> list[ModelVersion]:
        return [self._version(self._describe(n)) for n in self._numbers()]

    def get(self, version: int) -> ModelVersion:
        return self._version(self._describe(version))

    def champion(self) -> ModelVersion | None:
        """The latest Approved version, or None."""
        approved = self._numbers(APPROVED)
        return self.get(approved[-1]) if approved else None

    def load(self, version: int) -> LTVModel:
        """Download and unpack the version's archive (once per registry object) and load it."""
        from ltv.models import LTVModel

        target = self.cache / str(version)
        if not target.exists():
            self.cache.mkdir(parents=True, exist_ok=True)
            bucket, key = _split_s3(str(self.get(version).path))
            archive = self.cache / f".{version}-{uuid.uuid4().hex[:6]}.tar.gz"
            self._call("download the model archive", self.s3.download_file, bucket, key, str(archive))
            try:
                staged = unpack(archive, self.cache / f".{version}-{uuid.uuid4().hex[:6]}")
            finally:  # an unreadable archive is not left in the cache either
                archive.unlink()
            try:
                staged.rename(target)
            except OSError:  # another load of the same version won the race: use its copy
                shutil.rmtree(staged, ignore_errors=True)
                if not target.exists():
                    raise
        return LTVModel.load(target)

    def artifact_json(self, version: int, name: str) -> dict[str, Any]:
        """A JSON document at the root of the version's `model.tar.gz` (manifest.json,
        feature_stats.json), read by streaming the archive from S3 until it is found: no
        download of the whole model, no model code (the monitoring job uses it)."""
        key = (version, name)
        if key not in self._documents:
            bucket, archive = _split_s3(str(self.get(version).path))
            body = self._call("read the model archive", self.s3.get_object, Bucket=bucket, Key=archive)["Body"]
            try:
                with tarfile.open(fileobj=body, mode="r|gz") as tar:
                    member = next((m for m in tar if m.isfile() and m.name.lstrip("./") == name), None)
                    if member is None:
                        raise ArtifactError(f"version {version}'s archive s3://{bucket}/{archive} has no {name}")
                    self._documents[key] = json.loads(tar.extractfile(member).read())
            except (tarfile.TarError, OSError, ValueError) as e:
                raise ArtifactError(f"version {version}'s archive s3://{bucket}/{archive} is not readable: {e}") from None
        return self._documents[key]

    # -- writing

    def register(self, artifact: Path, *, metrics: dict[str, Any], status: str, reason: str) -> ModelVersion:
        """Add a model package holding `artifact` (checked first, as locally): the archive and its
        metrics go under `artifact_uri`, the package points at them and at `image_uri`."""
        if not (self.artifact_uri and self.image_uri):
            raise RegistryError("registering into SageMaker outside the pipeline needs artifact_uri (an s3:// prefix) "
                                "and image_uri (the game's image); the pipeline's register step needs neither")
        manifest = check_artifact(Path(artifact), self.game, status)
        bucket, prefix = _split_s3(f"{self.artifact_uri.rstrip('/')}/{uuid.uuid4().hex}")
        with tempfile.TemporaryDirectory(prefix="ltv-register-") as tmp:
            archive = pack(Path(artifact), Path(tmp) / "model.tar.gz")
            self._call("upload the model archive", self.s3.upload_file, str(archive), bucket, f"{prefix}/model.tar.gz")
        self._call("upload the metrics", self.s3.put_object, Bucket=bucket, Key=f"{prefix}/evaluation.json",
                   Body=json.dumps({"model": metrics}, default=str).encode(), ContentType="application/json")
        values = registration(manifest, reason) | {"status": status}
        arn = self._call("create the model package", self.sm.create_model_package,
                         ModelPackageGroupName=self._ensure_group(), ModelApprovalStatus=status,
                         ModelPackageDescription=description(reason),
                         InferenceSpecification=self.inference_specification(f"s3://{bucket}/{prefix}/model.tar.gz"),
                         ModelMetrics={"ModelQuality": {"Statistics": {
                             "ContentType": "application/json", "S3Uri": f"s3://{bucket}/{prefix}/evaluation.json"}}},
                         CustomerMetadataProperties={METADATA[k]: v for k, v in values.items()})["ModelPackageArn"]
        return self.get(int(arn.rsplit("/", 1)[1]))

    def inference_specification(self, model_data: str) -> dict[str, Any]:
        """The image serving `model_data`, with the formats and instance types it accepts."""
        return {"Containers": [{"Image": self.image_uri, "ModelDataUrl": model_data}],
                "SupportedContentTypes": list(CONTENT_TYPES), "SupportedResponseMIMETypes": list(CONTENT_TYPES),
                "SupportedTransformInstanceTypes": self.transform_instance_types}

    def set_status(self, version: int, status: str, reason: str) -> ModelVersion:
        """Change a version's approval status; the reason goes to ApprovalDescription (as it fits)
        and, whole, to the version's history log. The status changes first: should the log's
        append then fail, the change still shows, as one made outside ltv, with its description."""
        check_status(status)
        desc = self._describe(version)
        if desc["ModelApprovalStatus"] == status:
            return self._version(desc)
        metadata = desc.get("CustomerMetadataProperties") or {}
        # the whole map is sent: UpdateModelPackage merges it, and the result is the same
        self._call("update the model package", self.sm.update_model_package, ModelPackageArn=desc["ModelPackageArn"],
                   ModelApprovalStatus=status, ApprovalDescription=description(reason),
                   CustomerMetadataProperties=metadata | {CHANGES: str(int(metadata.get(CHANGES, 0)) + 1)})
        self._append_history(desc, status_entry(status, reason) | {"from": desc["ModelApprovalStatus"]})
        return self.get(version)

    def _history_log(self, desc: dict[str, Any]) -> tuple[S3Store, str]:
        """Where a version's history log lives: beside its archive, named after its version."""
        bucket, key = _split_s3(desc["InferenceSpecification"]["Containers"][0]["ModelDataUrl"])
        return S3Store(self.s3, bucket), f"{key.rpartition('/')[0]}/history-{desc['ModelPackageVersion']}.json"

    def _append_history(self, desc: dict[str, Any], entry: dict[str, Any]) -> None:
        """Append `entry` to the version's log: read, append, write only if nobody wrote in between."""
        store, key = self._history_log(desc)
        for _ in range(HISTORY_ATTEMPTS):
            stored = self._call("read the version's history", store.get, key)
            entries = json.loads(stored.body)["entries"] if stored else []
            body = json.dumps({"package": desc["ModelPackageArn"], "entries": [*entries, entry]}, indent=1).encode()
            try:
                return self._call("write the version's history", store.put, key, body,
                                  expect=stored.tag if stored else ABSENT)
            except Conflict:
                continue  # another change was appended meanwhile: append after it
        raise RegistryError(f"SageMaker registry {self.group!r}: version {desc['ModelPackageVersion']}'s status "
                            f"changed, but its history s3://{store.bucket}/{key} kept changing under "
                            f"{HISTORY_ATTEMPTS} attempts to append to it; the change shows as made outside ltv")

    def _changes(self, desc: dict[str, Any]) -> list[dict[str, Any]]:
        """The changes made through this module, from the version's history log (none recorded: no read)."""
        if not (desc.get("CustomerMetadataProperties") or {}).get(CHANGES):
            return []
        store, key = self._history_log(desc)
        stored = self._call("read the version's history", store.get, key)
        return json.loads(stored.body)["entries"] if stored else []

    def approve(self, version: int, reason: str = "approved by hand") -> ModelVersion:
        """Approve a version whose archive is still in S3 (a champion must be loadable)."""
        bucket, key = _split_s3(str(self.get(version).path))
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            raise ArtifactError(f"version {version}'s model archive s3://{bucket}/{key} is not readable "
                                f"({e.response['Error'].get('Code')}); it cannot become champion") from None
        return self.set_status(version, APPROVED, reason)

    def reject(self, version: int, reason: str = "rejected by hand") -> ModelVersion:
        return self.set_status(version, REJECTED, reason)

    def rollback(self, reason: str = "rollback") -> tuple[ModelVersion, ModelVersion]:
        """Reject the champion and re-approve the previous champion; returns (old, new)."""
        champion, previous = rollback_plan(self.versions(), self.group)
        new = self.approve(previous.version, f"{reason}: re-approved to replace version {champion.version}")
        old = self.set_status(champion.version, REJECTED, f"{reason}: rolled back to version {previous.version}")
        return old, new

    # -- SageMaker

    def _call(self, what: str, fn: Any, *args: Any, missing: Callable[[], str] | None = None, **kwargs: Any) -> Any:
        """An AWS call whose failure becomes a `RegistryError` saying what could not be done and
        why; `missing()` is the message for a resource SageMaker does not know (a validation error)."""
        try:
            return fn(*args, **kwargs)
        except ClientError as e:
            code, message = e.response.get("Error", {}).get("Code"), e.response.get("Error", {}).get("Message")
            if missing and code in ("ValidationException", "ResourceNotFound"):
                raise RegistryError(missing()) from None
            raise RegistryError(f"SageMaker registry {self.group!r}: could not {what}: {code}: {message}") from None
        except S3UploadFailedError as e:  # upload_file wraps the service's error in its own
            raise RegistryError(f"SageMaker registry {self.group!r}: could not {what}: {e}") from None
        except BotoCoreError as e:  # no credentials, no endpoint, ...
            raise RegistryError(f"SageMaker registry {self.group!r}: could not {what}: {e} (credentials of the "
                                f"game's account, e.g. AWS_PROFILE, and its region are needed)") from None

    def _ensure_group(self) -> str:
        """The group's name, once it is known to exist (the ML stack creates it)."""
        if self._group_arn is None:
            self._group_arn = self._call(
                "find the model package group", self.sm.describe_model_package_group, ModelPackageGroupName=self.group,
                missing=lambda: f"model package group {self.group!r} not found in {self.sm.meta.region_name}: deploy "
                                f"the game's ML stack (make deploy GAME={self.game}) or check the credentials' account "
                                "and region",
            )["ModelPackageGroupArn"]
        return self.group

    def _numbers(self, status: str | None = None) -> list[int]:
        """Version numbers of the group's packages (every page), ascending; only `status` if given."""
        self._ensure_group()
        query = {"ModelPackageGroupName": self.group, "SortBy": "CreationTime", "SortOrder": "Ascending",
                 **({"ModelApprovalStatus": status} if status else {})}

        def listing() -> list[int]:
            pages = self.sm.get_paginator("list_model_packages").paginate(
                **query, PaginationConfig={"PageSize": self.page_size})
            return sorted(p["ModelPackageVersion"] for page in pages for p in page["ModelPackageSummaryList"])

        return self._call("list the model packages", listing)

    def _describe(self, version: int) -> dict[str, Any]:
        return self._call(f"describe version {version}", self.sm.describe_model_package,
                          ModelPackageName=self._package_arn(version),
                          missing=lambda: f"model group {self.group!r} has no version {version}; versions: "
                                          f"{self._numbers() or 'none'}")

    def _package_arn(self, version: int) -> str:
        self._ensure_group()
        assert self._group_arn is not None
        return self._group_arn.replace(":model-package-group/", ":model-package/") + f"/{version}"

    def _version(self, desc: dict[str, Any]) -> ModelVersion:
        metadata = desc.get("CustomerMetadataProperties") or {}
        container = desc["InferenceSpecification"]["Containers"][0]
        value = lambda field: metadata.get(METADATA[field])  # noqa: E731
        origin = {"dataset": {"name": value("dataset"), "fingerprint": value("dataset_fingerprint")},
                  "config_hash": value("config_hash"), "code_version": value("code_version"),
                  "trained": value("trained"), "seen_until": value("seen_until"), "image": container.get("Image"),
                  "image_digest": container.get("ImageDigest"), "package": desc["ModelPackageArn"]}
        return ModelVersion(int(desc["ModelPackageVersion"]), desc["ModelApprovalStatus"],
                            _iso(desc["CreationTime"]), self._metrics(desc), origin,
                            _history(desc, self._changes(desc)), container["ModelDataUrl"])

    def _metrics(self, desc: dict[str, Any]) -> dict[str, Any]:
        """The model's test metrics from the package's model-quality statistics ({} if absent)."""
        uri = (((desc.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}).get("S3Uri")
        if not uri:
            return {}
        bucket, key = _split_s3(uri)
        try:
            document = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except (ClientError, json.JSONDecodeError):
            return {}
        return document.get("model") or {}


def _iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, dt.datetime) else str(value)


def _history(desc: dict[str, Any], changes: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The status history of a package: its registration, every change made through this module
    (`changes`, from its log), and, where the status moved without it (Studio, the API), an entry saying so."""
    metadata = desc.get("CustomerMetadataProperties") or {}
    current = desc["ModelApprovalStatus"]
    registered = metadata.get(METADATA["status"]) or (changes[0]["from"] if changes else current)
    entries = [{"status": registered, "at": _iso(desc["CreationTime"]), "by": _who(desc.get("CreatedBy")),
                "reason": metadata.get(METADATA["reason"]) or desc.get("ModelPackageDescription", "")}]
    for change in changes:
        if change.get("from") != entries[-1]["status"]:
            entries.append(_outside(change["from"], None, None, None))
        entries.append({k: change[k] for k in ("status", "at", "by", "reason")})
    if current != entries[-1]["status"]:
        entries.append(_outside(current, desc.get("LastModifiedTime"), desc.get("LastModifiedBy"),
                                desc.get("ApprovalDescription")))
    return tuple(entries)


def _outside(status: str, at: Any, by: Any, reason: str | None) -> dict[str, Any]:
    return {"status": status, "at": _iso(at) if at else None, "by": _who(by) if by else "outside ltv",
            "reason": reason or "changed outside ltv (SageMaker Studio or the API)"}


def _who(user: Any) -> str:
    """A readable name from SageMaker's UserContext (CreatedBy / LastModifiedBy)."""
    if not isinstance(user, dict):
        return str(user or "SageMaker")
    return user.get("UserProfileName") or user.get("UserProfileArn") or "SageMaker (pipeline or API)"
