"""Causal multi-head self-attention with a pluggable positional scheme.

Tensors are `[batch B, time T, heads H, head dim D]`. Sequences are left-padded: position
T-1 holds the most recent item and `valid_BxT` marks real positions. A query attends to real
keys at positions <= its own; padded queries produce values that the caller zeroes.

Positional information enters attention in one of three places, chosen by the caller:
  * `rotate_qk`: a function applied to (q, k) before the scores (RoPE);
  * `bias_HxTxT`: an additive term on the logits (ALiBi, learned bias, log-kernel);
  * `kernel`: the position-space kernel of `posrec.models.kernel`, which transforms keys,
    values, logits or outputs according to its operator form.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

# Finite stand-in for -inf: a fully masked row (a padded query) then softmaxes to uniform
# weights instead of NaN, and its output is discarded by the caller.
NEG_INF = -1e30


def causal_mask(valid_BxT: Array) -> Array:
    """Boolean [B, 1, T, T]: query i may attend key j iff j <= i and key j is real."""
    T = valid_BxT.shape[-1]
    causal_TxT = jnp.tril(jnp.ones((T, T), dtype=bool))
    return causal_TxT[None, None] & valid_BxT[:, None, None, :]


def attention_weights(logits_BxHxTxT: Array, mask_Bx1xTxT: Array) -> Array:
    """Softmax over keys of masked logits, in float32 for stability."""
    logits = jnp.where(mask_Bx1xTxT, logits_BxHxTxT.astype(jnp.float32), NEG_INF)
    return jax.nn.softmax(logits, axis=-1)


def scores(q_BxTxHxD: Array, k_BxTxHxD: Array) -> Array:
    """Scaled dot products S = Q Kᵀ / √D as [B, H, T(query), T(key)]."""
    depth = q_BxTxHxD.shape[-1]
    return jnp.einsum("bqhd,bkhd->bhqk", q_BxTxHxD, k_BxTxHxD) / jnp.sqrt(depth).astype(
        q_BxTxHxD.dtype
    )


def aggregate(weights_BxHxTxT: Array, v_BxTxHxD: Array) -> Array:
    """Weighted sum of values: [B, T, H, D].

    Computed as [B, H, T, D] and then transposed: XLA:CPU lowers "bhqk,bkhd->bqhd" directly
    to a batched dot with transposed operands and output plus copies (seen in the profile;
    the whole training step gains 0-4%, BENCHMARKS.md table 2).
    """
    out_BxHxTxD = jnp.einsum(
        "bhqk,bkhd->bhqd", weights_BxHxTxT.astype(v_BxTxHxD.dtype), v_BxTxHxD
    )
    return out_BxHxTxD.transpose(0, 2, 1, 3)


def plain_attention(
    q_BxTxHxD: Array,
    k_BxTxHxD: Array,
    v_BxTxHxD: Array,
    mask_Bx1xTxT: Array,
    bias_HxTxT: Array | None = None,
    dropout: Callable[[Array], Array] = lambda w: w,
) -> Array:
    """softmax(mask(Q Kᵀ/√D + bias)) V, with dropout on the attention weights."""
    logits = scores(q_BxTxHxD, k_BxTxHxD)
    if bias_HxTxT is not None:
        logits = logits + bias_HxTxT
    return aggregate(dropout(attention_weights(logits, mask_Bx1xTxT)), v_BxTxHxD)


class ByteDropout(nn.Module):
    """Inverted dropout from one random byte per element (`model.dropout_bits=8`).

    A byte b is uniform on 0..255; the element is dropped iff b < round(256 * rate), so the
    effective rate is that count / 256. One 32-bit PRNG word serves four elements, where
    `nn.Dropout` draws a float32 uniform per element: on CPU the [B, H, T, T] attention-weight
    mask is then several times cheaper (BENCHMARKS.md).
    """

    rate: float
    deterministic: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        threshold = round(256 * self.rate)
        if self.deterministic or threshold == 0:
            return x
        n = x.size
        words = jax.random.bits(self.make_rng("dropout"), (-(-n // 4),), jnp.uint32)
        bytes_ = jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(-1)[:n]
        keep = bytes_.reshape(x.shape) >= threshold
        return jnp.where(keep, x * (256 / (256 - threshold)), 0).astype(x.dtype)


def dropout(rate: float, deterministic: bool, bits: int = 32) -> nn.Module:
    """The dropout layer of `model.dropout_bits`: flax `nn.Dropout` (32) or `ByteDropout` (8).
    Created inside a compact method, like any submodule."""
    if bits == 8:
        return ByteDropout(rate, deterministic)
    return nn.Dropout(rate, deterministic=deterministic)


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention; queries come from `x_q`, keys and values from `x_kv`.

    SASRec normalises only the query path (pre-LN on queries, raw residual stream for keys
    and values); the caller passes both.
    """

    num_heads: int
    dropout_rate: float
    # (q, k, v, mask, valid, dropout, bias, last_only=) -> out: kernel.py's kernel_attention
    kernel_attention: Callable | None = None
    rotate_qk: Callable | None = None  # (q, k) -> (q, k), e.g. RoPE
    bias_HxTxT: Array | None = None  # additive logit bias, e.g. ALiBi or learned bias
    dtype: jnp.dtype = jnp.float32  # compute dtype of the projections (model.dtype)
    # Only the last query's output, [B, 1, C] (scoring): keys and values still span T.
    last_only: bool = False
    dropout_bits: int = 32  # model.dropout_bits

    @nn.compact
    def __call__(self, x_q_BxTxC: Array, x_kv_BxTxC: Array, valid_BxT: Array, train: bool) -> Array:
        C = x_q_BxTxC.shape[-1]
        H = self.num_heads
        dense = lambda name: nn.DenseGeneral(
            (H, C // H), kernel_init=nn.initializers.normal(0.02), dtype=self.dtype, name=name
        )
        q = dense("query")(x_q_BxTxC)
        k = dense("key")(x_kv_BxTxC)
        v = dense("value")(x_kv_BxTxC)
        if self.rotate_qk is not None:
            q, k = self.rotate_qk(q, k)
        mask = causal_mask(valid_BxT)
        drop = dropout(self.dropout_rate, not train, self.dropout_bits)
        if self.kernel_attention is not None:
            out = self.kernel_attention(q, k, v, mask, valid_BxT, drop, self.bias_HxTxT,
                                        last_only=self.last_only)
        elif self.last_only:
            bias = None if self.bias_HxTxT is None else self.bias_HxTxT[..., -1:, :]
            out = plain_attention(q[:, -1:], k, v, mask[:, :, -1:], bias, drop)
        else:
            out = plain_attention(q, k, v, mask, self.bias_HxTxT, drop)
        return nn.DenseGeneral(
            C, axis=(-2, -1), kernel_init=nn.initializers.normal(0.02), dtype=self.dtype,
            name="out",
        )(out)
