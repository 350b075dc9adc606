"""One process of the 2-process jax.distributed runs of tests/distributed_test.py.

    POSREC_COORDINATOR=127.0.0.1:PORT POSREC_NUM_PROCESSES=2 POSREC_PROCESS_ID=i \
        python tests/distributed_worker.py OUT MODE [disagree]

Joins the run through `parallel.initialize_distributed` (from the environment), trains
`parallel_worker`'s tiny model for one epoch on this process's rows of every global batch
(`TrainBatches(process_shard=...)`), saves the parameters it ends with to
OUT/params_<i>.npz, writes them as the `best` checkpoint of the run directory OUT/run (all
processes save together; process 0 writes config.json) and evaluates them on the test users
of a tiny synthetic data set with both processes (process 0 writes OUT/eval.json). With
"disagree", process 1 starts `train.train_and_evaluate` with another seed than process 0:
both must stop with a clear error.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import jax
import numpy as np
import parallel_worker as pw

from posrec import checkpoint, config_lib, evaluate, parallel, train
from posrec.cli import report_errors
from posrec.data import batching, load_split
from posrec.models import sasrec

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


def run_config(seed: int = 0):
    """A synthetic task with exactly `pw.NUM_ITEMS` items and `pw.tiny_config()`'s model, so
    a run directory with this config.json restores the trained parameters."""
    config = pw.tiny_config()
    config.data.synthetic.update(num_users=120, num_items=pw.NUM_ITEMS, seq_len=12)
    config.data.min_user_count = config.data.min_item_count = 0
    config.train.update(num_epochs=1, batch_size=32, log_every=1000)
    config.eval.batch_size = 25  # 120 users: a partial last batch
    config.seed = seed
    return config


def main(out: Path, mode: str, disagree: bool) -> None:
    with report_errors(debug=False):
        assert parallel.initialize_distributed(timeout_s=60)
        pid = jax.process_index()
        if disagree:
            train.train_and_evaluate(run_config(seed=pid), out / "run")
            return
        plan = parallel.make_plan(mode)
        params = train_epoch(plan, (pid, jax.process_count()))
        flat = {jax.tree_util.keystr(p): np.asarray(x)
                for p, x in jax.tree_util.tree_leaves_with_path(params)}
        np.savez(out / f"params_{pid}.npz", **flat)

        config = run_config()
        run = out / "run"
        if parallel.is_primary():
            run.mkdir()
            config_lib.save_or_check(config, run)
        mngr = checkpoint.manager(run, "best")  # every process takes part in the save
        checkpoint.save(mngr, 3, params, {"unused": np.zeros(1)}, {"step": 3, "epoch": 1})
        split, seqs = load_split(config)
        model = sasrec.SASRec(config.model, seqs.num_items)
        scorer = evaluate.make_scorer(model, max(config.eval.ks), True, plan=plan)
        summary, _ = evaluate.evaluate(scorer, params, split.test, config, seqs.num_items)
        if parallel.is_primary():
            (out / "eval.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], "disagree" in sys.argv[3:])
