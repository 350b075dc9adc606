"""Training loop: pure jitted `train_step`, per-epoch validation, early stopping, resume.

The loop owns all side effects (checkpoints, logs, results); `train_step` and the scorer
are pure functions of arrays. Dropout randomness is `fold_in(seed_key, step)`, and the data
order depends only on (seed, epoch), so a run resumed from `checkpoints/latest` replays
exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import functools
import json
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

from posrec import checkpoint, config_lib, evaluate, losses
from posrec.data import batching, load_split
from posrec.data.preprocess import save_id_maps
from posrec.errors import ConfigError, PosrecError
from posrec.models import sasrec

Array = jax.Array
TrainState = train_state.TrainState


class NonFiniteError(PosrecError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


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
    state: TrainState, batch: dict[str, Array], rng: Array, *, model: sasrec.SASRec, loss: str
) -> tuple[TrainState, dict[str, Array]]:
    """One optimizer step on a [B, T] batch; `rng` is the run's base key."""
    drop_rng, neg_rng = jax.random.split(jax.random.fold_in(rng, state.step))

    def loss_fn(params):
        hidden_BxTxC = model.apply(
            {"params": params}, batch["inputs"], train=True, rngs={"dropout": drop_rng}
        )
        table_NxC = sasrec.item_table(params)
        if loss == "ce":
            return losses.full_ce(hidden_BxTxC, table_NxC, batch["targets"])
        return losses.sampled_bce(hidden_BxTxC, table_NxC, batch["targets"], neg_rng)

    (value, count), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads=grads)
    grad_norm = optax.tree_utils.tree_norm(grads)
    return new_state, {"loss": value, "targets": count, "grad_norm": grad_norm}


def _truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop log lines written after the checkpoint a resumed run restarts from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= max_step]
    config_lib.write_text_atomic(path, "".join(ln + "\n" for ln in keep))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Train (or resume) a run in `workdir`, then test its best checkpoint; returns results."""
    config_lib.validate(config)
    workdir = Path(workdir)
    results_path = workdir / "results.json"
    if results_path.exists():
        raise ConfigError(
            f"{workdir} already holds a finished run ({results_path}); use a new --workdir "
            f"(or `python -m posrec.evaluate --workdir={workdir}` to re-evaluate it)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    config_lib.save_or_check(config, workdir)

    t0 = time.time()
    split, seqs = load_split(config)
    save_id_maps(seqs, workdir)
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
    batches = batching.TrainBatches(inputs_NxT, targets_NxT, config.train.batch_size, config.seed)
    logging.info(
        "data: %d users, %d items, %d training sequences, %d valid / %d test users (%.1fs)",
        seqs.num_users, num_items, len(inputs_NxT), len(split.valid.targets),
        len(split.test.targets), time.time() - t0,
    )

    model = sasrec.SASRec(config.model, num_items)
    state = init_state(config, model)
    latest = checkpoint.manager(workdir, "latest")
    best = checkpoint.manager(workdir, "best")
    meta = dict(epoch=0, step_in_epoch=0, best_ndcg=-1.0, best_step=-1, bad_evals=0,
                num_items=num_items, stopped=False)
    restored = checkpoint.restore(latest, state.params, state.opt_state)
    if restored is not None:
        params, opt_state, saved = restored
        if saved.get("num_items") != num_items:
            raise ConfigError(
                f"checkpoint in {workdir} has {saved.get('num_items')} items, data has "
                f"{num_items}: the data changed; use a new --workdir"
            )
        meta.update(saved)
        state = state.replace(params=params, opt_state=opt_state, step=int(saved["step"]))
        logging.info("resumed from step %d (epoch %d)", state.step, meta["epoch"])
    _truncate_jsonl(workdir / "metrics.jsonl", int(state.step))

    rng = jax.random.key(config.seed + 1)
    step_fn = jax.jit(
        functools.partial(train_step, model=model, loss=config.train.loss), donate_argnums=0
    )
    scorer = evaluate.make_scorer(model, max(config.eval.ks), config.eval.exclude_seen)
    steps_per_epoch = batches.steps_per_epoch()
    total_steps = steps_per_epoch * config.train.num_epochs

    def snapshot(mngr, **extra):
        m = dict(meta, step=int(state.step), **extra)
        checkpoint.save(mngr, int(state.step), state.params, state.opt_state, m)

    epoch = meta["epoch"]
    while epoch < config.train.num_epochs and not meta["stopped"]:
        t_epoch = time.time()
        losses_seen, pending = [], None
        t_log, steps_since_log = time.time(), 0
        for batch in batches.epoch(epoch, meta["step_in_epoch"]):
            state, m = step_fn(state, batch, rng)
            if pending is not None:  # fetch the previous step's metrics: no device stall
                _check_finite(pending, int(state.step) - 1)
                losses_seen.append(float(pending["loss"]))
            pending = m
            steps_since_log += 1
            if int(state.step) % config.train.log_every == 0:
                dt = time.time() - t_log
                rate = steps_since_log * config.train.batch_size / max(dt, 1e-9)
                eta = (total_steps - int(state.step)) * dt / max(steps_since_log, 1)
                logging.info(
                    "step %d epoch %d loss %.4f | %.0f examples/s | ETA %.0fs",
                    int(state.step), epoch + 1, losses_seen[-1] if losses_seen else float("nan"),
                    rate, eta,
                )
                t_log, steps_since_log = time.time(), 0
        if pending is not None:
            _check_finite(pending, int(state.step))
            losses_seen.append(float(pending["loss"]))
        epoch += 1
        meta.update(epoch=epoch, step_in_epoch=0)
        train_loss = float(np.mean(losses_seen)) if losses_seen else float("nan")
        epoch_seconds = time.time() - t_epoch

        if epoch % config.train.eval_every == 0 or epoch == config.train.num_epochs:
            valid, _ = evaluate.evaluate(scorer, state.params, split.valid, config, num_items)
            improved = valid["ndcg@10"] > meta["best_ndcg"]
            if improved:
                meta.update(best_ndcg=valid["ndcg@10"], best_step=int(state.step), bad_evals=0)
            else:
                meta["bad_evals"] += 1
            meta["stopped"] = meta["bad_evals"] >= config.train.patience
            record = dict(step=int(state.step), epoch=epoch, split="valid", metrics=valid,
                          train_loss=train_loss, epoch_seconds=epoch_seconds)
            with open(workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
            logging.info(
                "epoch %d step %d: loss %.4f, valid ndcg@10 %.4f hr@10 %.4f (%s, %.1fs/epoch)",
                epoch, int(state.step), train_loss, valid["ndcg@10"], valid["hr@10"],
                "best" if improved else f"{meta['bad_evals']}/{config.train.patience}",
                epoch_seconds,
            )
            if improved:
                snapshot(best)
        snapshot(latest)
        if meta["stopped"]:
            logging.info("early stopping after epoch %d", epoch)

    _, best_params, best_meta = checkpoint.restore_params(workdir, "best")
    valid, _ = evaluate.evaluate(scorer, best_params, split.valid, config, num_items)
    test, per_user = evaluate.evaluate(scorer, best_params, split.test, config, num_items)
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
    config_lib.write_json_atomic(results_path, results)
    logging.info("test: %s", json.dumps({k: round(v, 4) for k, v in test.items()}))
    return results


def _check_finite(step_metrics: dict[str, Array], step: int) -> None:
    loss = float(step_metrics["loss"])
    if not np.isfinite(loss) or not np.isfinite(float(step_metrics["grad_norm"])):
        raise NonFiniteError(
            f"non-finite loss ({loss}) or gradient at step {step}; the last good checkpoint "
            "is kept. Lower train.learning_rate or set train.grad_clip"
        )
