"""Multi-process runs: 2 jax.distributed processes on localhost CPU (tests/distributed_worker.py).

Each process has one CPU device; they find each other through a coordinator on a free
localhost port, exactly as on a cluster (launch/README.md), and run the CPU collectives
through gloo.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import distributed_worker as dw
import jax
import numpy as np
import pytest

from posrec import evaluate, parallel
from posrec.errors import EXIT_INTERRUPTED, ConfigError

# The single-device reference steps of parallel_test and distributed_test are one program:
# with the persistent compilation cache the second module loads it instead of compiling.
pytestmark = pytest.mark.usefixtures("jax_compile_cache")
TESTS = Path(__file__).parent
ROOT = TESTS.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, mode: str, *extra: str, timeout: int = 600) -> list[tuple[int, str]]:
    """Runs the worker as 2 processes; (exit code, stderr) of each."""
    port = free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, POSREC_COORDINATOR=f"127.0.0.1:{port}", POSREC_NUM_PROCESSES="2",
                   POSREC_PROCESS_ID=str(pid),
                   XLA_FLAGS="--xla_force_host_platform_device_count=1")
        procs.append(subprocess.Popen(
            [sys.executable, str(TESTS / "distributed_worker.py"), str(out), mode, *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        ))
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append((proc.returncode, err))
    return results


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_processes")
    for code, err in launch(out, "sharding"):
        assert code == 0, err[-4000:]
    return out


def test_two_processes_end_with_identical_parameters_equal_to_one_process(two_process_run):
    """Each process fed only its half of every global batch; both hold the same parameters,
    those of one process training on the whole batches (SGD, see parallel_worker)."""
    p0 = dict(np.load(two_process_run / "params_0.npz"))
    p1 = dict(np.load(two_process_run / "params_1.npz"))
    assert p0.keys() == p1.keys() and p0
    for name in p0:
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
    want = {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_leaves_with_path(dw.train_epoch(None, (0, 1)))}
    for name, value in want.items():
        np.testing.assert_allclose(p0[name], value, atol=1e-5, err_msg=name)


def test_two_process_checkpoint_restores_in_a_one_process_evaluation(two_process_run):
    """Both processes saved the checkpoint together and evaluated 120 users (batches of 25
    over 2 processes); `posrec.evaluate.run` here, in one process, gets the same metrics."""
    want = json.loads((two_process_run / "eval.json").read_text())
    assert want["num_users"] == 120
    got = evaluate.run(str(two_process_run / "run"), "test")
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.slow
def test_launch_script_runs_posrec_main_on_two_processes(tmp_path):
    """launch/local_multiprocess.sh end to end: one results.json, one line per validation,
    and the run's best checkpoint evaluates the same in this process."""
    run = tmp_path / "run"
    proc = subprocess.run(
        ["launch/local_multiprocess.sh", "2", "--config=configs/quickstart.py",
         f"--workdir={run}", "--config.data.synthetic.num_users=300",
         "--config.data.synthetic.num_items=40", "--config.data.synthetic.seq_len=16",
         "--config.model.max_len=12",
         "--config.model.hidden=16", "--config.train.num_epochs=2",
         "--config.train.eval_every=1", "--config.train.batch_size=64",
         "--config.eval.batch_size=50"],
        cwd=ROOT, env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]  # one writer: no duplicates
    assert "best epoch" not in (run / "process_1.log").read_text()  # summary from process 0
    got = evaluate.run(str(run), "test")
    for key, value in results["test"].items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_unreachable_coordinator_times_out_with_a_clear_message(tmp_path):
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "posrec.main", "--config=configs/quickstart.py",
         f"--workdir={tmp_path / 'run'}", f"--coordinator_address=127.0.0.1:{free_port()}",
         "--num_processes=2", "--process_id=1", "--initialization_timeout=5"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "could not join the distributed run at coordinator 127.0.0.1:" in proc.stderr
    assert "within 5s" in proc.stderr and "Nothing accepts connections" in proc.stderr
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "run").exists()


def test_processes_disagreeing_on_the_config_stop_with_a_clear_error(tmp_path):
    for code, err in launch(tmp_path, "sharding", "disagree", timeout=300):
        assert code == 2, err[-4000:]
        assert "processes disagree on the config: process(es) [1] differ" in err
    assert not (tmp_path / "run").exists()  # checked before anything is written


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2),
         "process_id < num_processes"),
        (dict(coordinator_address="127.0.0.1:1234", num_processes=0, process_id=0),
         "num_processes >= 1"),
        (dict(coordinator_address="localhost", num_processes=2, process_id=0), "host:port"),
    ],
)
def test_bad_coordinator_arguments_are_config_errors(kwargs, match, monkeypatch):
    for var in (parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match=match):
        parallel.initialize_distributed(**kwargs)


def test_single_process_needs_no_coordinator(monkeypatch):
    for var in ("POSREC_COORDINATOR", "POSREC_DISTRIBUTED", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(var, raising=False)
    assert parallel.initialize_distributed() is False
    # sbatch exports the allocation's task count to the batch script itself, where a plain
    # run (or a sweep's child) is one process: only a job step's own count means peers.
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    assert parallel.initialize_distributed() is False
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert parallel.initialize_distributed() is False


def test_failed_auto_detection_is_a_config_error(monkeypatch):
    """--distributed outside any cluster: one clear error, and the join watchdog (which
    would os._exit the process after the timeout) is disarmed."""
    for var in [v for v in os.environ if v.startswith(("SLURM_", "POSREC_", "TPU_"))]:
        monkeypatch.delenv(var, raising=False)
    for var in ("CLOUD_TPU_TASK_ID", "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="could not start the distributed run.*leave out "
                                          "--distributed"):
        parallel.initialize_distributed(auto=True, timeout_s=1)
    time.sleep(1.5)  # a watchdog still armed would have ended this process by now


@pytest.mark.slow
def test_two_processes_with_pmap(tmp_path):
    for code, err in launch(tmp_path, "pmap"):
        assert code == 0, err[-4000:]
    p0 = dict(np.load(tmp_path / "params_0.npz"))
    p1 = dict(np.load(tmp_path / "params_1.npz"))
    want = {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_leaves_with_path(dw.train_epoch(None, (0, 1)))}
    for name, value in want.items():
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
        np.testing.assert_allclose(p0[name], value, atol=1e-5, err_msg=name)
    want = json.loads((tmp_path / "eval.json").read_text())
    got = evaluate.run(str(tmp_path / "run"), "test")
    assert all(got[k] == pytest.approx(v, abs=1e-12) for k, v in want.items())


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step_and_resumes(tmp_path):
    """A preemption signal that reaches one process only: both agree, save the same step
    (a collective save), exit 75; the same command then finishes the run."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "posrec.main", "--config=configs/quickstart.py",
            f"--workdir={run}", "--config.data.synthetic.num_users=300",
            "--config.data.synthetic.num_items=40", "--config.data.synthetic.seq_len=16",
            "--config.model.max_len=12", "--config.model.hidden=16",
            "--config.train.num_epochs=50", "--config.train.batch_size=16",
            "--config.train.log_every=1", "--config.eval.batch_size=50"]

    def start(*extra: str) -> list[tuple[subprocess.Popen, Path]]:
        port, procs = free_port(), []
        for pid in range(2):
            log = tmp_path / f"p{pid}_{time.monotonic_ns()}.log"
            env = dict(os.environ, POSREC_COORDINATOR=f"127.0.0.1:{port}",
                       POSREC_NUM_PROCESSES="2", POSREC_PROCESS_ID=str(pid),
                       XLA_FLAGS="--xla_force_host_platform_device_count=1")
            with open(log, "w") as f:
                procs.append((subprocess.Popen([*args, *extra], cwd=ROOT, env=env, stdout=f,
                                               stderr=subprocess.STDOUT), log))
        return procs

    procs = start()
    deadline = time.monotonic() + 600
    while "step 3/" not in procs[0][1].read_text():  # training (process 0 logs)
        assert time.monotonic() < deadline and procs[0][0].poll() is None, \
            procs[0][1].read_text()[-3000:]
        time.sleep(0.1)
    procs[1][0].send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=300) for p, _ in procs]
    logs = [log.read_text() for _, log in procs]
    assert codes == [EXIT_INTERRUPTED, EXIT_INTERRUPTED], logs[0][-2000:] + logs[1][-2000:]
    assert "stopped by a signal to another process" in logs[0]
    assert "stopped by SIGTERM" in logs[1]
    saved = {re.search(r"saved checkpoints/latest at step (\d+)", x).group(1) for x in logs}
    assert len(saved) == 1  # the same step on both processes
    assert not (run / "results.json").exists()

    step = int(saved.pop())
    assert step < 50 * 19  # stopped long before the end (19 steps per epoch)
    procs = start(f"--config.train.num_epochs={step // 19 + 2}")  # a shorter rest
    codes = [p.wait(timeout=600) for p, _ in procs]
    assert codes == [0, 0], procs[0][1].read_text()[-3000:]
    assert f"resumed from step {step}" in procs[0][1].read_text()
    assert json.loads((run / "results.json").read_text())["epochs_trained"] == step // 19 + 2
