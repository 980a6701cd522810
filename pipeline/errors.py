"""The pipeline's exception tree: messages say what failed, where, and what to do."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""

    exit_code = 1


class UsageError(PipelineError):
    """Bad command-line usage or settings (exit code 2)."""

    exit_code = 2


class IngestError(PipelineError):
    """A source could not deliver data (HTTP error, bad body, unreadable file)."""


class SourceUnavailableError(IngestError):
    """The source could not be reached at all (DNS, connection refused, timeout)."""


class DataValidationError(PipelineError):
    """Data broke a validation rule; the message names the rule and the row."""


class ProcessingError(PipelineError):
    """The processing stage could not build a regular series."""


class ForecastError(PipelineError):
    """A forecaster could not fit or predict (e.g. a too-short series)."""


class ArtifactError(PipelineError):
    """A model artifact is missing, corrupt, tampered with or incompatible."""


class StorageError(PipelineError):
    """A file could not be written whole: the disk is full, a quota or a file-size limit was hit.
    What it would have replaced is left unchanged."""
