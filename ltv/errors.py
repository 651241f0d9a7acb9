"""Named errors. Each says what is wrong and how to fix it; the CLI prints them without a trace."""


class LtvError(Exception):
    """Base of every error meant for a user rather than a developer."""

    exit_code = 2


class ConfigError(LtvError):
    """A game config file is missing, malformed or invalid."""


class DataValidationError(LtvError):
    """Raw logs failed an error-severity validation check; nothing downstream was written."""

    def __init__(self, message: str, results: list | None = None):
        super().__init__(message)
        self.results = results or []


class EmptyWindowError(LtvError):
    """A time window that must contain data (a cutoff's population, a dataset split) is empty."""


class NoPayersError(LtvError):
    """A training set without any payer: the two-stage LTV model cannot be fit."""


class MissingPartitionError(LtvError):
    """A partition needed as input does not exist or has no success marker."""


class ImmutableVersionError(LtvError):
    """An attempt to write a dataset/model version that already exists with other content."""


class InSampleError(LtvError):
    """A model would be scored on rows whose period it trained or validated on (its labels
    reach the first test cutoff): the figures would be in-sample, not an honest evaluation."""


class StaleDefinitionError(LtvError):
    """A stored partition was computed under another definition (config mapping, windows,
    horizons or SQL) than the one asked for, and cannot be rebuilt here."""


class StorageError(LtvError):
    """The output directory cannot be written (no space, quota, file size limit, permission or a
    read-only file system): nothing was published, and the rerun of the same command recovers."""


class LoopBusyError(LtvError):
    """Another `ltv run` is replaying the same game's lake: two loops would do each day twice."""


class ArtifactError(LtvError):
    """A model artifact is corrupt, incomplete or unloadable."""


class RegistryError(LtvError):
    """A registry operation is impossible (unknown version, no champion, invalid transition)."""


class S3EventError(LtvError):
    """A malformed or unexpected S3 event reached the scoring trigger."""



class HorizonError(LtvError):
    """The logs are too short for train + validation + embargo + test at the label horizon."""


class BootstrapError(LtvError):
    """The promotion's paired bootstrap was asked to run on fewer holdout rows than configured
    (`promotion.bootstrap.min_rows`): its confidence interval would not be evidence."""


class ExperimentError(LtvError):
    """An experiment cannot be created, assigned or read out as asked."""


class ExperimentSpecError(ExperimentError):
    """An experiment spec is malformed (fields, types, an arm's policy, the holdout)."""


class ShareSumError(ExperimentSpecError):
    """The arms' shares of an experiment spec do not sum to 1."""


class UnknownMetricError(ExperimentSpecError):
    """An experiment spec names a primary metric the readout does not compute."""


class ExperimentOverlapError(ExperimentError):
    """A new experiment would run on players of another experiment at the same time."""


class ExposureError(ExperimentError):
    """An exposure names a player the experiment did not assign (or assigned to another arm)."""


class PeekingError(ExperimentError):
    """A readout was asked before the experiment's fixed horizon ended."""
