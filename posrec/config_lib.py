"""Config validation and persistence.

`validate` rejects impossible values before any data is read or any step is compiled;
unknown keys are already rejected by ml_collections (`--config.model.hiden=...` fails).
A run's config is saved as `workdir/config.json`; a restart must present the same config
except for the keys in `RESUMABLE_KEYS`, which only extend or shorten training or change
how the same computation is laid out over devices and item chunks.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ml_collections
from absl import logging

from posrec.errors import ConfigError

POSITIONAL = ("absolute", "none", "kernel", "sinusoidal", "rope", "alibi", "learned_bias")
KERNEL_WITH_PE = ("none", "absolute", "sinusoidal", "rope", "alibi")
BIAS_KINDS = ("offset", "full")
RNG_IMPLS = ("threefry2x32", "philox2x32", "rbg")  # the default (JAX's) first
RESUMABLE_KEYS = (
    "train.num_epochs", "train.patience", "train.log_every", "train.skip_nonfinite",
    "train.checkpoint_every",
    # how the same computation is laid out (equal up to float rounding): a run may resume on
    # another number of devices or with other chunk sizes
    "train.parallelism", "train.num_devices", "train.ce_chunk_size", "eval.item_chunk_size",
)


def default_config() -> ml_collections.ConfigDict:
    """Every key a run may set, with posrec's defaults (configs/*.py override a few)."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = data = ml_collections.ConfigDict()
    # A data set of posrec/data/datasets.py (e.g. "ml-1m", "beauty", "yambda-likes": fetched
    # when data.path is ""), "csv" (needs data.path) or "synthetic"
    data.name = "synthetic"
    # local file: a CSV whose header names data.columns, or the data set's raw format
    data.path = ""
    data.columns = ("user_id", "item_id", "timestamp")
    # CSV files only: False = timestamps are per-user order indices (temporal split refused)
    data.has_real_time = True
    data.min_user_count = 5  # iterative k-core thresholds (0 disables a side)
    data.min_item_count = 5
    data.dedup_consecutive = False  # drop a user's consecutive repeats of the same item
    # Rows repeating an earlier (user, item, timestamp) row, in any data file (CSV or a data
    # set's raw format): False = DataError naming both lines (the default: duplicates usually
    # mean a file was concatenated twice, and under leave-one-out they make the validation
    # target equal the test target); True = keep the first occurrence and log how many were
    # dropped.
    data.drop_duplicates = False
    # Fraction of users kept, each by a seeded hash of its id (sources.user_sample_mask),
    # before k-core; for huge sets (zvuk). 1.0 keeps every user.
    data.user_sample = 1.0
    data.user_sample_seed = 0
    data.min_play_ratio = 0  # Yambda listens: keep played_ratio_pct >= this (0: every row)
    data.split = "loo"  # "loo" (leave-one-out) | "temporal" (global time cut)
    data.temporal_quantile = 0.9
    data.synthetic = ml_collections.ConfigDict(
        dict(num_users=2000, num_items=200, seq_len=40, lag=3, noise=0.1, seed=0)
    )

    config.model = model = ml_collections.ConfigDict()
    model.max_len = 200  # T: window length, index T-1 = most recent item
    model.hidden = 64
    model.num_blocks = 2
    model.num_heads = 1
    model.ffn_dim = 0  # 0: same as hidden (SASRec)
    model.dropout = 0.2
    # Random bits per dropout decision: 32 (flax nn.Dropout: a float32 uniform per element) |
    # 8 (one random byte per element: 4x fewer PRNG words, the rate rounded to a multiple of
    # 1/256, e.g. 0.1 -> 0.1016; a faster training step, BENCHMARKS.md table 2).
    model.dropout_bits = 32
    # Compute dtype of activations and matmuls: "float32" | "bfloat16" (for accelerators;
    # parameters, optimizer state, attention softmax, kernel factors and the loss stay
    # float32; on CPU bfloat16 is slower, BENCHMARKS.md).
    model.dtype = "float32"
    # "kernel" | "absolute" | "none" | "sinusoidal" | "rope" | "alibi" | "learned_bias"
    # (posrec/models/positional.py; README "Positional schemes")
    model.positional = "kernel"
    model.bias = bias = ml_collections.ConfigDict()  # positional="learned_bias" only
    bias.kind = "offset"  # "offset" (T_max per head, Toeplitz) | "full" (lower triangle)
    bias.per_head = True  # False: one bias shared by the heads of a block
    model.kernel = kernel = ml_collections.ConfigDict()
    # Paper's best ablation (paper.md §2): Toeplitz U, Full L, one kernel per block.
    kernel.u = "toeplitz"  # "identity" | "full" | "toeplitz" | "decay"
    kernel.l = "full"
    kernel.share = "layerwise"  # "layerwise" | "shared"
    kernel.per_head = False
    kernel.form = "ul"  # "ul" | "alt1" | "alt2" | "mult"
    kernel.init = "identity"  # "identity" | "identity_noise"
    kernel.init_noise = 0.01
    kernel.l_norm = "none"  # "none" | "rowsum" | "softmax"
    # A second scheme acting with the kernel: "none" | "absolute" | "sinusoidal" | "rope" | "alibi"
    kernel.with_pe = "none"

    config.train = train = ml_collections.ConfigDict()
    train.num_epochs = 200
    train.batch_size = 128
    # Length bucketing (batching.TrainBatches): each batch holds rows of one bucket and is
    # cut to its window T_b, e.g. (50, 100, 200); model.max_len is always the last bucket.
    # () = off: every batch is [B, max_len] (ML-1M: 47% of an epoch's positions are padding;
    # with (50, 100, 200): 22%, BENCHMARKS.md).
    train.bucket_lengths = ()
    # "ce" (full softmax over the catalog) | "bce" (1 sampled negative) | "sampled_softmax"
    # (num_negatives shared negatives per step from `sampled_proposal`, logQ-corrected)
    train.loss = "ce"
    # "ce" over item chunks of this size (custom VJP, memory O(B·T·chunk)); 0 = the fused CE
    # over chunks of target rows with every item (losses.fused_ce_per_position)
    train.ce_chunk_size = 0
    train.num_negatives = 100  # "sampled_softmax" only
    train.sampled_proposal = "uniform"  # "uniform" | "popularity" (training target counts)
    # Data parallelism (posrec/parallel.py): "sharding" (jit over a Mesh('data')) | "pmap";
    # the global batch_size is split over num_devices local devices per process (0 = all).
    train.parallelism = "sharding"
    train.num_devices = 0
    train.learning_rate = 1e-3
    train.weight_decay = 0.0
    train.grad_clip = 0.0  # global-norm clip; 0 disables
    train.eval_every = 1  # epochs between validation evaluations
    train.patience = 10  # evaluations without improvement of valid NDCG@10
    train.log_every = 50  # steps between progress lines
    # Steps between mid-epoch saves of checkpoints/latest (0: only at epoch ends and on
    # SIGTERM/SIGINT), so a hard crash (SIGKILL, lost node, OOM) of a long epoch loses at most
    # this many steps; resuming from one is exact. Only ever saving, it changes no result.
    train.checkpoint_every = 1000
    # A non-finite loss/gradient/update is always dropped on device; False = stop with
    # NonFiniteError naming the step, True = skip it and count it (metrics "skipped_steps").
    train.skip_nonfinite = False
    # PRNG of dropout (and sampled negatives): "threefry2x32" (JAX's default) |
    # "philox2x32" (Random123's Philox-2x32-10, of the family cuRAND and PyTorch's GPU generator
    # use: 3-4x cheaper bits than threefry on CPU, 1.04-1.17x per ML-1M step, BENCHMARKS.md;
    # one device only with JAX 0.10.2, checked before any data is read) | "rbg" (XLA's
    # RngBitGenerator, the fast one on TPU; slower than threefry on CPU). Same distributions,
    # other streams: changing it changes which units are dropped, so it is not resumable.
    # The default stays threefry so that RESULTS.md's runs repeat bit for bit.
    train.rng_impl = "threefry2x32"

    config.eval = ev = ml_collections.ConfigDict()
    ev.batch_size = 256
    ev.exclude_seen = True
    ev.ks = (1, 5, 10, 20, 50, 100)
    ev.item_chunk_size = 0  # score the catalog in chunks of this many items (0 = all at once)
    # Legacy sampled evaluation, reported next to (never instead of) full ranking: also rank
    # each test target among `sampled` negatives (0 = off), results.json "test_sampled".
    ev.sampled = 0
    ev.sampler = "uniform"  # "uniform" | "popularity" (item frequency in the data set)
    return config


def sparse_config(name: str, min_item_count: int = 5) -> ml_collections.ConfigDict:
    """`default_config()` for a short-sequence data set from a shared-style CSV (Amazon,
    Yelp, LastFM): per-user order indices instead of times (leave-one-out only), 5-core users
    and `min_item_count`-core items, repeats kept, T = 50 and SASRec's dropout 0.5 for
    sparse data."""
    config = default_config()
    config.data.name = name
    config.data.has_real_time = False
    config.data.min_user_count = 5
    config.data.min_item_count = min_item_count
    config.data.dedup_consecutive = False
    config.model.max_len = 50
    config.model.dropout = 0.5
    return config


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"config.{name}={value!r} is not one of {list(allowed)}")


def _check_rng_impl(name: str) -> None:
    """philox2x32 is newer than the oldest JAX that setup.cfg allows: name the JAX at fault."""
    import jax

    try:
        jax.random.key(0, impl=name)
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"config.train.rng_impl={name!r} is not available in the installed JAX "
            f"{jax.__version__} ({err}); upgrade JAX or use 'threefry2x32'"
        ) from err


def _positive(name: str, value, minimum=1) -> None:
    if not value >= minimum:
        raise ConfigError(f"config.{name}={value!r} must be >= {minimum}")


def _check_known_keys(config: ml_collections.ConfigDict) -> None:
    """Keys a config *file* added to default_config() (a typo such as `train.learning_rte`
    would otherwise be ignored silently; command-line overrides are checked by ml_collections)."""
    known = flatten(to_dict(default_config()))
    unknown = sorted(set(flatten(to_dict(config))) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join('config.' + k for k in unknown)}{hint} "
            "(every key is listed in posrec/config_lib.py default_config)"
        )


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first unknown key or impossible value."""
    _check_known_keys(config)
    d, m, t, e = config.data, config.model, config.train, config.eval
    _choice("data.split", d.split, ("loo", "temporal"))
    if not 0.0 < d.temporal_quantile < 1.0:
        raise ConfigError(f"config.data.temporal_quantile={d.temporal_quantile} must be in (0, 1)")
    _positive("data.min_user_count", d.min_user_count, 0)
    _positive("data.min_item_count", d.min_item_count, 0)
    if len(d.columns) != 3:
        raise ConfigError("config.data.columns must name 3 columns: user, item, timestamp")
    if len(set(d.columns)) != 3:
        raise ConfigError(f"config.data.columns={tuple(d.columns)} must name 3 different columns")
    from posrec.data import datasets  # lazy: the data layer imports this module

    _choice("data.name", d.name, datasets.known_names())
    if not 0.0 < d.user_sample <= 1.0:
        raise ConfigError(f"config.data.user_sample={d.user_sample} must be in (0, 1]")
    _positive("data.user_sample_seed", d.user_sample_seed, 0)
    _positive("data.min_play_ratio", d.min_play_ratio, 0)
    if m.max_len < 2:
        raise ConfigError(
            f"config.model.max_len={m.max_len}: need at least 2 positions (one input, one target)"
        )
    _positive("model.hidden", m.hidden)
    _positive("model.num_blocks", m.num_blocks)
    _positive("model.num_heads", m.num_heads)
    _positive("model.ffn_dim", m.ffn_dim, 0)
    if m.hidden % m.num_heads:
        raise ConfigError(
            f"config.model.num_heads={m.num_heads} does not divide model.hidden={m.hidden}"
        )
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"config.model.dropout={m.dropout} must be in [0, 1)")
    _choice("model.dropout_bits", m.get("dropout_bits", 32), (8, 32))
    _choice("model.positional", m.positional, POSITIONAL)
    _choice("model.dtype", m.dtype, ("float32", "bfloat16"))
    _choice("model.bias.kind", m.bias.kind, BIAS_KINDS)
    uses_rope = m.positional == "rope" or (m.positional == "kernel" and m.kernel.with_pe == "rope")
    if uses_rope and (m.hidden // m.num_heads) % 2:
        raise ConfigError(
            f"RoPE needs an even head dimension: model.hidden={m.hidden} / "
            f"model.num_heads={m.num_heads} is odd"
        )
    k = m.kernel
    from posrec.models.kernel import validate_kernel_config  # the kernel owns its names

    validate_kernel_config(k, m.max_len, m.num_heads, m.hidden)
    _choice("model.kernel.with_pe", k.with_pe, KERNEL_WITH_PE)
    _positive("model.kernel.init_noise", k.init_noise, 0)
    _positive("train.num_epochs", t.num_epochs)
    _positive("train.batch_size", t.batch_size)
    if any(not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= m.max_len
           for b in t.bucket_lengths):
        raise ConfigError(
            f"config.train.bucket_lengths={tuple(t.bucket_lengths)} must be integers in "
            f"[1, model.max_len={m.max_len}]"
        )
    _choice("train.loss", t.loss, ("ce", "bce", "sampled_softmax"))
    _positive("train.ce_chunk_size", t.ce_chunk_size, 0)
    _positive("train.num_negatives", t.num_negatives)
    _choice("train.sampled_proposal", t.sampled_proposal, ("uniform", "popularity"))
    _choice("train.parallelism", t.parallelism, ("sharding", "pmap"))
    _positive("train.num_devices", t.num_devices, 0)
    if not 0 < t.learning_rate < float("inf"):
        raise ConfigError(f"config.train.learning_rate={t.learning_rate} must be finite and > 0")
    _positive("train.weight_decay", t.weight_decay, 0)
    _positive("train.grad_clip", t.grad_clip, 0)
    _positive("train.eval_every", t.eval_every)
    _positive("train.patience", t.patience)
    _positive("train.log_every", t.log_every)
    _positive("train.checkpoint_every", t.checkpoint_every, 0)
    _choice("train.rng_impl", t.rng_impl, RNG_IMPLS)
    _check_rng_impl(t.rng_impl)
    _positive("eval.batch_size", e.batch_size)
    _positive("eval.item_chunk_size", e.item_chunk_size, 0)
    if (not e.ks or any(not isinstance(x, int) or isinstance(x, bool) or x < 1 for x in e.ks)
            or 10 not in e.ks):
        raise ConfigError(f"config.eval.ks={tuple(e.ks)} must be positive integers including 10")
    _positive("eval.sampled", e.sampled, 0)
    _choice("eval.sampler", e.sampler, ("uniform", "popularity"))


def to_dict(config: ml_collections.ConfigDict) -> dict:
    """JSON-compatible nested dict (tuples become lists)."""
    return json.loads(config.to_json())


def from_dict(d: dict) -> ml_collections.ConfigDict:
    """Inverse of `to_dict`, restoring tuples for sequence-valued keys."""

    def fix(x):
        if isinstance(x, dict):
            return {k: fix(v) for k, v in x.items()}
        if isinstance(x, list):
            return tuple(x)
        return x

    return ml_collections.ConfigDict(fix(d))


def flatten(d: dict, prefix: str = "") -> dict:
    """{"train.learning_rate": 0.001, ...}: a nested config dict keyed by dotted paths."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write text or bytes via a synced temp file of its own and rename, so readers never
    see a partial file, even after a crash or with two writers."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def exclusive_lock(path: Path, holder: str) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created if needed) for the block.

    The file records the holder (pid, host). If another process holds it, ConfigError names
    `holder` (what the other process is) and the recorded pid and host. The lock dies with
    its process, so a crash never leaves it held. Filesystems without locks (some network
    mounts) only get a warning.
    """
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(
                f"{path.parent} is in use by {holder} ({f.read().strip() or 'unknown process'})"
                "; let it finish or stop it (kill -TERM) first"
            ) from None
        except OSError as err:
            logging.warning("cannot lock %s (%s): not protected against %s", path, err, holder)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield  # closing the file releases the lock


def write_json_atomic(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_or_check(config: ml_collections.ConfigDict, workdir: Path, write: bool = True) -> None:
    """Save config.json, or check that a restarted run uses a compatible config.

    `write=False` only checks (the processes of a multi-process run other than process 0).
    """
    path = Path(workdir) / "config.json"
    new = to_dict(config)
    if path.exists():
        old = _read_config_json(path, "use a fresh --workdir")
        a, b = flatten(old), flatten(new)
        # A key added to posrec after the run started is absent from its config.json; at its
        # default it means the behaviour the run already had, so it does not block a resume.
        defaults = flatten(to_dict(default_config()))
        diff = sorted(
            k for k in set(a) | set(b)
            if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS
            and not (k not in a and k in defaults and b.get(k) == defaults[k])
        )
        if diff:
            shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:5])
            raise ConfigError(
                f"{workdir} holds a run with a different config ({shown}); "
                "use a new --workdir or the original config"
            )
    if write:
        write_json_atomic(path, new)


def load(workdir: Path) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was started with."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise ConfigError(f"{path} not found: {workdir} is not a posrec run directory")
    return from_dict(_read_config_json(
        path, "the run directory is damaged: restore its config.json (posrec writes it when "
        "a run starts) or train again in a new --workdir"
    ))


def _read_config_json(path: Path, fix: str) -> dict:
    """The dict in a run's config.json; ConfigError naming the file, the problem and `fix`."""
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: bad JSON or not UTF-8
        raise ConfigError(f"{path} is unreadable ({err}); {fix}") from err
    if not isinstance(d, dict):
        raise ConfigError(
            f"{path} is unreadable (a JSON {type(d).__name__}, not an object of config "
            f"sections); {fix}"
        )
    return d
