"""What every command-line entry point shares: posrec errors as one line, no traceback."""

from __future__ import annotations

import contextlib
import sys

from posrec.errors import PosrecError


@contextlib.contextmanager
def report_errors(debug: bool):
    """Print a PosrecError as `posrec: error: ...` and exit 2 (traceback with --debug)."""
    try:
        yield
    except PosrecError as err:
        if debug:
            raise
        print(f"posrec: error: {err}", file=sys.stderr)
        sys.exit(2)
