"""Preemption and crash safety, non-finite steps, config/checkpoint errors, progress output.

Every training run here uses one tiny synthetic config (4 steps per epoch, 3 epochs), so the
persistent compilation cache (`jax_compile_cache`) lets all but the first run skip compiling.
Interruptions are real signals: in-process ones are sent with os.kill right after a chosen
step was dispatched, so they land at a known step boundary.
"""

import functools
import json
import logging
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from posrec import checkpoint, config_lib, losses, train
from posrec.data import batching
from posrec.errors import EXIT_INTERRUPTED, CheckpointError, ConfigError, Interrupted
from posrec.models import sasrec

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

REPO = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH, EPOCHS = 4, 3

# The same text is the config file of the CLI runs and, exec'd, the in-process config.
CONFIG_PY = """
from posrec import config_lib


def get_config():
    config = config_lib.default_config()
    config.data.name = "synthetic"
    config.data.synthetic.update(num_users=120, num_items=40, seq_len=16)
    config.data.min_user_count = config.data.min_item_count = 0
    config.model.update(max_len=8, hidden=16, num_blocks=1, dropout=0.1, positional="absolute")
    config.train.update(num_epochs=3, batch_size=32, log_every=1)
    config.eval.batch_size = 64
    return config
"""


def tiny_config(**overrides):
    namespace = {}
    exec(CONFIG_PY, namespace)
    config = namespace["get_config"]()
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run (the reference), with its absl log lines."""
    workdir = tmp_path_factory.mktemp("straight")
    records = _Records()
    logger = logging.getLogger("absl")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        results = train.train_and_evaluate(tiny_config(), workdir)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    return workdir, results, records.messages


def signal_after_step(monkeypatch, plan):
    """Send `plan[step]` (a signal number) to this process right after global step `step`
    (1-based) was dispatched, from the progress line the loop prints then (log_every=1); the
    loop must stop after exactly that step. (Not from the batch iterator: batches are built
    ahead in a background thread.)"""
    real_line = train.Progress.line

    def line(self, step, epoch, pos):
        if step in plan:
            os.kill(os.getpid(), plan[step])
        return real_line(self, step, epoch, pos)

    monkeypatch.setattr(train.Progress, "line", line)


def poison_step(monkeypatch, step):
    """Give global step `step` an item id outside the catalog: its embedding (and so the
    loss and gradients) is NaN. The same shapes, so the compiled step is reused."""
    real_epoch = batching.TrainBatches.epoch

    def epoch(self, e, start_step=0):
        for i, batch in enumerate(real_epoch(self, e, start_step), start_step):
            if e * self.steps_per_epoch() + i + 1 == step:
                batch = dict(batch, inputs=batch["inputs"].copy())
                batch["inputs"][0, -1] = 10**6
            yield batch

    monkeypatch.setattr(batching.TrainBatches, "epoch", epoch)


def _metrics_lines(workdir):
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("epoch_seconds")  # wall clock
    return lines


def _latest_state(workdir):
    """(params, opt_state, meta) of the newest `latest` checkpoint, restored exactly."""
    config = tiny_config()
    model = sasrec.SASRec(config.model, 40)
    state = train.init_state(config, model)
    return checkpoint.restore(checkpoint.manager(workdir, "latest"), state.params, state.opt_state)


def assert_same_run(a, b):
    """Two finished runs are bit-identical: results, logs, per-user ranks, checkpoints."""
    assert (a / "results.json").read_text() == (b / "results.json").read_text()
    assert _metrics_lines(a) == _metrics_lines(b)
    ua, ub = np.load(a / "per_user_test.npz"), np.load(b / "per_user_test.npz")
    np.testing.assert_array_equal(ua["rank"], ub["rank"])
    for kind in ("best", "latest"):
        _, pa, ma = checkpoint.restore_params(a, kind)
        _, pb, mb = checkpoint.restore_params(b, kind)
        assert ma == mb
        jax.tree.map(np.testing.assert_array_equal, pa, pb)
    (_, oa, _), (_, ob, _) = _latest_state(a), _latest_state(b)
    jax.tree.map(np.testing.assert_array_equal, oa, ob)


def test_straight_run_shape(straight):
    workdir, results, _ = straight
    assert results["epochs_trained"] == EPOCHS
    _, _, meta = checkpoint.restore_params(workdir, "latest")
    assert meta["step"] == STEPS_PER_EPOCH * EPOCHS and meta["step_in_epoch"] == 0


def test_two_interruptions_then_resume_equal_uninterrupted(straight, tmp_path, monkeypatch):
    """SIGTERM at a random mid-epoch step, SIGINT at the last step of a later epoch (the
    epoch-end path: validation and checkpoint first), then resume: identical to `straight`."""
    reference, _, _ = straight
    total = STEPS_PER_EPOCH * EPOCHS
    mid = [s for s in range(1, total - STEPS_PER_EPOCH) if s % STEPS_PER_EPOCH]
    first = random.Random(5).choice(mid)
    second = (first // STEPS_PER_EPOCH + 2) * STEPS_PER_EPOCH  # end of the next epoch
    workdir = tmp_path / "run"

    signal_after_step(monkeypatch, {first: signal.SIGTERM})
    with pytest.raises(Interrupted, match=f"SIGTERM: saved checkpoints/latest at step {first} "):
        train.train_and_evaluate(tiny_config(), workdir)
    _, _, meta = _latest_state(workdir)
    assert (meta["step"], meta["epoch"], meta["step_in_epoch"]) == (
        first, first // STEPS_PER_EPOCH, first % STEPS_PER_EPOCH
    )
    assert meta["epoch_loss_count"] == first % STEPS_PER_EPOCH
    assert not (workdir / "results.json").exists()

    signal_after_step(monkeypatch, {second: signal.SIGINT})
    with pytest.raises(Interrupted, match=f"SIGINT: .* step {second} \\(end of epoch"):
        train.train_and_evaluate(tiny_config(), workdir)
    assert _latest_state(workdir)[2]["step_in_epoch"] == 0

    monkeypatch.undo()
    train.train_and_evaluate(tiny_config(), workdir)
    assert_same_run(reference, workdir)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers removed again


def test_hard_crash_resumes_from_the_mid_epoch_checkpoint(straight, tmp_path, monkeypatch):
    """train.checkpoint_every=3: a crash that saves nothing (an exception after step 7, as
    from SIGKILL) leaves checkpoints/latest at step 6, mid-epoch 2 with its 2 losses counted;
    resuming from there is identical to the uninterrupted run (which saved no mid-epoch
    checkpoints)."""
    reference, _, _ = straight
    real_line = train.Progress.line

    def crash_at_7(self, step, epoch, pos):
        if step == 7:
            raise RuntimeError("simulated crash")
        return real_line(self, step, epoch, pos)

    monkeypatch.setattr(train.Progress, "line", crash_at_7)
    workdir = tmp_path / "run"
    config = tiny_config(**{"train.checkpoint_every": 3})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.train_and_evaluate(config, workdir)
    _, _, meta = _latest_state(workdir)
    assert (meta["step"], meta["epoch"], meta["step_in_epoch"]) == (6, 1, 2)
    assert meta["epoch_loss_count"] == 2
    monkeypatch.undo()
    train.train_and_evaluate(config, workdir)
    assert_same_run(reference, workdir)


def _write_csv(path: Path, users: int) -> None:
    """users x 8 interactions over items 1..20 (every item occurs for any users >= 20)."""
    rows = ["user_id,item_id,timestamp"]
    for u in range(users):
        rows += [f"{u},{(u + 3 * j) % 20 + 1},{j}" for j in range(8)]
    path.write_text("\n".join(rows) + "\n")


def test_resume_or_evaluation_on_changed_data_is_refused(tmp_path, monkeypatch):
    """A data file that changes under a run (users added, same 20 items, so the item count
    cannot tell) is refused on resume and by posrec.evaluate, and the run's id maps are not
    overwritten; the original data resumes."""
    from posrec import evaluate

    data = tmp_path / "data.csv"
    _write_csv(data, 40)
    config = tiny_config(**{"data.name": "csv", "data.path": str(data),
                            "data.has_real_time": False})
    workdir = tmp_path / "run"
    signal_after_step(monkeypatch, {3: signal.SIGTERM})
    with pytest.raises(Interrupted):
        train.train_and_evaluate(config, workdir)
    monkeypatch.undo()
    maps = {p.name: p.read_bytes() for p in workdir.glob("*_ids.npy")}
    assert len(maps) == 2
    original = data.read_bytes()
    _write_csv(data, 41)
    with pytest.raises(CheckpointError, match=r"trained on other data \(20 items"):
        train.train_and_evaluate(config, workdir)
    assert {p.name: p.read_bytes() for p in workdir.glob("*_ids.npy")} == maps
    data.write_bytes(original)
    train.train_and_evaluate(config, workdir)  # the original data resumes and finishes
    _write_csv(data, 41)
    with pytest.raises(CheckpointError, match="the data file or its preprocessing changed"):
        evaluate.run(str(workdir))
    data.write_bytes(original)
    assert set(evaluate.run(str(workdir))) >= {"ndcg@10", "hr@10"}


def test_a_second_training_in_a_busy_workdir_is_refused(tmp_path, monkeypatch):
    """While another process holds WORKDIR/.lock (here: another open file description, which
    flock treats like another process), a resume or a fresh run there is refused before
    anything is read or written; once it is released, the run resumes."""
    import fcntl

    workdir = tmp_path / "run"
    signal_after_step(monkeypatch, {2: signal.SIGTERM})
    with pytest.raises(Interrupted):
        train.train_and_evaluate(tiny_config(), workdir)
    monkeypatch.undo()
    before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.name != ".lock"}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for d in (workdir, fresh):
        with open(d / ".lock", "a+") as holder:
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            holder.truncate(0)
            holder.write("pid 4242 on node7\n")
            holder.flush()
            with pytest.raises(ConfigError, match=r"in use by another training \(pid 4242 on "
                                                  r"node7\).*kill -TERM"):
                train.train_and_evaluate(tiny_config(), d)
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.name != ".lock"} == before
    assert sorted(p.name for p in fresh.iterdir()) == [".lock"]
    train.train_and_evaluate(tiny_config(), workdir)  # released: resumes and finishes
    assert (workdir / "results.json").exists()
    assert (workdir / ".lock").read_text().startswith(f"pid {os.getpid()} on ")


def test_crash_while_appending_to_metrics_jsonl_then_resume(straight, tmp_path, monkeypatch):
    """A run killed while appending epoch 2's validation line leaves a cut-off last line (the
    line is written before epoch 2's checkpoint, so latest is still epoch 1's): the resume
    drops it and redoes epoch 2, identical to the uninterrupted run."""
    reference, _, _ = straight
    real = train._write_scalars

    def crash_after_writing_step_8(tb, split, metrics, step):
        if step == 2 * STEPS_PER_EPOCH:
            raise RuntimeError("simulated crash")
        return real(tb, split, metrics, step)

    monkeypatch.setattr(train, "_write_scalars", crash_after_writing_step_8)
    workdir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.train_and_evaluate(tiny_config(), workdir)
    monkeypatch.undo()
    assert _latest_state(workdir)[2]["step"] == STEPS_PER_EPOCH
    log = workdir / "metrics.jsonl"
    first, second = log.read_text().splitlines()
    log.write_text(first + "\n" + second[:30])  # the kill came mid-write
    train.train_and_evaluate(tiny_config(), workdir)
    assert_same_run(reference, workdir)


def test_metrics_jsonl_damage_other_than_a_cut_off_last_line(tmp_path, caplog):
    log = tmp_path / "metrics.jsonl"
    a, b = json.dumps(dict(step=4, epoch=1)), json.dumps(dict(step=8, epoch=2))
    log.write_text(a + "\n" + b + "\n")
    train._truncate_jsonl(log, 4)  # a complete line after the checkpoint: dropped
    assert log.read_text() == a + "\n"
    log.write_text(a + "\n" + b + "\n" + '{"step": 12, "ep')
    with caplog.at_level("WARNING"):
        train._truncate_jsonl(log, 12)
    assert log.read_text() == a + "\n" + b + "\n"
    assert "incomplete last line 3" in caplog.text
    for damaged in (a + "\n" + '{"step": 8, "ep\n' + b + "\n", a + "\n" + b + "\n{oops}\n"):
        log.write_text(damaged)
        with pytest.raises(CheckpointError, match=re.escape(f"{log}: line ")):
            train._truncate_jsonl(log, 12)
        assert log.read_text() == damaged  # left as it was


@pytest.mark.parametrize("content", [b'{"model": {"hidden": 6', b"[1, 2]", b"\xff\xfe{}"])
def test_damaged_config_json_is_a_config_error(tmp_path, content):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'config.json'} is unreadable")):
        config_lib.load(tmp_path)
    with pytest.raises(ConfigError, match="config.json is unreadable"):
        checkpoint.restore_params(tmp_path)  # what evaluate / recommend call
    with pytest.raises(ConfigError, match="config.json is unreadable"):
        config_lib.save_or_check(tiny_config(), tmp_path)  # what a resumed training calls


def test_a_best_checkpoint_newer_than_the_resumed_step_is_discarded(straight, tmp_path,
                                                                     monkeypatch):
    """A crash between saving `best` and `latest` leaves a best step the resumed run never
    chose (here: a foreign best at step 99, after an interruption at step 5). The resume
    removes it, and the run ends as the uninterrupted one, testing its own best."""
    reference, ref_results, _ = straight
    workdir = tmp_path / "run"
    signal_after_step(monkeypatch, {5: signal.SIGTERM})
    with pytest.raises(Interrupted):
        train.train_and_evaluate(tiny_config(), workdir)
    monkeypatch.undo()
    params, opt_state, meta = _latest_state(workdir)
    foreign = jax.tree.map(lambda x: x + 1.0, params)
    checkpoint.save(checkpoint.manager(workdir, "best"), 99, foreign, opt_state,
                    dict(meta, step=99))
    results = train.train_and_evaluate(tiny_config(), workdir)
    assert 99 not in checkpoint.manager(workdir, "best").all_steps()
    assert results["best_step"] == ref_results["best_step"]
    assert_same_run(reference, workdir)


def test_resume_with_num_epochs_lowered_to_the_epochs_done(tmp_path, monkeypatch):
    """eval_every=3: a SIGINT at the end of epoch 2 leaves an unvalidated state and no best
    checkpoint. Resumed with num_epochs=1 (shorter than what was trained) the run validates
    that state, stops and tests it: the same test metrics as a run of num_epochs=2, which
    validates its last epoch on schedule. (Before, the final test found no best checkpoint.)"""
    reference = train.train_and_evaluate(
        tiny_config(**{"train.num_epochs": 2, "train.eval_every": 3}), tmp_path / "ref")
    workdir = tmp_path / "run"
    signal_after_step(monkeypatch, {2 * STEPS_PER_EPOCH: signal.SIGINT})
    with pytest.raises(Interrupted, match="end of epoch 2"):
        train.train_and_evaluate(tiny_config(**{"train.eval_every": 3}), workdir)
    monkeypatch.undo()
    assert checkpoint.manager(workdir, "best").all_steps() == []
    results = train.train_and_evaluate(
        tiny_config(**{"train.num_epochs": 1, "train.eval_every": 3}), workdir)
    assert results["epochs_trained"] == 2 and results["best_epoch"] == 2
    assert results["best_step"] == reference["best_step"] == 2 * STEPS_PER_EPOCH
    assert results["test"] == reference["test"] and results["valid"] == reference["valid"]
    lines = _metrics_lines(workdir)
    assert [(x["epoch"], x["step"], x["train_loss"]) for x in lines] == [
        (2, 2 * STEPS_PER_EPOCH, None)]
    assert _latest_state(workdir)[2]["validated_step"] == 2 * STEPS_PER_EPOCH


def test_resume_with_num_epochs_lowered_below_a_mid_epoch_checkpoint(tmp_path, monkeypatch,
                                                                      caplog):
    """A SIGTERM 2 batches into epoch 2, resumed with num_epochs=1: the run cannot untrain,
    so it says so, validates and tests the state it has (step 6) and stops."""
    workdir, mid = tmp_path / "run", STEPS_PER_EPOCH + 2
    signal_after_step(monkeypatch, {mid: signal.SIGTERM})
    with pytest.raises(Interrupted, match=f"at step {mid} "):
        train.train_and_evaluate(tiny_config(**{"train.eval_every": 3}), workdir)
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger="absl"):
        results = train.train_and_evaluate(
            tiny_config(**{"train.num_epochs": 1, "train.eval_every": 3}), workdir)
    assert "trained past train.num_epochs=1 (to epoch 1, batch 2 of the next)" in caplog.text
    assert results["best_step"] == mid and results["epochs_trained"] == 1
    assert [(x["step"], x["train_loss"]) for x in _metrics_lines(workdir)] == [(mid, None)]


def test_signal_at_a_checkpoint_every_step_saves_it_once(tmp_path, monkeypatch):
    """SIGTERM right after step 6 with train.checkpoint_every=3: the periodic save of step 6
    is the interruption's checkpoint; no step is written twice (a rewrite deletes the step
    first, which a kill in between would lose)."""
    saved = []
    real_save = checkpoint.save

    def counting_save(mngr, step, *args):
        saved.append((Path(mngr.directory).name, step))
        return real_save(mngr, step, *args)

    monkeypatch.setattr(checkpoint, "save", counting_save)
    signal_after_step(monkeypatch, {6: signal.SIGTERM})
    with pytest.raises(Interrupted, match="saved checkpoints/latest at step 6 "):
        train.train_and_evaluate(tiny_config(**{"train.checkpoint_every": 3}), tmp_path / "r")
    latest = [step for kind, step in saved if kind == "latest"]
    assert latest == [3, 4, 6]
    assert _latest_state(tmp_path / "r")[2]["step"] == 6


def _cli(args, **kw):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cache = jax.config.jax_compilation_cache_dir
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,
    )


def test_cli_sigterm_exits_75_with_resume_hint(straight, tmp_path):
    """A real SIGTERM from outside, while `python -m posrec.main` trains: exit code 75, a
    line saying how to resume, and the resumed run equals the uninterrupted one."""
    reference, _, _ = straight
    config_file = tmp_path / "tiny.py"
    config_file.write_text(CONFIG_PY)
    workdir = tmp_path / "run"
    target = random.Random(7).randint(1, STEPS_PER_EPOCH * EPOCHS - 4)
    proc = _cli(["-m", "posrec.main", f"--config={config_file}", f"--workdir={workdir}"])
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if f"step {target}/" in line:
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=300)
    err = "".join(seen) + err
    assert proc.returncode == EXIT_INTERRUPTED, err[-3000:]
    assert "posrec: stopped by SIGTERM: saved checkpoints/latest at step" in err
    assert f"posrec: resume with: python -m posrec.main --config={config_file} " in err
    assert not (workdir / "results.json").exists()
    _, _, meta = _latest_state(workdir)
    assert target <= meta["step"] < STEPS_PER_EPOCH * EPOCHS
    train.train_and_evaluate(tiny_config(), workdir)
    assert_same_run(reference, workdir)


KILL_DURING_RENAME = """
import os, signal, sys
from orbax.checkpoint._src.path import async_path

real_rename, kill_at = async_path.rename, sys.argv[1]


async def rename(src, dst):  # orbax commits each item, then the step, by renaming its tmp dir
    if kill_at in str(src):
        os.kill(os.getpid(), signal.SIGKILL)
    return await real_rename(src, dst)


async_path.rename = rename
from absl import app
from posrec import main
sys.argv = ["posrec.main"] + sys.argv[2:]
app.run(main.main)
"""


def test_sigkill_during_checkpoint_save_then_resume(straight, tmp_path):
    """SIGKILL in the middle of saving `latest` at the end of epoch 2 (its meta and optimizer
    state written, the params not yet committed), right after `best` was saved at the same
    step: the half-written save stays a temporary directory that restore skips; the resumed
    run removes it, replays epoch 2, saves `best` at that step again, and equals the
    uninterrupted run."""
    reference, _, _ = straight
    config_file = tmp_path / "tiny.py"
    config_file.write_text(CONFIG_PY)
    script = tmp_path / "kill_during_save.py"
    script.write_text(KILL_DURING_RENAME)
    workdir = tmp_path / "run"
    step = 2 * STEPS_PER_EPOCH
    kill_at = f"latest/{step}.orbax-checkpoint-tmp/params.orbax-checkpoint-tmp"
    proc = _cli([str(script), kill_at, f"--config={config_file}", f"--workdir={workdir}"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    leftovers = [p.relative_to(workdir) for p in workdir.glob("checkpoints/*/*tmp*")]
    assert leftovers == [Path(f"checkpoints/latest/{step}.orbax-checkpoint-tmp")]
    assert checkpoint.manager(workdir, "latest").all_steps() == [STEPS_PER_EPOCH]
    assert step in checkpoint.manager(workdir, "best").all_steps()
    assert _latest_state(workdir)[2]["step"] == STEPS_PER_EPOCH  # the tmp dir is skipped
    train.train_and_evaluate(tiny_config(), workdir)
    assert not list((workdir / "checkpoints").glob("*/*.orbax-checkpoint-tmp*"))
    assert_same_run(reference, workdir)


# ------------------------------------------------------------------------------------------
# Half-written or corrupt checkpoint directories (what a SIGKILL or a full disk leaves).


def _save_two(tmp_path):
    mngr = checkpoint.manager(tmp_path, "latest")
    for step in (1, 2):
        params = {"w": np.full((4, 3), float(step), np.float32)}
        checkpoint.save(mngr, step, params, {"mu": np.full(3, -float(step))}, {"step": step})
    return tmp_path / "checkpoints" / "latest"


def _files(d):
    return [p for p in sorted(d.rglob("*")) if p.is_file()]


def _corrupt(root, mode):
    step2 = root / "2"
    if mode == "tmp_dir_of_newer_step":
        tmp = root / "3.orbax-checkpoint-tmp-1700000000"
        shutil.copytree(step2, tmp)
        for f in _files(tmp / "params"):
            f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
        return 2
    if mode == "params_dir_missing":
        shutil.rmtree(step2 / "params")
    elif mode == "meta_missing":
        shutil.rmtree(step2 / "meta")
    elif mode == "files_truncated":
        for f in _files(step2):
            f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    elif mode == "files_garbage":
        for f in _files(step2):
            f.write_bytes(os.urandom(max(f.stat().st_size, 8)))
    elif mode == "meta_not_json":
        for f in _files(step2 / "meta"):
            f.write_text("{not json")
    elif mode == "empty_step_dir":
        shutil.rmtree(step2)
        step2.mkdir()
    return 1


@pytest.mark.parametrize(
    "mode",
    ["tmp_dir_of_newer_step", "params_dir_missing", "meta_missing", "files_truncated",
     "files_garbage", "meta_not_json", "empty_step_dir"],
)
def test_restore_uses_or_skips_damaged_steps(tmp_path, mode):
    root = _save_two(tmp_path)
    expected = _corrupt(root, mode)
    like_p, like_o = {"w": np.zeros((4, 3), np.float32)}, {"mu": np.zeros(3)}
    params, opt_state, meta = checkpoint.restore(checkpoint.manager(tmp_path, "latest"),
                                                 like_p, like_o)
    assert meta == {"step": expected}
    np.testing.assert_array_equal(params["w"], np.full((4, 3), float(expected)))
    np.testing.assert_array_equal(opt_state["mu"], np.full(3, -float(expected)))


def test_restore_all_steps_corrupt_is_a_checkpoint_error(tmp_path):
    root = _save_two(tmp_path)
    for f in _files(root):
        f.write_bytes(b"\0garbage")
    with pytest.raises(CheckpointError, match="no restorable checkpoint.*Delete the directory"):
        checkpoint.restore(checkpoint.manager(tmp_path, "latest"),
                           {"w": np.zeros((4, 3), np.float32)}, {"mu": np.zeros(3)})
    with pytest.raises(CheckpointError, match="no restorable latest checkpoint"):
        config_lib.write_json_atomic(tmp_path / "config.json", config_lib.to_dict(tiny_config()))
        checkpoint.restore_params(tmp_path, "latest")


def test_checkpoint_of_another_model_is_a_checkpoint_error(tmp_path):
    _save_two(tmp_path)
    mngr = checkpoint.manager(tmp_path, "latest")
    mu = {"mu": np.zeros(3)}
    with pytest.raises(CheckpointError, match=r"\['w'\] is float32\[4, 3\] there, "
                                              r"float32\[8, 3\] here; use a new --workdir"):
        checkpoint.restore(mngr, {"w": np.zeros((8, 3), np.float32)}, mu)
    with pytest.raises(CheckpointError, match="does not match this config's model"):
        checkpoint.restore(mngr, {"v": np.zeros((4, 3), np.float32)}, mu)


def test_resume_with_checkpoint_of_another_data_set_is_refused(straight, tmp_path):
    """config.json edited by hand (so the config check passes) but the checkpoint holds a
    model for another catalog: a clear error, and the run directory is left as it was."""
    reference, _, _ = straight
    workdir = tmp_path / "copy"
    shutil.copytree(reference, workdir)
    (workdir / "results.json").unlink()
    config = tiny_config(**{"data.min_item_count": 0})
    config.data.synthetic.num_items = 48
    config_lib.write_json_atomic(workdir / "config.json", config_lib.to_dict(config))
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*") if p.name != ".lock")
    with pytest.raises((ConfigError, CheckpointError), match="48|does not match"):
        train.train_and_evaluate(config, workdir)
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                  if p.name != ".lock") == before


# ------------------------------------------------------------------------------------------
# Non-finite steps.


def test_nonfinite_step_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    """A NaN at the LAST step of epoch 2 (metrics are read one step late, so this is the case
    where a careless loop would save the bad state at the epoch end): the error names the
    step, and the newest checkpoint is the end of epoch 1, finite."""
    bad = 2 * STEPS_PER_EPOCH
    poison_step(monkeypatch, bad)
    with pytest.raises(train.NonFiniteError,
                       match=f"at step {bad} \\(epoch 2, batch 4/4\\).*latest keeps the last "
                             f"good state \\(step {STEPS_PER_EPOCH}\\)"):
        train.train_and_evaluate(tiny_config(), tmp_path)
    for kind in ("latest", "best"):
        steps = checkpoint.manager(tmp_path, kind).all_steps()
        assert max(steps) == STEPS_PER_EPOCH, (kind, steps)
    params, opt_state, meta = _latest_state(tmp_path)
    assert meta["step"] == STEPS_PER_EPOCH
    assert all(np.isfinite(x).all() for x in jax.tree.leaves((params, opt_state)))
    assert [x["epoch"] for x in _metrics_lines(tmp_path)] == [1]


def test_skip_nonfinite_drops_the_update_and_counts_it(tmp_path, monkeypatch):
    poison_step(monkeypatch, STEPS_PER_EPOCH + 2)
    train.train_and_evaluate(tiny_config(**{"train.skip_nonfinite": True}), tmp_path)
    assert [x["skipped_steps"] for x in _metrics_lines(tmp_path)] == [0, 1, 1]
    params, opt_state, meta = _latest_state(tmp_path)
    assert meta["skipped_steps"] == 1 and meta["step"] == STEPS_PER_EPOCH * EPOCHS
    assert all(np.isfinite(x).all() for x in jax.tree.leaves((params, opt_state)))


def test_train_step_leaves_state_unchanged_on_a_poisoned_batch():
    """Directly: a non-finite step returns the same params and optimizer state (bitwise),
    with only `step` advanced, and reports finite=False."""
    config = tiny_config()
    model = sasrec.SASRec(config.model, 40)
    state = train.init_state(config, model)
    # the training loop's per-device step, on one device without posrec.parallel's wrapper
    step = jax.jit(functools.partial(train.train_step, model=model,
                                     loss_fn=losses.make_loss(config.train, None)),
                   donate_argnums=0)
    inputs = np.tile(np.arange(1, 9, dtype=np.int32), (32, 1))
    batch = {"inputs": inputs, "targets": np.roll(inputs, -1, axis=1)}
    before = jax.device_get(state.params)
    good, m_good = step(state, batch, jax.random.key(0))
    assert bool(m_good["finite"])
    assert not np.array_equal(good.params["item_embed"]["embedding"],
                              before["item_embed"]["embedding"])
    good_host = jax.device_get((good.params, good.opt_state, int(good.step)))
    batch["inputs"] = batch["inputs"].copy()
    batch["inputs"][1, 3] = 10**6
    bad, m_bad = step(good, batch, jax.random.key(0))
    assert not bool(m_bad["finite"]) and not np.isfinite(float(m_bad["loss"]))
    assert int(bad.step) == good_host[2] + 1
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(bad.params), good_host[0])
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(bad.opt_state), good_host[1])


@pytest.mark.slow  # a learning rate is a constant of the compiled step: a fresh compilation
def test_huge_learning_rate_is_caught_with_the_step(tmp_path):
    with pytest.raises(train.NonFiniteError, match=r"non-finite loss .* at step \d+ \(epoch 1"):
        train.train_and_evaluate(tiny_config(**{"train.learning_rate": 1e6}), tmp_path)
    assert not (tmp_path / "results.json").exists()


# ------------------------------------------------------------------------------------------
# Config errors: rejected before anything is read or written.


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda c: setattr(c.train, "learning_rte", 1e-3), "did you mean train.learning_rate"),
        (lambda c: setattr(c, "optimiser", "sgd"), "unknown config key"),
        (lambda c: setattr(c.train, "learning_rate", float("inf")), "learning_rate"),
        (lambda c: setattr(c.train, "learning_rate", float("nan")), "learning_rate"),
        (lambda c: setattr(c.data, "columns", ("u", "u", "t")), "3 different columns"),
        (lambda c: setattr(c.eval, "ks", (10, 2.5)), "positive integers"),
        (lambda c: setattr(c.model.kernel, "init_noise", -0.1), "init_noise"),
        (lambda c: setattr(c.model, "dropout", 1.0), "dropout"),
        (lambda c: setattr(c.train, "batch_size", 0), "batch_size"),
    ],
)
def test_impossible_config_rejected_up_front(tmp_path, edit, match):
    config = tiny_config()
    edit(config)
    with pytest.raises(ConfigError, match=match):
        train.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_new_config_keys_at_default_do_not_block_resuming_an_older_run(tmp_path):
    old = config_lib.to_dict(tiny_config())
    del old["train"]["skip_nonfinite"], old["data"]["drop_duplicates"]
    config_lib.write_json_atomic(tmp_path / "config.json", old)
    config_lib.save_or_check(tiny_config(), tmp_path)  # no error
    config_lib.write_json_atomic(tmp_path / "config.json", old)
    with pytest.raises(ConfigError, match="data.drop_duplicates"):
        config_lib.save_or_check(tiny_config(**{"data.drop_duplicates": True}), tmp_path)


# ------------------------------------------------------------------------------------------
# Progress line, TensorBoard events, summary table.


def test_progress_lines(straight):
    _, _, messages = straight
    lines = [m for m in messages if m.startswith("step ")]
    assert len(lines) == STEPS_PER_EPOCH * EPOCHS  # log_every=1
    pattern = re.compile(
        r"step (\d+)/12 \| epoch (\d)/3 batch (\d)/4 \| loss (nan|\d+\.\d{4}) \| "
        r"(\d+|\?) examples/s \| ETA epoch (\d+:\d\d|\?), run (\d+:\d\d|\?)( \+ validation)?"
    )
    for k, line in enumerate(lines, 1):
        m = pattern.fullmatch(line)
        assert m, line
        step, epoch, batch = int(m[1]), int(m[2]), int(m[3])
        assert step == k and epoch == (k - 1) // 4 + 1 and batch == (k - 1) % 4 + 1
    # step 1: nothing has finished yet (compiling), so no loss, speed or ETA
    assert lines[0].endswith("loss nan | ? examples/s | ETA epoch ?, run ? + validation")
    # the clock restarts with each epoch (validation is not training speed)
    assert all("| ? examples/s | ETA epoch ?, run ?" in line for line in lines[::4])
    assert all(re.search(r"\| \d+ examples/s", line) for k, line in enumerate(lines) if k % 4)
    assert all(" ETA epoch 0:00," in line for line in lines[3::4])  # last batch of an epoch
    assert lines[3].endswith(" + validation")  # no validation timed before epoch 1 ends
    assert not lines[5].endswith(" + validation")


def test_progress_eta_counts_remaining_steps_and_evaluations():
    config = tiny_config(**{"train.num_epochs": 10, "train.eval_every": 3})
    p = train.Progress(config, steps_per_epoch=100, step=0)
    assert p.evals_left(0) == len([3, 6, 9, 10]) + 2  # + final valid and test
    assert p.evals_left(9) == 1 + 2  # the 10th epoch (in progress) still validates
    assert p.line(1, 0, 1).endswith("? examples/s | ETA epoch ?, run ? + validation")
    p.fetched(0, 3.0)  # the first step finished: the clock starts
    p.eval_seconds = 5.0
    p._t -= 10.0  # pretend the 50 steps since then took 10 s
    p.fetched(1, 5.0)
    line = p.line(50, 0, 50)
    assert "| loss 4.0000 |" in line
    # epoch: 50 steps * 0.2 s; run: 950 steps * 0.2 s + 6 evaluations * 5 s = 220 s
    assert "ETA epoch 0:10, run 3:40" in line, line
    assert "160 examples/s" in line  # 32 / 0.2 s


def _tb_scalars(directory):
    """{tag: [(step, value)]} from tensorboardX event files (TFRecord framing, no TF)."""
    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_events(straight):
    workdir, results, _ = straight
    scalars = _tb_scalars(workdir / "tb")
    assert {"train/loss", "train/examples_per_second", "train/epoch_loss",
            "valid/ndcg_10", "valid/hr_10", "test/ndcg_10"} <= set(scalars)
    lines = _metrics_lines(workdir)
    assert [s for s, _ in scalars["valid/ndcg_10"]] == [x["step"] for x in lines]
    np.testing.assert_allclose([v for _, v in scalars["valid/ndcg_10"]],
                               [x["metrics"]["ndcg@10"] for x in lines], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in scalars["train/epoch_loss"]],
                               [x["train_loss"] for x in lines], rtol=1e-6)
    assert scalars["test/ndcg_10"] == [
        (results["best_step"], pytest.approx(results["test"]["ndcg@10"], rel=1e-6))
    ]


def test_summary_table(straight):
    _, results, _ = straight
    table = train.format_summary(results).splitlines()
    assert table[0].split() == ["metric", "valid", "test"]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:-1]}
    assert set(rows) == {f"{m}@{k}" for m in ("ndcg", "hr", "mrr", "cov") for k in (5, 10, 20)}
    for name, (valid, test) in rows.items():
        assert float(valid) == pytest.approx(results["valid"][name], abs=5e-5)
        assert float(test) == pytest.approx(results["test"][name], abs=5e-5)
    assert table[-1].startswith(f"best epoch {results['best_epoch']} (step {results['best_step']})")
