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


class Interrupted(Exception):  # noqa: N818 (a request, not an error)
    """Training stopped on SIGTERM/SIGINT after saving `checkpoints/latest`.

    Not a PosrecError: nothing is wrong. Rerunning the same command resumes exactly where
    the run stopped; the CLIs exit with `EXIT_INTERRUPTED`.
    """


# sysexits.h EX_TEMPFAIL ("temporary failure, the user is invited to retry"): what a CLI
# returns after `Interrupted`, so a job script can tell "preempted, rerun me" from "finished"
# (0) and from a posrec error (2).
EXIT_INTERRUPTED = 75
