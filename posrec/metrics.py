"""Full-ranking metrics (shared/docs/protocol.md).

Two steps, so that per-user values can be exported for significance tests:
  1. `chunked_rank_and_topk` (jitted, on device): rank of each user's target among all
     catalog items, with pessimistic ties and seen-item masking, plus the top-K list for
     coverage (`rank_and_topk` is the same on a dense score matrix, the tests' reference);
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
    """1 + number of other items scoring >= the target (ties count against the target).

    NaN scores count as ahead and a non-finite target score gets the worst rank, N."""
    t_B = masked_BxN[jnp.arange(masked_BxN.shape[0]), targets_B]
    t_B = jnp.where(jnp.isfinite(t_B), t_B, jnp.nan)
    return jnp.sum(~(masked_BxN < t_B[:, None]), axis=-1)


def rank_and_topk(scores_BxN: Array, targets_B: Array, seen_BxS: Array | None, k: int):
    """(ranks_B int32, topk_BxK item ids) for one batch of users; a top-k slot holding a
    masked (-inf) item gets the padding id 0: nothing is recommended there."""
    masked = mask_scores(scores_BxN, targets_B, seen_BxS)
    top_BxK, topk_BxK = jax.lax.top_k(masked, min(k, masked.shape[-1] - 1))
    topk_BxK = jnp.where(top_BxK == -jnp.inf, 0, topk_BxK)
    return target_ranks(masked, targets_B).astype(jnp.int32), topk_BxK.astype(jnp.int32)


def chunked_rank_and_topk(
    hidden_BxC: Array,
    table_NxC: Array,
    targets_B: Array,
    seen_BxS: Array | None,
    k: int,
    chunk_size: int,
) -> tuple[Array, Array]:
    """`rank_and_topk(hidden_BxC @ table_NxCᵀ, ...)` without the [B, N] score matrix.

    Scores are computed in item chunks of `chunk_size` rows (0: one chunk = the whole
    catalog; raised to at least k so the running top-k fills from the first chunk). Each chunk
    adds its count of items not scoring below the target to the rank, and its top-k is merged
    into the running top-k; ties keep the lower item id, as `lax.top_k` on the full row does.

    The target's score is read from the same score matmul as every other item's, never
    recomputed by another reduction whose rounding could differ: an exact tie must count
    against the target. So every chunk is scored by one op of one shape inside one
    `lax.scan` (a last partial chunk is the catalog's last `chunk` rows, its rows already
    seen in the previous chunk skipped), and with several chunks a first scan finds the
    target's score (the score matmul runs twice). "Not below" also counts NaN scores as
    ahead, and a non-finite target score gets the worst rank. Top-k slots that only masked
    (-inf) items could fill hold the padding id 0 (nothing recommended), as in
    `rank_and_topk`.

    Returns (ranks_B int32, topk_BxK int32 item ids), K = min(k, N - 1).
    """
    N = table_NxC.shape[0]
    k = min(int(k), N - 1)
    chunk = N if chunk_size <= 0 else min(N, max(int(chunk_size), k))
    B = hidden_BxC.shape[0]
    rows_B = jnp.arange(B)
    # Each chunk as (first row, first id not in an earlier chunk): the last chunk ends at
    # row N and may overlap the one before it.
    fresh_from_X = jnp.arange(0, N, chunk)
    starts_X = jnp.minimum(fresh_from_X, N - chunk)

    def over_chunks(fn, carry):
        """Fold `fn(carry, start, fresh_from, scores_BxK) -> carry` over the chunks."""

        def body(c, xs):
            start, fresh_from = xs
            table_KxC = jax.lax.dynamic_slice_in_dim(table_NxC, start, chunk)
            scores_BxK = (hidden_BxC @ table_KxC.T).astype(jnp.float32)
            return fn(c, start, fresh_from, scores_BxK), None

        return jax.lax.scan(body, carry, (starts_X, fresh_from_X))[0]

    def pick_target(target_B, start, fresh_from, scores_BxK):
        """`target_B`, replaced by the target's score where the target is new in this chunk."""
        local_B = targets_B - start
        inside_B = (targets_B >= fresh_from) & (local_B < chunk)
        got_B = jnp.take_along_axis(scores_BxK, jnp.clip(local_B, 0, chunk - 1)[:, None], 1)
        return jnp.where(inside_B, got_B[:, 0], target_B)

    def merge(carry, start, fresh_from, scores_BxK):
        ahead_B, top_BxK, ids_BxK, target_B = carry
        if len(fresh_from_X) == 1:  # one chunk: the target's score is in it
            target_B = pick_target(target_B, start, fresh_from, scores_BxK)
        t_B = jnp.where(jnp.isfinite(target_B), target_B, jnp.nan)  # non-finite: worst rank
        ids_K = start + jnp.arange(chunk)
        is_target_BxK = ids_K[None, :] == targets_B[:, None]
        masked_BxK = jnp.broadcast_to((ids_K == 0) | (ids_K < fresh_from), scores_BxK.shape)
        if seen_BxS is not None:
            inside = (seen_BxS >= start) & (seen_BxS < start + chunk)
            local_BxS = jnp.where(inside, seen_BxS - start, chunk)  # out of chunk: dropped
            masked_BxK = masked_BxK | jnp.zeros_like(masked_BxK).at[
                rows_B[:, None], local_BxS
            ].set(True, mode="drop")
        scores_BxK = jnp.where(masked_BxK & ~is_target_BxK, -jnp.inf, scores_BxK)
        counted_BxK = ~is_target_BxK & (ids_K >= fresh_from)[None, :]
        ahead_B = ahead_B + jnp.sum(~(scores_BxK < t_B[:, None]) & counted_BxK, axis=-1)
        top, idx = jax.lax.top_k(scores_BxK, k)
        # Held entries first: among equal scores the earlier (lower) id wins, and a masked
        # (-inf) entry never displaces a held one (initially -inf with id 0).
        all_top = jnp.concatenate([top_BxK, top], axis=1)
        all_ids = jnp.concatenate([ids_BxK, idx + start], axis=1)
        top_BxK, pick = jax.lax.top_k(all_top, k)
        return ahead_B, top_BxK, jnp.take_along_axis(all_ids, pick, axis=1), target_B

    target_B = jnp.zeros((B,), jnp.float32)
    if len(fresh_from_X) > 1:
        target_B = over_chunks(pick_target, target_B)
    carry = (jnp.zeros((B,), jnp.int32), jnp.full((B, k), -jnp.inf, jnp.float32),
             jnp.zeros((B, k), jnp.int32), target_B)
    ahead_B, _, topk_BxK, _ = over_chunks(merge, carry)
    return (1 + ahead_B).astype(jnp.int32), topk_BxK.astype(jnp.int32)


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


# Legacy sampled evaluation (issue 8 item 4): full ranking above stays the protocol; this
# ranks the target among n sampled negatives only so numbers can be related to older papers.


def sample_negatives(
    keys_B: Array, log_weights_N: Array, targets_B: Array, seen_BxS: Array, n: int
) -> Array:
    """n distinct negatives per user, drawn without replacement with P(item) ∝ weight.

    Gumbel-top-n over the catalog: item i gets log_weights_N[i] + Gumbel noise and the n
    largest win, which is successive sampling without replacement (the same law as
    `numpy.random.Generator.choice(replace=False, p=w/w.sum())`). Never drawn: the padding id
    0, any item of the user's history `seen_BxS` (0-padded), the target itself.

    Args:
        keys_B: one PRNG key per user (e.g. fold_in(seed, user id)), so a user's negatives do
            not depend on which batch or batch size the user is evaluated in.
        log_weights_N: float [N] log sampling weight of each item id (N = catalog + 1; index 0
            is ignored); all zeros = uniform.
    Returns:
        negatives_Bxn int32. The caller makes sure every user has at least n items to draw
        from (`evaluate.check_sampled`); otherwise the tail of a row holds excluded items.
    """
    B, N = targets_B.shape[0], log_weights_N.shape[0]
    rows_B = jnp.arange(B)
    noise_BxN = jax.vmap(lambda k: jax.random.gumbel(k, (N,)))(keys_B)
    g = noise_BxN + log_weights_N[None, :]
    g = g.at[rows_B[:, None], seen_BxS].set(-jnp.inf).at[rows_B, targets_B].set(-jnp.inf)
    g = g.at[:, 0].set(-jnp.inf)
    _, negatives_Bxn = jax.lax.top_k(g, n)
    return negatives_Bxn.astype(jnp.int32)


def sampled_ranks(scores_BxN: Array, targets_B: Array, negatives_Bxn: Array) -> Array:
    """int32 [B]: 1 + number of sampled negatives scoring >= the target (pessimistic ties)."""
    rows_B = jnp.arange(scores_BxN.shape[0])
    target_B = scores_BxN[rows_B, targets_B]
    neg_Bxn = jnp.take_along_axis(scores_BxN, negatives_Bxn, axis=1)
    return (1 + jnp.sum(neg_Bxn >= target_B[:, None], axis=-1)).astype(jnp.int32)


def sampled_summary(ranks_U: np.ndarray, ks, n: int, sampler: str) -> dict[str, float]:
    """Mean NDCG/HR/MRR@k of sampled ranks for k <= n, keys `sampled{n}_{sampler}_name@k`.

    The prefix labels every value as sampled wherever it is copied; COV is not defined here.
    """
    prefix = f"sampled{n}_{sampler}_"
    kept = [k for k in ks if k <= n]
    out = {prefix + name: float(v.mean()) for name, v in per_user_metrics(ranks_U, kept).items()}
    out[prefix + "num_users"] = int(len(ranks_U))
    return out
