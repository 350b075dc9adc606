"""Two-device computations for tests/parallel_test.py (not a test module itself).

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/parallel_worker.py OUT [LOSS...]

JAX fixes its device count when it is first imported, so these run in a fresh process; the
results (parameters after k steps, evaluation ranks, error messages, a checkpoint) go to
OUT and are compared by the test process against its own single-device reference.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from posrec import checkpoint, config_lib, evaluate, losses, parallel, train
from posrec.data.splits import EvalSet
from posrec.errors import ConfigError
from posrec.models import sasrec

NUM_ITEMS, T, B, STEPS = 30, 8, 8, 3
LOSSES = {
    "ce": dict(loss="ce", ce_chunk_size=0),
    "ce_chunked": dict(loss="ce", ce_chunk_size=7),
    "bce": dict(loss="bce"),
    "sampled_softmax": dict(loss="sampled_softmax", num_negatives=5, sampled_proposal="uniform"),
}


def tiny_config() -> ml_collections.ConfigDict:
    config = config_lib.default_config()
    config.model.update(max_len=T, hidden=16, num_blocks=1, dropout=0.2, positional="absolute")
    config.eval.update(batch_size=5, ks=(1, 5, 10))  # 5: not a multiple of 2 devices
    return config


def model_and_state(config) -> tuple[sasrec.SASRec, train_state.TrainState]:
    """SGD, not Adam: Adam's m/√v turns rounding-level differences of near-zero gradients
    (e.g. the attention key bias, whose exact gradient is 0) into learning-rate-sized steps,
    so parameter equality across device counts is a property of the gradients."""
    model = sasrec.SASRec(config.model, NUM_ITEMS)
    params = train.init_state(config, model).params
    return model, train_state.TrainState.create(
        apply_fn=model.apply, params=params, tx=optax.sgd(0.5)
    )


def global_batches() -> list[dict[str, np.ndarray]]:
    """STEPS global batches of B rows; the padding is uneven: rows 5..7 (the second device's
    half) carry few or no targets."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(STEPS):
        lengths = rng.integers(2, T + 1, size=B)
        lengths[5:] = [1, 0, 2]
        inputs = np.zeros((B, T), np.int32)
        targets = np.zeros((B, T), np.int32)
        for r, n in enumerate(lengths):
            seq = rng.integers(1, NUM_ITEMS + 1, size=n + 1)
            if n:
                inputs[r, T - n:] = seq[:-1]
                targets[r, T - n:] = seq[1:]
        out.append({"inputs": inputs, "targets": targets})
    return out


def loss_fn(name: str) -> losses.LossFn:
    cfg = ml_collections.ConfigDict(LOSSES[name])
    return losses.make_loss(cfg, np.arange(NUM_ITEMS + 1))


def train_with_plan(plan: parallel.Plan, loss_name: str, rng_impl: str = "threefry2x32"):
    """(params as numpy, per-step loss values) after STEPS steps through `plan`."""
    config = tiny_config()
    model, state = model_and_state(config)
    step = plan.make_train_step(
        functools.partial(train.train_step, model=model, loss_fn=loss_fn(loss_name))
    )
    state, rng = plan.replicate(state), plan.replicate(jax.random.key(3, impl=rng_impl))
    values = []
    for batch in global_batches():
        state, m = step(state, batch, rng)
        values.append(float(m["loss"]))
    return state, values


def eval_set(num_users: int = 23) -> EvalSet:
    """23 users: not a multiple of 2 devices nor of the batch size 5."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 12, size=num_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    history = rng.integers(1, NUM_ITEMS + 1, size=offsets[-1]).astype(np.int32)
    targets = rng.integers(1, NUM_ITEMS + 1, size=num_users).astype(np.int32)
    return EvalSet(history, offsets, targets, np.arange(num_users, dtype=np.int64))


def evaluate_with_plan(plan: parallel.Plan, params, item_chunk_size: int):
    config = tiny_config()
    model = sasrec.SASRec(config.model, NUM_ITEMS)
    scorer = evaluate.make_scorer(model, max(config.eval.ks), True,
                                  item_chunk_size=item_chunk_size, plan=plan)
    return evaluate.evaluate(scorer, params, eval_set(), config, NUM_ITEMS)


def errors() -> dict[str, str]:
    """Message of each bad request on 2 devices ("" if nothing was raised)."""
    out = {}
    cases = {
        "too_many_devices": lambda: parallel.make_plan("sharding", 3),
        "batch_smaller_than_devices": lambda: parallel.make_plan().check_batch_size(1),
        "batch_not_divisible": lambda: parallel.make_plan().check_batch_size(7),
        "bad_parallelism": lambda: parallel.make_plan("threads", 0),
    }
    for name, fn in cases.items():
        try:
            fn()
            out[name] = ""
        except ConfigError as err:
            out[name] = str(err)
    return out


def rng_impls() -> dict[str, dict[str, str]]:
    """Per "mode/impl": what `Plan.check_rng_impl` says ("" = accepted) and whether STEPS
    real steps with such keys run on 2 devices ("ok", or the error's type)."""
    out = {}
    for mode in parallel.PARALLELISM:
        for impl in ("philox2x32", "rbg"):
            plan = parallel.make_plan(mode, 2)
            try:
                plan.check_rng_impl(impl)
                check = ""
            except ConfigError as err:
                check = str(err)
            try:
                train_with_plan(plan, "ce", impl)
                step = "ok"
            except Exception as err:  # noqa: BLE001 - recorded for the test to judge
                step = type(err).__name__
            out[f"{mode}/{impl}"] = dict(check=check, step=step)
    return out


EVALUATIONS = (("sharding", 7), ("pmap", 0))  # (parallelism, eval.item_chunk_size)


def main(out: Path, extra_losses: list[str]) -> None:
    """Trains with "ce" both ways (plus `extra_losses` with sharding), evaluates as in
    EVALUATIONS, and writes the results and a checkpoint to `out`."""
    assert jax.device_count() == 2, jax.devices()
    report: dict = {"errors": errors(), "rng_impls": rng_impls(), "loss_values": {}}
    arrays = {}
    for mode in parallel.PARALLELISM:
        for loss_name in ["ce", *extra_losses] if mode == "sharding" else ["ce"]:
            state, values = train_with_plan(parallel.make_plan(mode, 2), loss_name)
            key = f"{mode}/{loss_name}"
            report["loss_values"][key] = values
            for path, x in jax.tree_util.tree_leaves_with_path(state.params):
                arrays[f"{key}{jax.tree_util.keystr(path)}"] = np.asarray(x)
            if key == "sharding/ce":
                trained = state.params
                (out / "run").mkdir()
                config_lib.save_or_check(tiny_config(), out / "run")
                mngr = checkpoint.manager(out / "run", "best")
                checkpoint.save(mngr, STEPS, state.params, state.opt_state, {"step": STEPS})
    for mode, chunk in EVALUATIONS:
        summary, per_user = evaluate_with_plan(parallel.make_plan(mode, 2), trained, chunk)
        report[f"eval/{mode}/{chunk}"] = summary
        arrays[f"eval/{mode}/{chunk}/rank"] = per_user["rank"]
    np.savez(out / "arrays.npz", **arrays)
    (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
