"""Training loop: pure jitted `train_step`, per-epoch validation, early stopping, resume.

The loop owns all side effects (checkpoints, logs, results); `train_step` and the scorer
are pure functions of arrays. Dropout randomness is `fold_in(seed_key, step)`, and the data
order depends only on (seed, epoch), so a run resumed from `checkpoints/latest` replays
exactly what an uninterrupted run would have done.

Preemption: SIGTERM/SIGINT only set a flag; the loop saves `latest` at the next step boundary
(with the position inside the epoch and the epoch's running loss) and raises `Interrupted`,
which the CLI turns into exit code 75 and a resume hint. A non-finite loss, gradient or update
is dropped inside the jitted step, so the parameters never hold NaN/inf; the loop then stops
with `NonFiniteError` (no checkpoint is written after the bad step), or with
`train.skip_nonfinite` counts the skipped update and goes on.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.training import train_state

from posrec import checkpoint, config_lib, evaluate, losses, parallel
from posrec.data import batching, load_split
from posrec.data.preprocess import save_id_maps
from posrec.errors import CheckpointError, ConfigError, Interrupted, PosrecError
from posrec.models import sasrec

Array = jax.Array
TrainState = train_state.TrainState


class NonFiniteError(PosrecError):
    """The loss, gradient or update became NaN/inf; the last good checkpoint is kept."""


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam(W) with optional global-norm clipping."""
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    parts.append(optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay))
    return optax.chain(*parts)


def init_state(config: ml_collections.ConfigDict, model: sasrec.SASRec) -> TrainState:
    """Parameters from `config.seed` (N(0, 0.02) weights), fresh optimizer state."""
    dummy_BxT = jnp.ones((1, config.model.max_len), jnp.int32)
    params = model.init(jax.random.key(config.seed), dummy_BxT, train=False)["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(config.train))


def train_step(
    state: TrainState,
    batch: dict[str, Array],
    rng: Array,
    *,
    model: sasrec.SASRec,
    loss_fn: losses.LossFn,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, Array]]:
    """One optimizer step; `rng` is the run's base key.

    `batch`: "inputs", "targets" int32 [B, T] and optionally "rows" int32 [B], the rows'
    indices in the global batch (default 0..B-1). `parallel.Plan.make_train_step` runs this
    function on every device with its B/D rows and `axis_name="data"`: the loss is
    Σ(per-position losses of all devices) / (targets of all devices) and its gradient is
    psummed, so D devices compute the loss and update of one device on the global batch,
    however the padding rows are spread. Dropout keys are fold_in(step key, row) per example
    and the loss's negatives depend on the step key and rows only, for the same reason.

    The update is applied only when the loss, the gradient norm and the new parameters are
    all finite (`metrics["finite"]`); otherwise params and optimizer state stay as they were
    (selected on device, no host round trip) and only `step` advances, so the data order and
    dropout keys of later steps do not depend on whether a step was skipped.
    """
    drop_rng, loss_rng = jax.random.split(jax.random.fold_in(rng, state.step))
    inputs_BxT, targets_BxT = batch["inputs"], batch["targets"]
    rows_B = batch.get("rows", jnp.arange(inputs_BxT.shape[0], dtype=jnp.int32))
    drop_keys_B = jax.vmap(jax.random.fold_in, (None, 0))(drop_rng, rows_B)
    count = jnp.sum(targets_BxT > 0).astype(jnp.float32)
    if axis_name is not None:
        count = jax.lax.psum(count, axis_name)

    def apply_one(params, inputs_T, key):  # one example, its own dropout key
        return model.apply(
            {"params": params}, inputs_T[None], train=True, rngs={"dropout": key}
        )[0]

    def global_loss_part(params):
        hidden_BxTxC = jax.vmap(apply_one, (None, 0, 0))(params, inputs_BxT, drop_keys_B)
        per_pos_BxT = loss_fn(
            hidden_BxTxC, sasrec.item_table(params), targets_BxT, loss_rng, rows_B
        )
        total, _ = losses.masked_sum(per_pos_BxT, targets_BxT)
        return total / jnp.maximum(count, 1.0)

    value, grads = jax.value_and_grad(global_loss_part)(state.params)
    if axis_name is not None:
        value, grads = jax.lax.psum((value, grads), axis_name)
    updated = state.apply_gradients(grads=grads)
    grad_norm = optax.tree_utils.tree_norm(grads)
    finite = jnp.isfinite(value) & jnp.isfinite(grad_norm) & _all_finite(updated.params)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = updated.replace(
        params=keep(updated.params, state.params),
        opt_state=keep(updated.opt_state, state.opt_state),
    )
    return new_state, {"loss": value, "targets": count, "grad_norm": grad_norm, "finite": finite}


def _all_finite(tree) -> Array:
    """Scalar bool: every float leaf of `tree` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop log lines written after the checkpoint a resumed run restarts from.

    A validation's line is appended (and the file closed) before the checkpoint of its step
    is saved, so a run killed while appending leaves an incomplete last line (no final
    newline) whose step is after every checkpoint: like every line after `max_step`, it is
    dropped (with a warning) and rewritten when that epoch is redone. Any other line that is
    not a record with a "step" is damage this cannot explain: CheckpointError.
    """
    if not path.exists():
        return
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    keep = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            step = json.loads(line)["step"]
            ok = isinstance(step, int)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            if lineno == len(lines) and not text.endswith("\n"):
                logging.warning(
                    "%s: dropping the incomplete last line %d (%r), cut off when the run "
                    "stopped; its validation is redone", path, lineno, line[:40],
                )
                continue
            raise CheckpointError(
                f"{path}: line {lineno} is not a validation record ({line[:40]!r}); the file "
                "is damaged: delete that line (the run then resumes) or use a new --workdir"
            )
        if step <= max_step:
            keep.append(line)
    config_lib.write_atomic(path, "".join(ln + "\n" for ln in keep))


LOCK = ".lock"  # in the workdir: held while a process trains there


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Train (or resume) a run in `workdir`, then test its best checkpoint; returns results.

    Nothing is written before the config and the data have passed every check, so a bad file
    or value leaves no trace in `workdir` (but a lock file when resuming). Raises
    `Interrupted` (after saving `checkpoints/latest`) when SIGTERM/SIGINT arrives; calling
    again resumes exactly. A second training in the same `workdir` is refused while the
    first runs.
    """
    with contextlib.ExitStack() as held:  # the workdir's lock, once taken
        return _train_and_evaluate(config, Path(workdir), held)


def _train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: Path, held: contextlib.ExitStack
) -> dict[str, Any]:
    """`train_and_evaluate`; the primary process enters the workdir lock into `held`."""
    config_lib.validate(config)
    plan = parallel.plan_for(config)  # devices and the batch split: checked before any data
    parallel.check_same("config", config_lib.to_dict(config))  # multi-process: one config
    primary = parallel.is_primary()  # process 0 alone writes files other than checkpoints
    workdir = Path(workdir)
    results_path = workdir / "results.json"
    if results_path.exists():
        raise ConfigError(
            f"{workdir} already holds a finished run ({results_path}); use a new --workdir "
            f"(or `python -m posrec.evaluate --workdir={workdir}` to re-evaluate it)"
        )
    restart = (workdir / "config.json").exists()
    if restart:  # refuse another config, or a training already running, before the data
        if primary:
            held.enter_context(config_lib.exclusive_lock(workdir / LOCK, "another training"))
        config_lib.save_or_check(config, workdir, write=primary)

    t0 = time.time()
    split, seqs = load_split(config)
    num_items = seqs.num_items
    T = config.model.max_len
    inputs_NxT, targets_NxT = batching.train_examples(split.train, T)
    if len(inputs_NxT) == 0:
        raise ConfigError("no training sequences with at least 2 items after the split")
    if config.eval.sampled:  # fail now, not after training
        evaluate.check_sampled(
            split.test,
            evaluate.item_log_weights(config.eval.sampler, seqs.items, num_items),
            config.eval.sampled,
        )
    batches = batching.TrainBatches(inputs_NxT, targets_NxT, config.train.batch_size, config.seed,
                                    process_shard=(plan.process_index, plan.process_count),
                                    bucket_lengths=config.train.bucket_lengths)
    parallel.check_same("data", [seqs.num_users, num_items, inputs_NxT.shape,
                                 int(targets_NxT.sum()), len(split.test.targets)])
    if not restart:
        workdir.mkdir(parents=True, exist_ok=True)
        if primary:
            held.enter_context(config_lib.exclusive_lock(workdir / LOCK, "another training"))
        config_lib.save_or_check(config, workdir, write=primary)
    fingerprint = split.fingerprint()
    logging.info(
        "data: %d users, %d items, %d training sequences, %d valid / %d test users (%.1fs)",
        seqs.num_users, num_items, len(inputs_NxT), len(split.valid.targets),
        len(split.test.targets), time.time() - t0,
    )

    model = sasrec.SASRec(config.model, num_items)
    state = plan.replicate(init_state(config, model))
    latest = checkpoint.manager(workdir, "latest", cleanup_tmp=True)
    best = checkpoint.manager(workdir, "best", cleanup_tmp=True)
    # Everything the loop needs to continue exactly: position (epoch, step_in_epoch), the
    # running loss of the unfinished epoch (summed in step order, so a resumed sum is
    # bit-identical), early stopping, and the count of skipped non-finite updates.
    meta = dict(epoch=0, step_in_epoch=0, epoch_loss_sum=0.0, epoch_loss_count=0,
                skipped_steps=0, best_ndcg=-1.0, best_step=-1, bad_evals=0, validated_step=-1,
                num_items=num_items, data_fingerprint=fingerprint, stopped=False)
    restored = checkpoint.restore(latest, state.params, state.opt_state)
    if restored is not None:
        params, opt_state, saved = restored
        checkpoint.check_same_data(saved, fingerprint, num_items, latest.directory)
        if "validated_step" not in saved:  # older checkpoints: validated on the schedule
            done = int(saved["epoch"])
            on_schedule = saved.get("step_in_epoch", 0) == 0 and (
                done % config.train.eval_every == 0 or done == config.train.num_epochs)
            saved = dict(saved, validated_step=int(saved["step"]) if on_schedule else -1)
        meta.update(saved, data_fingerprint=fingerprint)
        if (meta["epoch"], meta["step_in_epoch"]) > (config.train.num_epochs, 0):
            logging.warning("this run has trained past train.num_epochs=%d (to epoch %d, batch "
                            "%d of the next): it stops here", config.train.num_epochs,
                            meta["epoch"], meta["step_in_epoch"])
        state = plan.replicate(
            state.replace(params=params, opt_state=opt_state, step=int(saved["step"]))
        )
        logging.info("resumed from step %d (epoch %d, after batch %d of %d)", state.step,
                     meta["epoch"] + 1, meta["step_in_epoch"], batches.steps_per_epoch())
    # A best checkpoint newer than the restored state belongs to an abandoned timeline (a
    # crash between saving best and latest): this run's validation never chose it, and the
    # final test would restore it as the newest. An exact replay saves it again.
    for stale in [s for s in best.all_steps() if s > int(state.step)]:
        logging.warning("removing best checkpoint %d, newer than the resumed step %d",
                        stale, int(state.step))
        best.delete(stale)
    if primary:
        save_id_maps(seqs, workdir)  # only now: a refused resume must not overwrite the maps
        _truncate_jsonl(workdir / "metrics.jsonl", int(state.step))

    rng = plan.replicate(jax.random.key(config.seed + 1, impl=config.train.rng_impl))
    item_counts_N = np.bincount(targets_NxT.ravel(), minlength=num_items + 1)
    step_fn = plan.make_train_step(functools.partial(
        train_step, model=model, loss_fn=losses.make_loss(config.train, item_counts_N)
    ))
    scorer = evaluate.make_scorer(model, max(config.eval.ks), config.eval.exclude_seen,
                                  item_chunk_size=config.eval.item_chunk_size, plan=plan)
    steps_per_epoch = batches.steps_per_epoch()
    step = int(state.step)  # host copy: reading state.step would wait for the device
    last_saved = step if restored is not None else None
    progress = Progress(config, steps_per_epoch, step)
    tb = _summary_writer(workdir, purge_step=step + 1) if primary else _NoSummaries()

    def snapshot(mngr):
        nonlocal last_saved
        checkpoint.save(mngr, step, state.params, state.opt_state, dict(meta, step=step))
        if mngr is latest:
            last_saved = step

    def account(step_i: int, pos_i: int, m: dict[str, Array]) -> None:
        """Host side of one finished step: its loss, or the non-finite policy."""
        loss = float(m["loss"])
        if bool(m["finite"]):
            meta["epoch_loss_sum"] += loss
            meta["epoch_loss_count"] += 1
            progress.fetched(step_i, loss)
            return
        progress.fetched(step_i, None)
        where = (f"step {step_i} (epoch {meta['epoch'] + 1}, batch {pos_i}/{steps_per_epoch})")
        grad_norm = float(m["grad_norm"])
        if not config.train.skip_nonfinite:
            kept = (f"checkpoints/latest keeps the last good state (step {last_saved})"
                    if last_saved is not None else "no checkpoint had been written yet")
            raise NonFiniteError(
                f"non-finite loss ({loss}), gradient norm ({grad_norm}) or update at {where}; "
                f"training stopped and {kept}. Lower train.learning_rate, set "
                "train.grad_clip, or set train.skip_nonfinite=True to skip such updates"
            )
        meta["skipped_steps"] += 1
        logging.warning("skipped the non-finite update of %s (loss %s, gradient norm %s)",
                        where, loss, grad_norm)

    def validate(epoch: int, train_loss: float | None, epoch_seconds: float | None) -> None:
        """Validation of the current state: early stopping, metrics.jsonl, `best`."""
        t_eval = time.time()
        valid, _ = evaluate.evaluate(scorer, state.params, split.valid, config, num_items)
        progress.eval_seconds = time.time() - t_eval
        improved = valid["ndcg@10"] > meta["best_ndcg"]
        if improved:
            meta.update(best_ndcg=valid["ndcg@10"], best_step=step, bad_evals=0)
        else:
            meta["bad_evals"] += 1
        meta.update(stopped=meta["bad_evals"] >= config.train.patience, validated_step=step)
        record = dict(step=step, epoch=epoch, split="valid", metrics=valid,
                      train_loss=train_loss, epoch_seconds=epoch_seconds,
                      skipped_steps=meta["skipped_steps"])
        if primary:
            with open(workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        _write_scalars(tb, "valid", valid, step)
        tb.flush()
        logging.info(
            "epoch %d step %d: loss %s, valid ndcg@10 %.4f hr@10 %.4f (%s, %s/epoch)",
            epoch, step, "—" if train_loss is None else f"{train_loss:.4f}", valid["ndcg@10"],
            valid["hr@10"], "best" if improved else f"{meta['bad_evals']}/{config.train.patience}",
            "—" if epoch_seconds is None else f"{epoch_seconds:.1f}s",
        )
        if improved:
            snapshot(best)

    stop = _StopRequest()
    try:
        while meta["epoch"] < config.train.num_epochs and not meta["stopped"]:
            t_epoch = time.time()
            progress.new_epoch()
            pending = None
            # Batches are built one step ahead in a background thread (batching.prefetch).
            for batch in batching.prefetch(batches.epoch(meta["epoch"], meta["step_in_epoch"])):
                state, m = step_fn(state, batch, rng)
                step += 1
                meta["step_in_epoch"] += 1
                if pending is not None:  # the previous step's metrics: no device stall
                    account(*pending)
                pending = (step, meta["step_in_epoch"], m)
                if step % config.train.log_every == 0:
                    line = progress.line(step, meta["epoch"], meta["step_in_epoch"])
                    logging.info("%s", line)
                    progress.write(tb, step)
                if (config.train.checkpoint_every and step % config.train.checkpoint_every == 0
                        and meta["step_in_epoch"] < steps_per_epoch):  # epoch ends save anyway
                    account(*pending)  # waits for this step: nothing unchecked is saved
                    pending = None
                    snapshot(latest)
                if stop.agreed(step):
                    break
            if pending is not None:  # waits for the last step: nothing unchecked is saved
                account(*pending)
            if meta["step_in_epoch"] < steps_per_epoch:  # a signal stopped the epoch early
                if last_saved != step:  # not just saved by train.checkpoint_every
                    snapshot(latest)
                raise Interrupted(
                    f"stopped by {stop.name}: saved checkpoints/latest at step {step} "
                    f"(epoch {meta['epoch'] + 1}, batch {meta['step_in_epoch']}/"
                    f"{steps_per_epoch}) in {workdir}"
                )
            epoch_count, epoch_sum = meta["epoch_loss_count"], meta["epoch_loss_sum"]
            if epoch_count == 0:
                raise NonFiniteError(
                    f"every update of epoch {meta['epoch'] + 1} was non-finite and skipped "
                    f"(up to step {step}): the model diverged; lower train.learning_rate or "
                    "set train.grad_clip"
                )
            epoch = meta["epoch"] + 1
            meta.update(epoch=epoch, step_in_epoch=0, epoch_loss_sum=0.0, epoch_loss_count=0)
            train_loss = epoch_sum / epoch_count
            epoch_seconds = time.time() - t_epoch
            tb.add_scalar("train/epoch_loss", train_loss, step)
            tb.add_scalar("train/skipped_steps", meta["skipped_steps"], step)

            if epoch % config.train.eval_every == 0 or epoch == config.train.num_epochs:
                validate(epoch, train_loss, epoch_seconds)
            snapshot(latest)
            if meta["stopped"]:
                logging.info("early stopping after epoch %d", epoch)
            if stop.agreed(step, every=1):
                raise Interrupted(
                    f"stopped by {stop.name}: saved checkpoints/latest at step {step} "
                    f"(end of epoch {epoch}) in {workdir}"
                )
        if meta["validated_step"] != step:
            # Resumed with train.num_epochs lowered to the epochs already trained: the last
            # one was never validated (eval_every), and the test needs a best checkpoint.
            validate(meta["epoch"], None, None)
            snapshot(latest)
    except BaseException:
        tb.close()
        raise
    finally:
        stop.restore()  # from here on SIGTERM/SIGINT act as usual: the final test is redone

    _, best_params, best_meta = checkpoint.restore_params(workdir, "best")
    valid, _ = evaluate.evaluate(scorer, best_params, split.valid, config, num_items)
    test, per_user = evaluate.evaluate(scorer, best_params, split.test, config, num_items)
    if primary:
        np.savez(workdir / "per_user_test.npz", **per_user)
    results = dict(
        best_step=int(best_meta["step"]),
        best_epoch=int(best_meta["epoch"]),
        epochs_trained=int(meta["epoch"]),
        valid=valid,
        test=test,
    )
    if config.eval.sampled:
        results["test_sampled"] = evaluate.evaluate_sampled(
            model, best_params, split.test, config, seqs
        )
        logging.info("test, SAMPLED (legacy, not the protocol): %s", results["test_sampled"])
    _write_scalars(tb, "test", test, results["best_step"])
    tb.close()
    if primary:
        config_lib.write_json_atomic(results_path, results)
    logging.info("test: %s", json.dumps({k: round(v, 4) for k, v in test.items()}))
    return results


class _StopRequest:
    """SIGTERM/SIGINT handlers that only record the signal; the loop asks `agreed(step)`.

    Installed for the duration of the loop (main thread only: Python delivers signals there)
    and removed by `restore`. A second SIGINT raises KeyboardInterrupt at once (Ctrl-C twice
    aborts without waiting for the checkpoint).

    With several processes a signal may reach one of them only, or each at another step,
    while saving a checkpoint is collective: every process must stop after the same step.
    So they agree every `SYNC_EVERY` steps (and at each epoch end), all stopping if any was
    signalled (`parallel.any_process`); the stop then comes at most SYNC_EVERY steps late.
    """

    SYNC_EVERY = 10

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    @property
    def name(self) -> str:
        if self.signum is None:
            return "a signal to another process"
        return signal.Signals(self.signum).name

    def agreed(self, step: int, every: int = SYNC_EVERY) -> bool:
        """Whether to stop after `step`: at once with one process; with several, at the
        steps that are multiples of `every`, if any process has been signalled."""
        if jax.process_count() == 1:
            return self.signum is not None
        return step % every == 0 and parallel.any_process(self.signum is not None)

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum  # no logging here: a handler may interrupt the logging module

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _duration(seconds: float) -> str:
    """h:mm:ss (or m:ss under an hour) for the progress line."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class Progress:
    """The progress line: step, epoch, mean loss, examples/s and two ETAs.

    Speed is measured over the steps finished since the previous line; the clock starts
    when the first step of each epoch has finished, so neither compilation nor validation
    counts (until then speed and ETA print as "?"). The epoch ETA is the rest of the current
    epoch; the run ETA is every step left in the `train.num_epochs` budget plus the
    validations (and the final valid + test evaluation) still due, timed like the last one
    ("+ validation" until one has been timed); early stopping can only make it shorter.
    """

    def __init__(self, config: ml_collections.ConfigDict, steps_per_epoch: int, step: int):
        t = config.train
        self.batch_size, self.num_epochs, self.eval_every = t.batch_size, t.num_epochs, t.eval_every
        self.steps_per_epoch = steps_per_epoch
        self.eval_seconds: float | None = None
        self._t: float | None = None  # set when the first step has finished
        self._step, self._losses = step, []
        self._rate = self._loss = float("nan")

    def new_epoch(self) -> None:
        """Restart the clock at the epoch's first finished step: the validation and the
        checkpoints written since the previous line are not training speed."""
        self._t = None

    def fetched(self, step: int, loss: float | None) -> None:
        """Step `step` has finished (its metrics were read); `loss` None if it was skipped."""
        if self._t is None:
            self._t, self._step = time.perf_counter(), step
        if loss is not None:
            self._losses.append(loss)

    def evals_left(self, epoch: int) -> int:
        """Validations after epochs epoch+1..num_epochs, plus the final valid and test ones."""
        due = [e for e in range(epoch + 1, self.num_epochs + 1)
               if e % self.eval_every == 0 or e == self.num_epochs]
        return len(due) + 2

    def line(self, step: int, epoch: int, pos: int) -> str:
        """`epoch` is 0-based (the one in progress), `pos` the batches done in it."""
        now = time.perf_counter()
        sec_per_step = float("nan")
        if self._t is not None and step > self._step:
            sec_per_step = (now - self._t) / (step - self._step)
            self._t, self._step = now, step
        self._rate = self.batch_size / max(sec_per_step, 1e-9)
        self._loss = float(np.mean(self._losses)) if self._losses else float("nan")
        self._losses = []
        left_epoch = (self.steps_per_epoch - pos) * sec_per_step
        left_run = (self.num_epochs * self.steps_per_epoch - (epoch * self.steps_per_epoch + pos)
                    ) * sec_per_step + self.evals_left(epoch) * (self.eval_seconds or 0.0)
        rate = f"{self._rate:.0f}" if math.isfinite(self._rate) else "?"
        unknown_evals = " + validation" if self.eval_seconds is None else ""
        return (
            f"step {step}/{self.num_epochs * self.steps_per_epoch} | epoch {epoch + 1}/"
            f"{self.num_epochs} batch {pos}/{self.steps_per_epoch} | loss {self._loss:.4f} | "
            f"{rate} examples/s | ETA epoch {_duration(left_epoch)}, "
            f"run {_duration(left_run)}{unknown_evals}"
        )

    def write(self, tb, step: int) -> None:
        """TensorBoard scalars of the window `line` just closed."""
        if math.isfinite(self._loss):
            tb.add_scalar("train/loss", self._loss, step)
        if math.isfinite(self._rate):
            tb.add_scalar("train/examples_per_second", self._rate, step)


def _summary_writer(workdir: Path, purge_step: int):
    """tensorboardX writer on `workdir/tb`; events at steps >= purge_step from an earlier,
    interrupted attempt are hidden by TensorBoard, so a resumed run's curves do not fork."""
    from tensorboardX import SummaryWriter  # only the training loop writes events

    return SummaryWriter(str(workdir / "tb"), purge_step=purge_step)


class _NoSummaries:
    """The summary writer of processes other than 0 in a multi-process run: writes nothing."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _write_scalars(tb, prefix: str, summary: dict[str, float], step: int) -> None:
    """`prefix/ndcg_10` etc. (TensorBoard tags cannot hold '@')."""
    for key, value in sorted(summary.items()):
        if key != "num_users":
            tb.add_scalar(f"{prefix}/{key.replace('@', '_')}", value, step)


SUMMARY_METRICS = ("ndcg", "hr", "mrr", "cov")


def format_summary(results: dict[str, Any]) -> str:
    """The end-of-run table: valid vs test for NDCG/HR/MRR/COV at K in {5, 10, 20} (those
    evaluated), then the best epoch/step; both columns come from the best checkpoint."""
    valid, test = results["valid"], results["test"]
    ks = [k for k in (5, 10, 20) if f"ndcg@{k}" in test]
    rows = [f"{name}@{k}" for name in SUMMARY_METRICS for k in ks]
    width = max(len(r) for r in rows)
    lines = [f"{'metric':<{width}}  {'valid':>8}  {'test':>8}"]
    lines += [f"{r:<{width}}  {valid[r]:>8.4f}  {test[r]:>8.4f}" for r in rows]
    lines.append(
        f"best epoch {results['best_epoch']} (step {results['best_step']}) of "
        f"{results['epochs_trained']} trained; {test['num_users']} test users"
    )
    return "\n".join(lines)
