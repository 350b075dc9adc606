"""Train and evaluate a posrec model.

    python -m posrec.main --config=configs/ml1m.py --workdir=/tmp/ml1m \
        [--config.model.positional=absolute ...]

Restarting with the same --workdir resumes from the latest checkpoint. SIGTERM/SIGINT save
it at the next step boundary and exit with code 75 (errors.EXIT_INTERRUPTED); the rerun then
continues mid-epoch exactly. Exit code 2: a posrec error (one line; --debug for a traceback).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from posrec import train
from posrec.cli import report_errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, results).")
_DEBUG = flags.DEFINE_bool("debug", False, "Show tracebacks for posrec errors.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    # Orbax logs every save/restore at INFO through absl; keep posrec's own lines readable.
    logging.get_absl_handler().addFilter(lambda r: "/orbax/" not in r.pathname)
    with report_errors(_DEBUG.value):
        results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    print(train.format_summary(results), flush=True)


if __name__ == "__main__":
    app.run(main)
