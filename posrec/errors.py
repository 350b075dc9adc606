"""posrec's error types.

Every problem caused by user input (a data file, a config, a checkpoint) raises a subclass of
`PosrecError` whose message names the problem and what to do; the CLIs print it as one line.
"""


class PosrecError(Exception):
    """Base class: an error the user can fix, reported without a traceback by the CLIs."""


class DataError(PosrecError):
    """A data file is missing, unreadable, malformed, or empty after filtering."""


class ConfigError(PosrecError):
    """A config key is unknown or a value is impossible."""


class CheckpointError(PosrecError):
    """A checkpoint is corrupt or belongs to an incompatible config."""
