"""Full-ranking evaluation: jitted scoring over user batches, host-side aggregation.

`python -m posrec.evaluate --workdir=DIR` restores the best checkpoint of a finished or
running run and prints its test metrics as JSON (equal to `results.json`).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from posrec import metrics
from posrec.data import batching
from posrec.data.splits import EvalSet
from posrec.models import sasrec

Array = jax.Array


def make_scorer(model: sasrec.SASRec, max_k: int, exclude_seen: bool):
    """jit: (params, inputs_BxT, targets_B, seen_BxS) -> (ranks_B, topk_BxK)."""

    @jax.jit
    def score(params, inputs_BxT, targets_B, seen_BxS):
        hidden_BxC = model.apply({"params": params}, inputs_BxT, train=False)[:, -1]
        scores_BxN = hidden_BxC @ sasrec.item_table(params).T
        return metrics.rank_and_topk(
            scores_BxN.astype(jnp.float32), targets_B, seen_BxS if exclude_seen else None, max_k
        )

    return score


def evaluate(
    scorer, params, ev: EvalSet, config: ml_collections.ConfigDict, num_items: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(summary metrics, per-user arrays incl. `users` and `rank`) on one evaluation set."""
    ks = tuple(int(k) for k in config.eval.ks)
    ranks, topks = [], []
    for batch in batching.eval_batches(
        ev, config.model.max_len, config.eval.batch_size, num_items
    ):
        r, t = scorer(params, batch["inputs"], batch["targets"], batch["seen_BxS"])
        keep = np.asarray(batch["valid"])
        ranks.append(np.asarray(r)[keep])
        topks.append(np.asarray(t)[keep])
    ranks_U = np.concatenate(ranks)
    topk_UxK = np.concatenate(topks)
    summary = metrics.summarize(ranks_U, topk_UxK, ks, num_items)
    per_user = {"users": np.asarray(ev.users), "rank": ranks_U}
    return summary, per_user


def run(workdir: str, split: str = "test") -> dict[str, float]:
    """Restore the best checkpoint of `workdir` and evaluate it on `split`."""
    from posrec import checkpoint
    from posrec.data import load_split

    config, params, meta = checkpoint.restore_params(workdir, "best")
    data_split, seqs = load_split(config)
    model = sasrec.SASRec(config.model, seqs.num_items)
    scorer = make_scorer(model, max(config.eval.ks), config.eval.exclude_seen)
    ev = data_split.test if split == "test" else data_split.valid
    summary, _ = evaluate(scorer, params, ev, config, seqs.num_items)
    return summary


def main(argv):
    del argv
    from posrec.cli import report_errors

    with report_errors(flags.FLAGS.debug):
        print(json.dumps(run(flags.FLAGS.workdir, flags.FLAGS.split), indent=2, sort_keys=True))


if __name__ == "__main__":
    # Flags are defined here, not at import, because train.py imports this module.
    flags.DEFINE_string("workdir", None, "Run directory written by posrec.main.", required=True)
    flags.DEFINE_enum("split", "test", ["test", "valid"], "Which evaluation set.")
    flags.DEFINE_bool("debug", False, "Show tracebacks for posrec errors.")
    app.run(main)
