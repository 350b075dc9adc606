"""Full-ranking evaluation: jitted scoring over user batches, host-side aggregation.

`python -m posrec.evaluate --workdir=DIR` restores the best checkpoint of a finished or
running run and prints its test metrics as JSON (equal to `results.json`, plus the
`sampled{n}_{sampler}_*` metrics of "test_sampled" when `eval.sampled` > 0).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from posrec import metrics, parallel
from posrec.data import batching
from posrec.data.preprocess import Sequences
from posrec.data.splits import EvalSet
from posrec.errors import ConfigError
from posrec.models import sasrec

Array = jax.Array


def make_scorer(
    model: sasrec.SASRec,
    max_k: int,
    exclude_seen: bool,
    *,
    item_chunk_size: int = 0,
    plan: parallel.Plan | None = None,
    last_only: bool = True,
) -> parallel.Scorer:
    """(params, inputs_BxT, targets_B, seen_BxS) -> numpy (ranks_B, topk_BxK), on all devices.

    Each device scores its share of the user batch (`parallel.Scorer` pads the batch to a
    multiple of the device count and drops the padding again): hidden state of the last
    position, then `metrics.chunked_rank_and_topk` over item chunks of `item_chunk_size`
    (0 = the whole catalog at once), so a 1M-item catalog never needs [B, N] scores.
    `plan` defaults to every local device. `last_only=False` runs the full forward and
    keeps its last row (the same hidden state, slower: the benchmark's "before").
    """

    def score(params, inputs_BxT, targets_B, seen_BxS):
        if last_only:
            hidden_BxC = model.apply({"params": params}, inputs_BxT, train=False, last_only=True)
        else:
            hidden_BxC = model.apply({"params": params}, inputs_BxT, train=False)[:, -1]
        return metrics.chunked_rank_and_topk(
            hidden_BxC, sasrec.item_table(params), targets_B,
            seen_BxS if exclude_seen else None, max_k, item_chunk_size,
        )

    return (plan or parallel.make_plan()).make_scorer(score)


def evaluate(
    scorer, params, ev: EvalSet, config: ml_collections.ConfigDict, num_items: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(summary metrics, per-user arrays incl. `users` and `rank`) on one evaluation set.

    Users are scored in batches sorted by history length with windows cut to the batch
    (`batching.eval_batches(by_length=True)`, built one batch ahead in a background thread);
    ranks and top-K lists are put back in the order of `ev`.
    """
    ks = tuple(int(k) for k in config.eval.ks)
    params = scorer.place(params)  # replicated on the scorer's devices once, not per batch
    ranks, topks, rows = [], [], []
    for batch in batching.prefetch(batching.eval_batches(
        ev, config.model.max_len, config.eval.batch_size, num_items, by_length=True
    )):
        r, t = scorer(params, batch["inputs"], batch["targets"], batch["seen_BxS"])
        keep = np.asarray(batch["valid"])
        ranks.append(np.asarray(r)[keep])
        topks.append(np.asarray(t)[keep])
        rows.append(batch["rows"][keep])
    order_U = np.argsort(np.concatenate(rows))
    ranks_U = np.concatenate(ranks)[order_U]
    topk_UxK = np.concatenate(topks)[order_U]
    summary = metrics.summarize(ranks_U, topk_UxK, ks, num_items)
    per_user = {"users": np.asarray(ev.users), "rank": ranks_U}
    return summary, per_user


# Negatives of the sampled evaluation depend on this seed and the user id only, so every run
# (variant, training seed) on a data set ranks its targets against the same negatives.
SAMPLED_SEED = 0


def item_log_weights(sampler: str, items: np.ndarray, num_items: int) -> np.ndarray:
    """float32 [num_items + 1] log sampling weights: zeros for "uniform"; for "popularity" the
    log frequency of each item id in `items` (the whole preprocessed data set, the legacy
    convention); padding id 0 and absent ids get -inf (never drawn)."""
    if sampler == "uniform":
        return np.zeros(num_items + 1, np.float32)
    counts = np.bincount(np.asarray(items), minlength=num_items + 1).astype(np.float64)
    counts[0] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(counts).astype(np.float32)


def check_sampled(ev: EvalSet, log_weights: np.ndarray, n: int) -> None:
    """Raise ConfigError unless every evaluated user has >= n items to sample negatives from
    (items with a finite weight, not in the user's history, not the target)."""
    drawable = np.isfinite(log_weights)
    drawable[0] = False
    U = len(ev.targets)
    rows = np.repeat(np.arange(U), np.diff(ev.offsets))
    pairs = np.unique(
        np.concatenate([rows, np.arange(U)]) * len(log_weights)
        + np.concatenate([ev.history, ev.targets])
    )
    excluded = np.bincount(pairs // len(log_weights), weights=drawable[pairs % len(log_weights)],
                           minlength=U)
    pool_U = int(drawable.sum()) - excluded.astype(np.int64)
    if U and pool_U.min() < n:
        raise ConfigError(
            f"config.eval.sampled={n}: {int(np.sum(pool_U < n))} users have fewer than {n} "
            f"unseen items to sample negatives from (smallest pool {int(pool_U.min())}); "
            "lower eval.sampled"
        )


def make_sampled_scorer(model: sasrec.SASRec, n: int):
    """jit: (params, inputs_BxT, targets_B, seen_BxS, users_B uint32, log_weights_N) -> ranks_B
    among n negatives drawn per user (metrics.sample_negatives) with key fold_in(seed, user)."""
    base_key = jax.random.key(SAMPLED_SEED)

    @jax.jit
    def score(params, inputs_BxT, targets_B, seen_BxS, users_B, log_weights_N):
        hidden_BxC = model.apply({"params": params}, inputs_BxT, train=False, last_only=True)
        scores_BxN = (hidden_BxC @ sasrec.item_table(params).T).astype(jnp.float32)
        keys_B = jax.vmap(lambda u: jax.random.fold_in(base_key, u))(users_B)
        negatives_Bxn = metrics.sample_negatives(keys_B, log_weights_N, targets_B, seen_BxS, n)
        return metrics.sampled_ranks(scores_BxN, targets_B, negatives_Bxn)

    return score


def evaluate_sampled(
    model: sasrec.SASRec, params, ev: EvalSet, config: ml_collections.ConfigDict,
    seqs: Sequences,
) -> dict[str, float]:
    """Legacy sampled metrics on one evaluation set, keys `sampled{n}_{sampler}_ndcg@10` etc.

    Ranks each target among `config.eval.sampled` negatives (no seen items, not the target,
    drawn by `config.eval.sampler`); a complement to, never a replacement for, `evaluate`.
    """
    n, sampler = int(config.eval.sampled), str(config.eval.sampler)
    log_weights = item_log_weights(sampler, seqs.items, seqs.num_items)
    check_sampled(ev, log_weights, n)
    scorer = make_sampled_scorer(model, n)
    ranks = []
    for batch in batching.eval_batches(
        ev, config.model.max_len, config.eval.batch_size, seqs.num_items
    ):
        users = np.asarray(batch["users"]).astype(np.uint32)  # padding rows: -1 wraps, unused
        r = scorer(params, batch["inputs"], batch["targets"], batch["seen_BxS"], users,
                   log_weights)
        ranks.append(np.asarray(r)[np.asarray(batch["valid"])])
    return metrics.sampled_summary(np.concatenate(ranks), config.eval.ks, n, sampler)


def run(workdir: str, split: str = "test") -> dict[str, float]:
    """Restore the best checkpoint of `workdir` and evaluate it on `split`."""
    from posrec import checkpoint
    from posrec.data import load_split

    config, params, meta = checkpoint.restore_params(workdir, "best")
    data_split, seqs = load_split(config)
    checkpoint.check_same_data(meta, data_split.fingerprint(), seqs.num_items, workdir)
    model = sasrec.SASRec(config.model, seqs.num_items)
    # All local devices, whatever the training run used; configs saved before the keys
    # existed lack them.
    plan = parallel.make_plan(config.train.get("parallelism", "sharding"))
    scorer = make_scorer(model, max(config.eval.ks), config.eval.exclude_seen,
                         item_chunk_size=config.eval.get("item_chunk_size", 0), plan=plan)
    ev = data_split.test if split == "test" else data_split.valid
    summary, _ = evaluate(scorer, params, ev, config, seqs.num_items)
    if config.eval.get("sampled", 0):  # configs saved before eval.sampled existed lack it
        summary.update(evaluate_sampled(model, params, ev, config, seqs))
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
    from posrec.cli import parse_flags

    app.run(main, flags_parser=parse_flags)
