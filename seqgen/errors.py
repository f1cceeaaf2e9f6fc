"""Exception types with messages meant for the person at the keyboard."""


class SeqgenError(Exception):
    """Base class: a problem the user can fix, reported without a traceback by the scripts."""


class ConfigError(SeqgenError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class DataError(SeqgenError):
    """Data could not be found, verified or parsed."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A required data file is missing and cannot be downloaded (offline)."""


class ChecksumError(DataError):
    """A file's checksum does not match the published one."""


class UnsafeArchiveError(DataError):
    """An archive member would be written outside the extraction folder."""


class CheckpointError(SeqgenError):
    """A checkpoint is missing, truncated or belongs to another kind of model."""


class NonFiniteLossError(SeqgenError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class TrainingInterrupted(SeqgenError):
    """SIGINT/SIGTERM stopped training after a batch; a checkpoint was saved to resume from."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
