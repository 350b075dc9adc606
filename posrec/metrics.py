"""Full-ranking metrics (shared/docs/protocol.md).

Two steps, so that per-user values can be exported for significance tests:
  1. `rank_and_topk` (jitted, on device): rank of each user's target among all catalog
     items, with pessimistic ties and seen-item masking, plus the top-K list for coverage;
  2. `summarize` (numpy, on host): NDCG/HR/MRR@K averaged over users, COV@K over the union
     of top-K lists.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def mask_scores(scores_BxN: Array, targets_B: Array, seen_BxS: Array | None) -> Array:
    """Scores with padding id 0 and seen items at -inf; the target itself is never masked.

    `seen_BxS` lists each user's history (0-padded); None disables exclude-seen.
    """
    scores_BxN = jnp.asarray(scores_BxN)
    rows_B = jnp.arange(scores_BxN.shape[0])
    target_score_B = scores_BxN[rows_B, targets_B]
    s = scores_BxN.at[:, 0].set(-jnp.inf)
    if seen_BxS is not None:
        s = s.at[rows_B[:, None], seen_BxS].set(-jnp.inf)
    return s.at[rows_B, targets_B].set(target_score_B)


def target_ranks(masked_BxN: Array, targets_B: Array) -> Array:
    """1 + number of other items scoring >= the target (ties count against the target)."""
    t_B = masked_BxN[jnp.arange(masked_BxN.shape[0]), targets_B]
    return jnp.sum(masked_BxN >= t_B[:, None], axis=-1)


def rank_and_topk(scores_BxN: Array, targets_B: Array, seen_BxS: Array | None, k: int):
    """(ranks_B int32, topk_BxK item ids) for one batch of users."""
    masked = mask_scores(scores_BxN, targets_B, seen_BxS)
    _, topk_BxK = jax.lax.top_k(masked, min(k, masked.shape[-1] - 1))
    return target_ranks(masked, targets_B).astype(jnp.int32), topk_BxK.astype(jnp.int32)


def per_user_metrics(ranks_U: np.ndarray, ks) -> dict[str, np.ndarray]:
    """Per-user ndcg@k, hr@k, mrr@k as float64 arrays [U]."""
    ranks = np.asarray(ranks_U, dtype=np.float64)
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
        out[f"hr@{k}"] = hit.astype(np.float64)
        out[f"mrr@{k}"] = np.where(hit, 1.0 / ranks, 0.0)
    return out


def coverage(topk_UxK: np.ndarray, k: int, num_items: int) -> float:
    """|union of users' top-k lists| / num_items (padding id 0 never counts)."""
    ids = np.unique(np.asarray(topk_UxK)[:, :k])
    return float(np.count_nonzero(ids)) / num_items


def summarize(ranks_U: np.ndarray, topk_UxK: np.ndarray, ks, num_items: int) -> dict[str, float]:
    """Mean per-user metrics and COV@k, keyed `name@k` (lower case)."""
    if len(ranks_U) == 0:
        raise ValueError("no users to evaluate")
    out = {name: float(v.mean()) for name, v in per_user_metrics(ranks_U, ks).items()}
    for k in ks:
        out[f"cov@{k}"] = coverage(topk_UxK, k, num_items)
    out["num_users"] = int(len(ranks_U))
    return out
