"""Training losses on hidden states; the tied item table gives the scores.

`hidden_BxTxC` are the model outputs, `table_NxC` the item table (N = catalog + 1, row 0 =
padding, never a candidate), `targets_BxT` the next items (0 = no loss at this position).
Every loss returns the mean over positions that carry a loss and their count.

Full softmax over the catalog comes in two forms with the same value and gradient:
`full_ce` materialises the [B, T, N] logits (fast for small catalogs) and `chunked_ce`
streams the catalog in item chunks with a custom VJP, so its memory is O(B·T·chunk + N·C)
instead of O(B·T·N) — 1M items at B·T = 25,600 would need >100 GB of logits densely.
`sampled_softmax` is the cheap alternative: K shared negatives with logQ correction.

The training step (`train.train_step`) needs the sum and the count separately, so that
data-parallel devices can weight their parts by target counts: `make_loss` returns a
per-position loss function and `masked_sum` reduces it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

Array = jax.Array

# (hidden_BxTxC, table_NxC, targets_BxT, rng, rows_B) -> per-position loss [B, T] (any value
# where the target is 0). `rng` is the step's loss key, identical on every device; `rows_B`
# are the rows' indices in the global batch, so per-row randomness does not depend on how the
# batch is split across devices.
LossFn = Callable[[Array, Array, Array, Array, Array], Array]


def full_ce(hidden_BxTxC: Array, table_NxC: Array, targets_BxT: Array) -> tuple[Array, Array]:
    """Softmax cross-entropy over the whole catalog (padding id 0 excluded) at every position.

    Returns (mean loss, number of target positions).
    """
    return _masked_mean(_full_ce_per_position(hidden_BxTxC, table_NxC, targets_BxT), targets_BxT)


def chunked_ce(
    hidden_BxTxC: Array, table_NxC: Array, targets_BxT: Array, chunk_size: int
) -> tuple[Array, Array]:
    """`full_ce` computed over item chunks of `chunk_size` rows (same value and gradient).

    Returns (mean loss, number of target positions).
    """
    per_pos_BxT = _chunked_ce_per_position(hidden_BxTxC, table_NxC, targets_BxT, chunk_size)
    return _masked_mean(per_pos_BxT, targets_BxT)


def _full_ce_per_position(hidden_BxTxC: Array, table_NxC: Array, targets_BxT: Array) -> Array:
    logits_BxTxN = jnp.einsum("btc,nc->btn", hidden_BxTxC, table_NxC).astype(jnp.float32)
    logits_BxTxN = logits_BxTxN.at[..., 0].set(-jnp.inf)
    lse_BxT = jax.nn.logsumexp(logits_BxTxN, axis=-1)
    tgt_BxT = jnp.take_along_axis(logits_BxTxN, targets_BxT[..., None], axis=-1)[..., 0]
    return lse_BxT - tgt_BxT


def _chunked_ce_per_position(
    hidden_BxTxC: Array, table_NxC: Array, targets_BxT: Array, chunk_size: int
) -> Array:
    B, T, C = hidden_BxTxC.shape
    hidden_MxC = hidden_BxTxC.reshape(B * T, C)
    lse_M = chunked_logsumexp(hidden_MxC, table_NxC, int(chunk_size))
    # The target logit is one dot product per position; its gradient is an ordinary gather.
    tgt_M = jnp.einsum(
        "mc,mc->m", hidden_MxC, table_NxC[targets_BxT.reshape(-1)]
    ).astype(jnp.float32)
    return (lse_M - tgt_M).reshape(B, T)


def _chunk_bounds(num_rows: int, chunk_size: int) -> tuple[int, int, int]:
    """(chunk, number of full chunks, size of the remainder chunk) covering `num_rows` rows."""
    chunk = max(1, min(int(chunk_size), num_rows))
    return chunk, num_rows // chunk, num_rows % chunk


def _chunk_logits(hidden_MxC: Array, table_KxC: Array, start) -> Array:
    """float32 [M, K] logits of items start..start+K-1, the padding id 0 at -inf."""
    logits_MxK = jnp.einsum("mc,kc->mk", hidden_MxC, table_KxC).astype(jnp.float32)
    ids_K = start + jnp.arange(table_KxC.shape[0])
    return jnp.where(ids_K[None, :] == 0, -jnp.inf, logits_MxK)


def _over_chunks(fn, carry, table_NxC: Array, chunk_size: int):
    """Fold `fn(carry, start, table_KxC) -> (carry, out_KxC | None)` over the item chunks.

    Full chunks go through one `lax.scan` (constant memory in the number of chunks), the
    remainder (N not divisible by the chunk) is one more call with its own static size.
    Returns (carry, outputs concatenated along items, or None).
    """
    N = table_NxC.shape[0]
    chunk, num_full, rem = _chunk_bounds(N, chunk_size)

    def body(c, i):
        start = i * chunk
        return fn(c, start, jax.lax.dynamic_slice_in_dim(table_NxC, start, chunk))

    carry, outs = jax.lax.scan(body, carry, jnp.arange(num_full))
    if rem:
        carry, out_rem = fn(carry, num_full * chunk, table_NxC[num_full * chunk :])
        if outs is not None:
            outs = jnp.concatenate([outs.reshape(num_full * chunk, -1), out_rem])
    elif outs is not None:
        outs = outs.reshape(num_full * chunk, -1)
    return carry, outs


@jax.custom_vjp
def _lse(hidden_MxC: Array, table_NxC: Array, chunk_size: Array) -> Array:
    return _lse_fwd(hidden_MxC, table_NxC, chunk_size)[0]


def chunked_logsumexp(hidden_MxC: Array, table_NxC: Array, chunk_size: int) -> Array:
    """float32 [M]: log Σ_{n>=1} exp(hidden_m · table_n), streaming the table in chunks.

    Forward: an online log-sum-exp (running max and rescaled sum) over item chunks.
    Backward (custom VJP): recomputes each chunk's logits, so nothing of size M×N is ever
    stored; residuals are only hidden, table and the [M] result.
    """
    # The chunk size rides along as the shape of a dummy array: custom_vjp then needs no
    # nondiff_argnums and the size stays static.
    return _lse(hidden_MxC, table_NxC, jnp.zeros((max(1, int(chunk_size)), 0), jnp.float32))


def _lse_fwd(hidden_MxC, table_NxC, chunk_size):
    chunk = chunk_size.shape[0]
    M = hidden_MxC.shape[0]

    def step(carry, start, table_KxC):
        max_M, sum_M = carry
        logits_MxK = _chunk_logits(hidden_MxC, table_KxC, start)
        new_max_M = jnp.maximum(max_M, logits_MxK.max(axis=-1))
        shift_M = jnp.where(jnp.isfinite(new_max_M), new_max_M, 0.0)
        sum_M = sum_M * jnp.exp(max_M - shift_M) + jnp.exp(logits_MxK - shift_M[:, None]).sum(-1)
        return (new_max_M, sum_M), None

    init = (jnp.full((M,), -jnp.inf, jnp.float32), jnp.zeros((M,), jnp.float32))
    (max_M, sum_M), _ = _over_chunks(step, init, table_NxC, chunk)
    lse_M = jnp.log(sum_M) + jnp.where(jnp.isfinite(max_M), max_M, 0.0)
    return lse_M, (hidden_MxC, table_NxC, lse_M, chunk_size)


def _lse_bwd(residuals, g_M):
    hidden_MxC, table_NxC, lse_M, chunk_size = residuals
    h32_MxC = hidden_MxC.astype(jnp.float32)

    def step(dh_MxC, start, table_KxC):
        logits_MxK = _chunk_logits(hidden_MxC, table_KxC, start)
        p_MxK = jnp.exp(logits_MxK - lse_M[:, None]) * g_M[:, None]  # softmax · cotangent
        dh_MxC = dh_MxC + p_MxK @ table_KxC.astype(jnp.float32)
        return dh_MxC, p_MxK.T @ h32_MxC  # [K, C] gradient of this chunk's rows

    dh_MxC, dtable_NxC = _over_chunks(
        step, jnp.zeros_like(h32_MxC), table_NxC, chunk_size.shape[0]
    )
    return (
        dh_MxC.astype(hidden_MxC.dtype),
        dtable_NxC.astype(table_NxC.dtype),
        jnp.zeros_like(chunk_size),
    )


_lse.defvjp(_lse_fwd, _lse_bwd)


# ---------------------------------------------------------------------------------------------
# Fused cross-entropy (the training path of loss "ce"): value and gradient in one pass over
# chunks of target rows. Profiling the ML-1M step (B=128, T=200, 3,416 items) showed the dense
# [B, T, N] logits cost about half the step: ~350 MB written and re-read by a transpose copy,
# a scatter for the target gradient and separate softmax passes, while ~46% of the rows are
# padding. Here a chunk's [rows, N] logits stay in cache, rows without a target are skipped,
# and the three useful matmuls (logits, dL/dhidden, dL/dtable) run in the forward pass.

FUSED_CE_MAX_ROWS = 512
FUSED_CE_MAX_LOGITS = 1 << 26  # float32 logits per chunk (256 MB): bounds memory for big N


def fused_ce_rows(num_candidates: int) -> int:
    """Rows per chunk for a catalog of `num_candidates` items: 512, halved (down to 8) while
    a chunk's logits exceed 2^26 floats."""
    rows = FUSED_CE_MAX_ROWS
    while rows > 8 and rows * num_candidates > FUSED_CE_MAX_LOGITS:
        rows //= 2
    return rows


def fused_ce_per_position(
    hidden_BxTxC: Array, table_NxC: Array, targets_BxT: Array, rows_per_chunk: int = 0
) -> Array:
    """Full-catalog softmax CE per position, equal to `full_ce`'s terms where target > 0.

    Positions whose target is 0 get 0 and no gradient (the `LossFn` contract). Memory is
    O(rows·N + B·T·C), never O(B·T·N). The forward pass of a gradient computation also
    accumulates dL/dhidden and dL/dtable for unit weights on the target rows; the backward
    pass scales them when the cotangent is the same on every target row (a masked mean or
    sum, as in training) and recomputes the table gradient chunk by chunk otherwise, so the
    gradient is exact for any cotangent.

    Args:
        rows_per_chunk: rows of hidden states per chunk (0: `fused_ce_rows(N - 1)`).
    Returns:
        float32 [B, T].
    """
    hidden_BxTxC, table_NxC = jnp.asarray(hidden_BxTxC), jnp.asarray(table_NxC)
    targets_BxT = jnp.asarray(targets_BxT, jnp.int32)
    B, T, C = hidden_BxTxC.shape
    rows = int(rows_per_chunk) or fused_ce_rows(table_NxC.shape[0] - 1)
    per_pos_M = _fused_ce(
        hidden_BxTxC.reshape(B * T, C), table_NxC, targets_BxT.reshape(B * T), rows
    )
    return per_pos_M.reshape(B, T)


def _target_rows_first(hidden_MxC: Array, targets_M: Array, rows: int):
    """Rows with a target first (stable), zero-padded to a multiple of `rows`.

    Returns (order_M int32: source row of each packed row, hidden_PxC, targets_P,
    number of chunks holding target rows).
    """
    M = targets_M.shape[0]
    has_M = targets_M > 0
    count = jnp.sum(has_M, dtype=jnp.int32)
    # A stable partition by cumulative counts: O(M), no sort.
    dest_M = jnp.where(has_M, jnp.cumsum(has_M) - 1, count + jnp.cumsum(~has_M) - 1)
    order_M = jnp.zeros(M, jnp.int32).at[dest_M].set(jnp.arange(M, dtype=jnp.int32))
    pad = -M % rows
    hidden_PxC = jnp.pad(hidden_MxC[order_M], ((0, pad), (0, 0)))
    targets_P = jnp.pad(targets_M[order_M], (0, pad))
    return order_M, hidden_PxC, targets_P, (count + rows - 1) // rows


def _chunk_softmax(hidden_RxC: Array, candidates_KxC: Array) -> tuple[Array, Array]:
    """(softmax [R, K] float32, logsumexp [R]) of one chunk's logits over items 1..N-1."""
    logits_RxK = (hidden_RxC @ candidates_KxC.T).astype(jnp.float32)
    max_R = logits_RxK.max(axis=-1)
    exp_RxK = jnp.exp(logits_RxK - max_R[:, None])
    sum_R = exp_RxK.sum(axis=-1)
    return exp_RxK / sum_R[:, None], jnp.log(sum_R) + max_R


def _fused_pass(hidden_MxC, table_NxC, targets_M, rows: int, weights_M=None, grads=True):
    """One pass over the target chunks.

    Returns (lse_M, dhidden_MxC or None, dcandidates_KxC or None): the softmax gradients with
    per-row weights `weights_M` (None: 1 on every row), without the target terms.
    """
    M, C = hidden_MxC.shape
    candidates_KxC = table_NxC[1:]  # the padding id is never a candidate
    order_M, hidden_PxC, targets_P, num_chunks = _target_rows_first(hidden_MxC, targets_M, rows)
    P = hidden_PxC.shape[0]
    w_P = None if weights_M is None else jnp.pad(weights_M[order_M], (0, P - M))

    def body(i, carry):
        lse_P, dh_PxC, dcand_CxK = carry
        start = i * rows
        h_RxC = jax.lax.dynamic_slice_in_dim(hidden_PxC, start, rows)
        p_RxK, lse_R = _chunk_softmax(h_RxC, candidates_KxC)
        lse_P = jax.lax.dynamic_update_slice_in_dim(lse_P, lse_R, start, 0)
        if grads:
            y_R = jax.lax.dynamic_slice_in_dim(targets_P, start, rows)
            w_R = (y_R > 0).astype(jnp.float32)
            if w_P is not None:
                w_R = w_R * jax.lax.dynamic_slice_in_dim(w_P, start, rows)
            p_RxK = p_RxK * w_R[:, None]
            dh_RxC = p_RxK @ candidates_KxC.astype(jnp.float32)
            dh_PxC = jax.lax.dynamic_update_slice_in_dim(dh_PxC, dh_RxC, start, 0)
            # Accumulated as [C, K]: hᵀp runs 1.6x faster on XLA:CPU than pᵀh (whose
            # transposed operand misses the fast GEMM path; benchmarks/matmul_shapes.py).
            dcand_CxK = dcand_CxK + h_RxC.astype(jnp.float32).T @ p_RxK
        return lse_P, dh_PxC, dcand_CxK

    K = candidates_KxC.shape[0]
    init = (
        jnp.zeros((P,), jnp.float32),
        jnp.zeros((P, C) if grads else (0, C), jnp.float32),
        jnp.zeros((C, K) if grads else (C, 0), jnp.float32),
    )
    lse_P, dh_PxC, dcand_CxK = jax.lax.fori_loop(0, num_chunks, body, init)
    unpack = lambda x_P: jnp.zeros((M,) + x_P.shape[1:], x_P.dtype).at[order_M].set(x_P[:M])
    if not grads:
        return unpack(lse_P), None, None
    return unpack(lse_P), unpack(dh_PxC), dcand_CxK.T


def _fused_value(hidden_MxC, table_NxC, targets_M, lse_M) -> Array:
    tgt_M = jnp.einsum("mc,mc->m", hidden_MxC, table_NxC[targets_M]).astype(jnp.float32)
    return jnp.where(targets_M > 0, lse_M - tgt_M, 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _fused_ce(hidden_MxC: Array, table_NxC: Array, targets_M: Array, rows: int) -> Array:
    lse_M, _, _ = _fused_pass(hidden_MxC, table_NxC, targets_M, rows, grads=False)
    return _fused_value(hidden_MxC, table_NxC, targets_M, lse_M)


def _table_grad(hidden_MxC, table_NxC, targets_M, dcand_KxC, w_M) -> Array:
    """dL/dtable [N, C] float32 from the candidates' softmax part and the target terms."""
    h32_MxC = jnp.where((targets_M > 0)[:, None], hidden_MxC.astype(jnp.float32), 0.0)
    dtable_NxC = jnp.concatenate([jnp.zeros_like(dcand_KxC[:1]), dcand_KxC])
    return dtable_NxC.at[targets_M].add(-w_M[:, None] * h32_MxC)


def _fused_ce_fwd(hidden_MxC, table_NxC, targets_M, rows):
    lse_M, dh_MxC, dcand_KxC = _fused_pass(hidden_MxC, table_NxC, targets_M, rows)
    has_M = (targets_M > 0)[:, None]
    dh_unit_MxC = jnp.where(has_M, dh_MxC - table_NxC[targets_M].astype(jnp.float32), 0.0)
    ones_M = jnp.ones(targets_M.shape, jnp.float32)
    dtable_unit_NxC = _table_grad(hidden_MxC, table_NxC, targets_M, dcand_KxC, ones_M)
    value_M = _fused_value(hidden_MxC, table_NxC, targets_M, lse_M)
    return value_M, (hidden_MxC, table_NxC, targets_M, dh_unit_MxC, dtable_unit_NxC)


def _fused_ce_bwd(rows, residuals, g_M):
    hidden_MxC, table_NxC, targets_M, dh_unit_MxC, dtable_unit_NxC = residuals
    has_M = targets_M > 0
    g_M = jnp.where(has_M, g_M.astype(jnp.float32), 0.0)
    g0 = g_M[jnp.argmax(has_M)]  # the first target row's weight (0 when there is none)
    uniform = jnp.all(jnp.where(has_M, g_M == g0, True))

    def recompute():
        _, _, dcand_KxC = _fused_pass(hidden_MxC, table_NxC, targets_M, rows, weights_M=g_M)
        return _table_grad(hidden_MxC, table_NxC, targets_M, dcand_KxC, g_M)

    dtable_NxC = jax.lax.cond(uniform, lambda: g0 * dtable_unit_NxC, recompute)
    dh_MxC = g_M[:, None] * dh_unit_MxC
    return dh_MxC.astype(hidden_MxC.dtype), dtable_NxC.astype(table_NxC.dtype), None


_fused_ce.defvjp(_fused_ce_fwd, _fused_ce_bwd)


def sampled_bce(
    hidden_BxTxC: Array, table_NxC: Array, targets_BxT: Array, rng: Array
) -> tuple[Array, Array]:
    """Original SASRec loss: BCE on the target vs one uniform negative per position.

    The negative is drawn uniformly from the catalog minus the target (not minus the whole
    history, which SASRec does with a Python loop; the difference is negligible for large
    catalogs and keeps the step jit-friendly). `rng` is one typed key (`jax.random.key`),
    or [B] typed keys (one per row).
    """
    return _masked_mean(_sampled_bce_per_position(hidden_BxTxC, table_NxC, targets_BxT, rng),
                        targets_BxT)


def _sampled_bce_per_position(
    hidden_BxTxC: Array, table_NxC: Array, targets_BxT: Array, rng: Array
) -> Array:
    B, T = targets_BxT.shape
    num_items = table_NxC.shape[0] - 1
    if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):  # a raw uint32 key's shape is (2,)
        raise TypeError(f"sampled BCE needs typed keys (jax.random.key), got {rng.dtype}")
    keys_B = rng if rng.ndim == 1 else jax.random.split(rng, B)
    neg_BxT = jax.vmap(lambda k: jax.random.randint(k, (T,), 1, num_items))(keys_B)  # 1..N-1
    neg_BxT = jnp.where(neg_BxT >= targets_BxT, neg_BxT + 1, neg_BxT)  # skip the target
    pos = jnp.einsum("btc,btc->bt", hidden_BxTxC, table_NxC[targets_BxT]).astype(jnp.float32)
    neg = jnp.einsum("btc,btc->bt", hidden_BxTxC, table_NxC[neg_BxT]).astype(jnp.float32)
    return -jax.nn.log_sigmoid(pos) - jax.nn.log_sigmoid(-neg)


def proposal_log_probs(proposal: str, item_counts_N: np.ndarray) -> np.ndarray:
    """float32 [N] log-probabilities of the negative proposal Q over item ids (0: -inf).

    "uniform": the same probability for every item; "popularity": count_n / Σ count, so an
    item never seen as a training target is never proposed (and never pushed down).
    """
    counts = np.asarray(item_counts_N, np.float64).copy()
    counts[0] = 0.0
    if proposal == "uniform":
        counts[1:] = 1.0
    elif proposal != "popularity":
        raise ValueError(f"unknown proposal {proposal!r}")
    if counts.sum() <= 0:
        raise ValueError("popularity proposal needs at least one item count > 0")
    with np.errstate(divide="ignore"):
        return np.log(counts / counts.sum()).astype(np.float32)


def sample_negatives(rng: Array, num: int, log_q_N: Array) -> Array:
    """int32 [num] item ids drawn i.i.d. (with replacement) from Q = exp(log_q_N).

    Inverse-CDF sampling: O(num · log N) per step, never a [num, N] Gumbel matrix.
    """
    cdf_N = jnp.cumsum(jnp.exp(log_q_N.astype(jnp.float32)))
    u_K = jax.random.uniform(rng, (num,), jnp.float32) * cdf_N[-1]
    ids_K = jnp.searchsorted(cdf_N, u_K, side="right")
    return jnp.clip(ids_K, 1, log_q_N.shape[0] - 1).astype(jnp.int32)


def sampled_softmax(
    hidden_BxTxC: Array,
    table_NxC: Array,
    targets_BxT: Array,
    negatives_K: Array,
    log_q_N: Array,
) -> tuple[Array, Array]:
    """Sampled softmax with logQ correction over K shared negatives (Bengio & Senécal 2008).

    Every candidate's logit s_n is corrected to s_n - log(K·Q(n)), the target included, and a
    negative equal to the position's target is removed (an "accidental hit"). With all N items
    as the negatives and a uniform Q the loss is exactly the full CE; in general, as K grows,
    it tends to log(e^{s_t} + K·Q(t)·Σ_{n≠t} e^{s_n}) - s_t.

    Args:
        negatives_K: int [K] item ids (e.g. `sample_negatives`), shared by all positions.
        log_q_N: float [N] log Q of every item id (`proposal_log_probs`).
    Returns (mean loss, number of target positions).
    """
    per_pos_BxT = _sampled_softmax_per_position(
        hidden_BxTxC, table_NxC, targets_BxT, negatives_K, log_q_N
    )
    return _masked_mean(per_pos_BxT, targets_BxT)


def _sampled_softmax_per_position(
    hidden_BxTxC, table_NxC, targets_BxT, negatives_K, log_q_N
) -> Array:
    log_k = jnp.log(float(negatives_K.shape[0]))
    pos_BxT = jnp.einsum("btc,btc->bt", hidden_BxTxC, table_NxC[targets_BxT]).astype(jnp.float32)
    # Padding targets (id 0, log Q = -inf) would make inf - inf = NaN, also in the gradient.
    log_q_BxT = jnp.where(targets_BxT > 0, log_q_N[targets_BxT], 0.0)
    pos_BxT = pos_BxT - (log_k + log_q_BxT)
    neg_BxTxK = jnp.einsum("btc,kc->btk", hidden_BxTxC, table_NxC[negatives_K]).astype(
        jnp.float32
    )
    neg_BxTxK = neg_BxTxK - (log_k + log_q_N[negatives_K])[None, None, :]
    hit_BxTxK = negatives_K[None, None, :] == targets_BxT[..., None]
    neg_BxTxK = jnp.where(hit_BxTxK, -jnp.inf, neg_BxTxK)
    lse_BxT = jax.nn.logsumexp(jnp.concatenate([pos_BxT[..., None], neg_BxTxK], -1), axis=-1)
    return lse_BxT - pos_BxT


def make_loss(train_cfg: ml_collections.ConfigDict, item_counts_N: np.ndarray) -> LossFn:
    """The per-position loss named by `config.train` (see `LossFn`).

    `item_counts_N` [num_items + 1]: how often each item is a training target (used by the
    popularity proposal of "sampled_softmax").
    """
    name = train_cfg.loss
    if name == "ce":
        chunk = int(train_cfg.ce_chunk_size)
        if chunk > 0:
            return lambda h, table, y, rng, rows: _chunked_ce_per_position(h, table, y, chunk)
        return lambda h, table, y, rng, rows: fused_ce_per_position(h, table, y)
    if name == "bce":

        def bce(h, table, y, rng, rows_B):
            keys_B = jax.vmap(jax.random.fold_in, (None, 0))(rng, rows_B)
            return _sampled_bce_per_position(h, table, y, keys_B)

        return bce
    if name == "sampled_softmax":
        log_q_N = jnp.asarray(proposal_log_probs(train_cfg.sampled_proposal, item_counts_N))
        num = int(train_cfg.num_negatives)

        def sampled(h, table, y, rng, rows_B):
            negatives_K = sample_negatives(rng, num, log_q_N)  # same on every device
            return _sampled_softmax_per_position(h, table, y, negatives_K, log_q_N)

        return sampled
    raise ValueError(f"unknown loss {name!r}")


def masked_sum(per_pos_BxT: Array, targets_BxT: Array) -> tuple[Array, Array]:
    """(Σ loss over positions with a target, number of such positions) as float32."""
    has_target = targets_BxT > 0
    # `where`, not a product: a padded target's term may be inf (its logit is -inf).
    total = jnp.sum(jnp.where(has_target, per_pos_BxT, 0.0))
    return total, has_target.sum().astype(jnp.float32)


def _masked_mean(per_pos_BxT: Array, targets_BxT: Array) -> tuple[Array, Array]:
    total, count = masked_sum(per_pos_BxT, targets_BxT)
    return total / jnp.maximum(count, 1.0), count
