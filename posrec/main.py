"""Train and evaluate a posrec model.

    python -m posrec.main --config=configs/ml1m.py --workdir=/tmp/ml1m \
        [--config.model.positional=absolute ...]

Restarting with the same --workdir resumes from the latest checkpoint. SIGTERM/SIGINT save
it at the next step boundary and exit with code 75 (errors.EXIT_INTERRUPTED); the rerun then
continues mid-epoch exactly. Exit code 2: a posrec error (one line; --debug for a traceback).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from posrec import parallel, train
from posrec.cli import parse_flags, quiet_orbax_logs, report_errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, results).")
_DEBUG = flags.DEFINE_bool("debug", False, "Show tracebacks for posrec errors.")
# Multi-process runs (launch/README.md); each flag falls back to its POSREC_* variable.
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "host:port of process 0, which hosts the coordinator "
    f"(${parallel.ENV_COORDINATOR}); empty = one process, unless --distributed or SLURM.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", 0, f"Number of processes (${parallel.ENV_NUM_PROCESSES}).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", -1, f"This process's index, 0..num_processes-1 (${parallel.ENV_PROCESS_ID}).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Let JAX find the processes (SLURM, TPU VM) "
    f"(${parallel.ENV_DISTRIBUTED}=1).")
_INIT_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout", 300, "Seconds to wait for every process to join, then fail.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    quiet_orbax_logs()
    with report_errors(_DEBUG.value):
        # Before anything touches a device: JAX must know about the other processes first.
        parallel.initialize_distributed(
            _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
            auto=_DISTRIBUTED.value, timeout_s=_INIT_TIMEOUT.value,
        )
        if not parallel.is_primary():  # one log: process 0's (warnings still show)
            logging.set_verbosity(logging.WARNING)
        results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if parallel.is_primary():
        print(train.format_summary(results), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
