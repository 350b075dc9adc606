"""One process of the 2-process jax.distributed run of tests/distributed_test.py.

    POSREC_COORDINATOR=127.0.0.1:PORT POSREC_NUM_PROCESSES=2 POSREC_PROCESS_ID=i \
        python tests/distributed_worker.py OUT MODE [disagree]

Joins the run through `parallel.initialize_distributed` (from the environment), trains
`parallel_worker`'s tiny model for one epoch on this process's rows of every global batch
(`TrainBatches(process_shard=...)`) and saves the parameters it ends with to
OUT/params_<i>.npz; then runs `train.train_and_evaluate` on a tiny synthetic task in OUT/run
(shared by both processes). With "disagree", process 1 uses another seed: both processes
must stop with a clear error instead.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import jax
import numpy as np
import parallel_worker as pw

from posrec import config_lib, parallel, train
from posrec.cli import report_errors
from posrec.data import batching

NUM_EXAMPLES, B = 20, 8  # 3 steps per epoch, the last one partly padding


def examples() -> tuple[np.ndarray, np.ndarray]:
    """[NUM_EXAMPLES, T] inputs and targets, left-padded like `batching.train_examples`."""
    rows = [b for batch in pw.global_batches() for b in zip(batch["inputs"], batch["targets"])]
    inputs, targets = (np.stack(x)[:NUM_EXAMPLES] for x in zip(*rows))
    return inputs, targets


def train_epoch(plan: parallel.Plan | None, shard: tuple[int, int]):
    """Parameters after one epoch of SGD on `shard` of each global batch (plan None: a plain
    jit of `train.train_step`, the single-process reference)."""
    model, state = pw.model_and_state(pw.tiny_config())
    per_device = functools.partial(train.train_step, model=model, loss_fn=pw.loss_fn("ce"))
    rng = jax.random.key(3)
    if plan is None:
        step = jax.jit(per_device)
    else:
        step = plan.make_train_step(per_device)
        state, rng = plan.replicate(state), plan.replicate(rng)
    inputs, targets = examples()
    for batch in batching.TrainBatches(inputs, targets, B, seed=0, process_shard=shard).epoch(0):
        state, _ = step(state, batch, rng)
    return state.params


def tiny_run_config(seed: int = 0):
    config = config_lib.default_config()
    config.data.synthetic.update(num_users=120, num_items=30, seq_len=12)
    config.data.min_user_count = config.data.min_item_count = 0
    config.model.update(max_len=8, hidden=16, num_blocks=1, positional="absolute")
    config.train.update(num_epochs=2, batch_size=32, log_every=1000)
    config.eval.update(batch_size=25, ks=(1, 5, 10))  # 120 users: a partial last batch
    config.seed = seed
    return config


def main(out: Path, mode: str, disagree: bool) -> None:
    with report_errors(debug=False):
        assert parallel.initialize_distributed(timeout_s=60)
        pid = jax.process_index()
        config = tiny_run_config(seed=pid if disagree else 0)
        config.train.parallelism = mode
        if not disagree:
            params = train_epoch(parallel.make_plan(mode), (pid, jax.process_count()))
            flat = {jax.tree_util.keystr(p): np.asarray(x)
                    for p, x in jax.tree_util.tree_leaves_with_path(params)}
            np.savez(out / f"params_{pid}.npz", **flat)
        train.train_and_evaluate(config, out / "run")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], "disagree" in sys.argv[3:])
