"""Training losses on hidden states; the tied item table gives the scores.

`hidden_BxTxC` are the model outputs, `targets_BxT` the next items (0 = no loss at this
position). Both losses return the mean over positions that carry a loss and that count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def full_ce(hidden_BxTxC: Array, table_NxC: Array, targets_BxT: Array) -> tuple[Array, Array]:
    """Softmax cross-entropy over the whole catalog (padding id 0 excluded) at every position.

    Returns (mean loss, number of target positions).
    """
    logits_BxTxN = jnp.einsum("btc,nc->btn", hidden_BxTxC, table_NxC).astype(jnp.float32)
    logits_BxTxN = logits_BxTxN.at[..., 0].set(-jnp.inf)
    lse_BxT = jax.nn.logsumexp(logits_BxTxN, axis=-1)
    tgt_BxT = jnp.take_along_axis(logits_BxTxN, targets_BxT[..., None], axis=-1)[..., 0]
    return _masked_mean(lse_BxT - tgt_BxT, targets_BxT)


def sampled_bce(
    hidden_BxTxC: Array, table_NxC: Array, targets_BxT: Array, rng: Array
) -> tuple[Array, Array]:
    """Original SASRec loss: BCE on the target vs one uniform negative per position.

    The negative is drawn uniformly from the catalog minus the target (not minus the whole
    history, which SASRec does with a Python loop; the difference is negligible for large
    catalogs and keeps the step jit-friendly).
    """
    num_items = table_NxC.shape[0] - 1
    neg_BxT = jax.random.randint(rng, targets_BxT.shape, 1, num_items)  # 1..N-1
    neg_BxT = jnp.where(neg_BxT >= targets_BxT, neg_BxT + 1, neg_BxT)  # skip the target
    pos = jnp.einsum("btc,btc->bt", hidden_BxTxC, table_NxC[targets_BxT]).astype(jnp.float32)
    neg = jnp.einsum("btc,btc->bt", hidden_BxTxC, table_NxC[neg_BxT]).astype(jnp.float32)
    per_pos = -jax.nn.log_sigmoid(pos) - jax.nn.log_sigmoid(-neg)
    return _masked_mean(per_pos, targets_BxT)


def _masked_mean(per_pos_BxT: Array, targets_BxT: Array) -> tuple[Array, Array]:
    has_target = targets_BxT > 0
    count = has_target.sum().astype(jnp.float32)
    # `where`, not a product: a padded target's term may be inf (its logit is -inf).
    total = jnp.sum(jnp.where(has_target, per_pos_BxT, 0.0))
    return total / jnp.maximum(count, 1.0), count
