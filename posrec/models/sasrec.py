"""SASRec backbone (Kang & McAuley 2018) with a pluggable positional scheme.

Input `inputs_BxT` holds item ids, left-padded with 0, position T-1 the most recent item.
Output `hidden_BxTxC` is the representation after the final LayerNorm; scores over the
catalog are `hidden @ item_embeddingᵀ` (tied output), computed by `logits` or chunked by
the loss/evaluation code for large catalogs.

Positional schemes (`config.model.positional`):
  * "absolute": learned position embeddings added to item embeddings (SASRec baseline);
  * "none": no positional signal beyond the causal mask;
  * "sinusoidal": fixed sin/cos codes added to item embeddings (indexed like "absolute");
  * "rope": rotary embeddings on queries and keys in every block;
  * "alibi": a fixed linear distance penalty per head on the logits;
  * "learned_bias": a learned additive logit bias per block (`model.bias`);
  * "kernel": the position-aware kernel of `posrec.models.kernel` inside every block
    (optionally combined with one of the above via `model.kernel.with_pe`).
The non-kernel schemes live in `posrec.models.positional`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from posrec.models import attention, positional

Array = jax.Array


class PointWiseFFN(nn.Module):
    """Two position-wise dense layers with ReLU and dropout, residual (as in SASRec)."""

    hidden: int
    dropout_rate: float
    dtype: jnp.dtype = jnp.float32
    dropout_bits: int = 32

    @nn.compact
    def __call__(self, x_BxTxC: Array, train: bool) -> Array:
        init = nn.initializers.normal(0.02)
        h = nn.Dense(self.hidden, kernel_init=init, dtype=self.dtype, name="fc1")(x_BxTxC)
        h = attention.dropout(self.dropout_rate, not train, self.dropout_bits)(nn.relu(h))
        h = nn.Dense(x_BxTxC.shape[-1], kernel_init=init, dtype=self.dtype, name="fc2")(h)
        h = attention.dropout(self.dropout_rate, not train, self.dropout_bits)(h)
        return x_BxTxC + h


class Block(nn.Module):
    """LN(query path) → causal MHA → residual → LN → FFN (residual inside) → zero pads."""

    config: ml_collections.ConfigDict  # config.model
    kernel_attention: object = None
    rotate_qk: object = None  # (q, k) -> (q, k), e.g. RoPE
    bias_HxTxT: jax.Array | None = None  # additive logit bias, e.g. ALiBi or learned bias
    last_only: bool = False  # return [B, 1, C]: the last position only (the final block)

    @nn.compact
    def __call__(self, x_BxTxC: Array, valid_BxT: Array, train: bool) -> Array:
        cfg = self.config
        dtype = compute_dtype(cfg)
        q = nn.LayerNorm(epsilon=1e-8, dtype=dtype, name="ln_attn")(x_BxTxC)
        a = attention.CausalSelfAttention(
            num_heads=cfg.num_heads,
            dropout_rate=cfg.dropout,
            kernel_attention=self.kernel_attention,
            rotate_qk=self.rotate_qk,
            bias_HxTxT=self.bias_HxTxT,
            dtype=dtype,
            last_only=self.last_only,
            dropout_bits=dropout_bits(cfg),
            name="attn",
        )(q, x_BxTxC, valid_BxT, train)
        if self.last_only:
            q, valid_BxT = q[:, -1:], valid_BxT[:, -1:]
        x = q + a
        x = nn.LayerNorm(epsilon=1e-8, dtype=dtype, name="ln_ffn")(x)
        x = PointWiseFFN(cfg.ffn_dim or x.shape[-1], cfg.dropout, dtype, dropout_bits(cfg),
                         name="ffn")(x, train)
        return x * valid_BxT[..., None]


class SASRec(nn.Module):
    """The backbone; `num_items` excludes the padding id 0 (embedding has num_items+1 rows).

    Returns hidden states; scores are `hidden @ item_table(params)ᵀ`, computed by the loss or
    the evaluation (in chunks for large catalogs), never materialised here.
    """

    config: ml_collections.ConfigDict  # config.model
    num_items: int

    @nn.compact
    def __call__(self, inputs_BxT: Array, train: bool = False, last_only: bool = False) -> Array:
        """Hidden states [B, T, C] after the final LayerNorm; with `last_only`, [B, C] of the
        last position (what scoring needs): the final block then computes one query row,
        which halves the cost of evaluation (keys and values still span the window)."""
        cfg = self.config
        T = inputs_BxT.shape[1]
        valid_BxT = inputs_BxT > 0
        embed = nn.Embed(
            self.num_items + 1,
            cfg.hidden,
            embedding_init=nn.initializers.normal(0.02),
            name="item_embed",
        )
        x = embed(inputs_BxT) * jnp.sqrt(float(cfg.hidden))
        pe = positional.pe_scheme(cfg)
        if pe == "absolute":
            pos_TxC = self.param(
                "pos_embed", nn.initializers.normal(0.02), (cfg.max_len, cfg.hidden)
            )
            # Index T-1 is the most recent item whatever the window length.
            x = x + pos_TxC[cfg.max_len - T :][None]
        elif pe == "sinusoidal":
            x = x + positional.sinusoidal_table(cfg.max_len, cfg.hidden)[cfg.max_len - T :][None]
        x = attention.dropout(cfg.dropout, not train, dropout_bits(cfg))(x)
        x = (x * valid_BxT[..., None]).astype(compute_dtype(cfg))

        kernel_fns = [None] * cfg.num_blocks
        if cfg.positional == "kernel":
            from posrec.models import kernel as kernel_lib

            if cfg.kernel.share == "shared":
                factors = kernel_lib.PositionalKernel(
                    cfg.kernel, cfg.max_len, cfg.num_heads, name="kernel"
                )(T)
                kernel_fns = [
                    functools.partial(kernel_lib.kernel_attention, factors, cfg.kernel)
                ] * cfg.num_blocks
            else:
                kernel_fns = [
                    functools.partial(
                        kernel_lib.kernel_attention,
                        kernel_lib.PositionalKernel(
                            cfg.kernel, cfg.max_len, cfg.num_heads, name=f"kernel_{i}"
                        )(T),
                        cfg.kernel,
                    )
                    for i in range(cfg.num_blocks)
                ]
        rotate_qk = positional.rope_qk if pe == "rope" else None
        biases = [None] * cfg.num_blocks
        if pe == "alibi":
            biases = [positional.alibi_bias(cfg.num_heads, T)] * cfg.num_blocks
        elif pe == "learned_bias":
            biases = [
                positional.LearnedBias(cfg.bias, cfg.max_len, cfg.num_heads, name=f"bias_{i}")(T)
                for i in range(cfg.num_blocks)
            ]
        for i in range(cfg.num_blocks):
            x = Block(
                cfg,
                kernel_attention=kernel_fns[i],
                rotate_qk=rotate_qk,
                bias_HxTxT=biases[i],
                last_only=last_only and i == cfg.num_blocks - 1,
                name=f"block_{i}",
            )(x, valid_BxT, train)
        x = nn.LayerNorm(epsilon=1e-8, dtype=compute_dtype(cfg), name="final_ln")(x)
        return x[:, -1] if last_only else x


def compute_dtype(cfg: ml_collections.ConfigDict) -> jnp.dtype:
    """`model.dtype` (float32 for configs saved before it existed): the dtype of activations
    and matmuls; parameters, attention softmax, kernel factors and the loss stay float32."""
    return jnp.dtype(cfg.get("dtype", "float32"))


def dropout_bits(cfg: ml_collections.ConfigDict) -> int:
    """`model.dropout_bits` (32 for configs saved before it existed)."""
    return int(cfg.get("dropout_bits", 32))


def uses_absolute_pe(cfg: ml_collections.ConfigDict) -> bool:
    """Whether learned absolute position embeddings are added at the input."""
    return positional.pe_scheme(cfg) == "absolute"


def item_table(params) -> Array:
    """[num_items+1, C] item embeddings, shared by input and output (row 0 = padding)."""
    return params["item_embed"]["embedding"]
