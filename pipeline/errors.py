"""One exception type per domain; each message names the file, sample or setting at fault."""


class LogitfuseError(Exception):
    """Base class: errors the CLI prints as one clear line instead of a traceback."""


class ConfigError(LogitfuseError):
    """A config key or value is unknown, missing or out of range."""


class InputError(LogitfuseError):
    """A record of the input dataset is malformed (names the sample id and field)."""


class SchemaError(LogitfuseError):
    """A file does not follow the declared schema or version."""


class ShardError(LogitfuseError):
    """A shard or manifest is missing, truncated, corrupted or from another run."""


class ModelLoadError(LogitfuseError):
    """A model or tokenizer could not be loaded."""


class CaptureError(LogitfuseError):
    """A capture forward pass failed for a reason the user can act on (names the samples and the setting)."""


class AlignmentError(LogitfuseError):
    """Source and pivot shards or tokenizers cannot be aligned."""


class TrainError(LogitfuseError):
    """Training cannot start or resume (changed shards, incompatible checkpoint, bad values)."""


class SubmitError(LogitfuseError):
    """A job could not be submitted to, or failed on, a Ray cluster."""


class PublishError(LogitfuseError):
    """A shard set could not be staged or uploaded to the Hub."""


class LockError(LogitfuseError):
    """An output folder is held by another writer (names the holder), or its lock cannot be taken."""


class WriteError(LogitfuseError):
    """An output cannot be written: full disk, read-only folder, a file where a folder should be (names the path)."""


class StorageError(LogitfuseError):
    """A local folder or object-store URL cannot be reached or used: wrong credentials, missing bucket, unreachable
    endpoint (names the URL, never a secret)."""
