"""What every command-line entry point shares: posrec errors as one line, no traceback."""

from __future__ import annotations

import contextlib
import re
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


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, for `app.run(main, flags_parser=parse_flags)`.

    A bad flag, a bad `--config.KEY=VALUE` override or a config file that does not load is
    then one `posrec: error:` line and exit 2, like every other user error (absl prints a
    usage hint and ml_collections a traceback, both with exit 1).
    """
    from absl import flags

    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS and flags.FLAGS["config"].present:
            flags.FLAGS["config"].value.keys()  # a file that failed to load raises on use only
        return rest
    except flags.Error as e:  # unknown flag, a value of the wrong type
        message = str(e)
    except (AttributeError, KeyError) as e:  # ml_collections: an unknown --config.KEY
        message = _unknown_key_message(str(e), argv)
    except Exception as e:  # the config file: missing, a syntax error, no get_config(), ...
        message = f"--config: {' '.join(str(e).split())}"
    print(f"posrec: error: {message}", file=sys.stderr)
    sys.exit(2)


def _unknown_key_message(error: str, argv: list[str]) -> str:
    """ml_collections' KeyError text (quoted twice over, with a "Did you mean") as one line
    naming the override that has the key."""
    text = " ".join(error.replace("\\n", " ").replace("\\'", "'").split()).strip("'\"")
    key = re.match(r"'?([^' ]+)'?", text)
    overrides = [a.split("=", 1)[0] for a in argv if a.startswith("--config.")]
    culprit = [a for a in overrides if key and key.group(1) in a.split(".")]
    hint = re.search(r'Did you mean "[^"]+"', text)
    if not culprit:  # not an override's key: e.g. an AttributeError inside get_config()
        return f"--config: {' '.join(error.split())}"
    return (f"unknown config key {key.group(1)!r} in {culprit[0]}"
            + (f" ({hint.group(0)}?)" if hint else ""))
