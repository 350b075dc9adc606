"""What every command-line entry point shares: posrec errors as one line, no traceback."""

from __future__ import annotations

import contextlib
import shlex
import sys

from posrec.errors import EXIT_INTERRUPTED, Interrupted, PosrecError


def quiet_orbax_logs() -> None:
    """Drop orbax's INFO lines (every save/restore) from absl's stderr handler, so a CLI's
    own lines stay readable; orbax warnings and errors still show."""
    from absl import logging

    logging.get_absl_handler().addFilter(
        lambda r: "/orbax/" not in r.pathname or r.levelno >= logging.converter.STANDARD_WARNING
    )


def rerun_command() -> str:
    """The current command line as a shell string, `python -m <module> ...` when run with -m."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["python", "-m", spec.name] if spec is not None else ["python", sys.argv[0]]
    return shlex.join(head + sys.argv[1:])


@contextlib.contextmanager
def report_errors(debug: bool):
    """Print a PosrecError as `posrec: error: ...` and exit 2 (traceback with --debug).

    A run stopped by SIGTERM/SIGINT (`Interrupted`, after its checkpoint is saved) prints
    how to resume and exits with `EXIT_INTERRUPTED` (75).
    """
    try:
        yield
    except Interrupted as err:
        print(f"posrec: {err}", file=sys.stderr)
        print(f"posrec: resume with: {rerun_command()}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except PosrecError as err:
        if debug:
            raise
        print(f"posrec: error: {err}", file=sys.stderr)
        sys.exit(2)
