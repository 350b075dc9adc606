"""Top-K next-item recommendations from a trained run.

    python -m posrec.recommend --workdir=DIR --user=ID [--k=10]
    python -m posrec.recommend --workdir=DIR --history=i1,i2,... [--k=10]

prints `rank  item_id  score`, best first. Ids are the ORIGINAL ids of the data file (the run
directory's `item_ids.npy` / `user_ids.npy` translate them). `--user` uses that user's whole
chronological history in the run's data (training, validation and test items: a deployed
model sees everything); `--history` gives the history of an unseen user, oldest first.

Python API:

    rec = posrec.Recommender.from_checkpoint("runs/ml1m")      # best checkpoint
    rec.recommend([1193, 661, 914], k=10)                      # Recommendations(items, scores)
    rec.recommend_batch([[1193, 661], [3408]], k=10)           # one per history
    rec.recommend_user(42, k=10)

Scores are the model's logits: hidden state at the last position · item embedding, the
same quantity evaluation ranks. As in evaluation, the padding id and (with exclude_seen,
the default) every item already in the history are never recommended, so fewer than k
items come back only when the catalog minus the history is smaller than k.

Unknown items (ids not in the run's catalog: never in the data, or removed by the k-core
filter) are an error listing them by default; `unknown="warn"` (`--unknown=warn`) drops
them with a warning that lists them. They are never dropped silently.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from posrec import checkpoint
from posrec.data import batching
from posrec.data.preprocess import load_id_maps
from posrec.errors import CheckpointError, DataError
from posrec.models import sasrec

Array = jax.Array
UNKNOWN_POLICIES = ("error", "warn")


class Recommendations(NamedTuple):
    """One history's top-K list, best first.

    items: int64 [K'] original item ids; scores: float32 [K'] their logits. K' = min(k,
    number of recommendable items).
    """

    items: np.ndarray
    scores: np.ndarray


def _top_k(model: sasrec.SASRec, params, inputs_BxT: Array, seen_BxS: Array, k: int):
    """(scores_BxK float32, internal ids_BxK) of the k best items per row.

    seen_BxS lists items that may not be recommended (0-padded; id 0 is padding and is
    always excluded); excluded items score -inf and sort last.
    """
    hidden_BxC = model.apply({"params": params}, inputs_BxT, train=False, last_only=True)
    scores_BxN = (hidden_BxC @ sasrec.item_table(params).T).astype(jnp.float32)
    rows_Bx1 = jnp.arange(scores_BxN.shape[0])[:, None]
    scores_BxN = scores_BxN.at[rows_Bx1, seen_BxS].set(-jnp.inf).at[:, 0].set(-jnp.inf)
    return jax.lax.top_k(scores_BxN, k)


class Recommender:
    """A trained model with its item id map; see the module docstring."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        params: Any,
        item_ids: np.ndarray,
        workdir: str | Path | None = None,
    ) -> None:
        """`item_ids`: int64 [num_items + 1], original id of internal item i (entry 0 = -1)."""
        self.config = config
        self.params = params
        self.item_ids = np.asarray(item_ids, np.int64)
        self.num_items = len(self.item_ids) - 1
        self.workdir = None if workdir is None else Path(workdir)
        self.model = sasrec.SASRec(config.model, self.num_items)
        self._internal = {int(raw): i for i, raw in enumerate(self.item_ids) if i > 0}
        self._users: tuple[dict[int, int], Any] | None = None  # loaded on first use
        self._top_k = jax.jit(functools.partial(_top_k, self.model), static_argnames="k")

    @classmethod
    def from_checkpoint(cls, workdir: str | Path, which: str = "best") -> Recommender:
        """The `best` (or `latest`) checkpoint of a run directory written by posrec.main."""
        config, params, meta = checkpoint.restore_params(workdir, which)
        item_ids, _ = load_id_maps(workdir)
        if int(meta.get("num_items", len(item_ids) - 1)) != len(item_ids) - 1:
            raise CheckpointError(
                f"{workdir}: the {which} checkpoint has {meta['num_items']} items but "
                f"item_ids.npy maps {len(item_ids) - 1}; the directory mixes two runs"
            )
        return cls(config, params, item_ids, workdir)

    def encode(self, history: Sequence[int], unknown: str = "error") -> np.ndarray:
        """int32 [L] internal ids of a history of original ids (unknown ones per `unknown`)."""
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown={unknown!r} is not one of {UNKNOWN_POLICIES}")
        raw = [int(x) for x in history]
        missing = sorted({x for x in raw if x not in self._internal})
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            what = (f"{len(missing)} item id(s) not in the model's catalog of "
                    f"{self.num_items} items: {shown}")
            if unknown == "error":
                raise DataError(
                    f"{what}; they were never in the training data or were removed by the "
                    "k-core filter. Remove them, or pass unknown='warn' (--unknown=warn) to "
                    "drop them with a warning"
                )
            logging.warning("dropping %s", what)
        ids = np.array([self._internal[x] for x in raw if x in self._internal], np.int32)
        if len(ids) == 0:
            raise DataError(
                "the history has no item of the model's catalog; a sequential model needs at "
                "least one known item to recommend from"
            )
        return ids

    def recommend(
        self,
        history: Sequence[int],
        k: int = 10,
        exclude_seen: bool = True,
        unknown: str = "error",
    ) -> Recommendations:
        """Top-k for one history of original item ids, oldest first."""
        return self.recommend_batch([history], k, exclude_seen, unknown)[0]

    def recommend_batch(
        self,
        histories: Sequence[Sequence[int]],
        k: int = 10,
        exclude_seen: bool = True,
        unknown: str = "error",
    ) -> list[Recommendations]:
        """Top-k for each history, in one jitted call per chunk of `eval.batch_size` rows.

        Rows are padded to a power of two and seen lists to a multiple of 64, so repeated
        calls reuse a few compiled shapes.
        """
        if int(k) < 1:
            raise ValueError(f"k={k} must be >= 1")
        encoded = [self.encode(h, unknown) for h in histories]
        k_eff = min(int(k), self.num_items)
        out: list[Recommendations] = []
        chunk = max(int(self.config.eval.batch_size), 1)
        for lo in range(0, len(encoded), chunk):
            out.extend(self._score(encoded[lo : lo + chunk], k_eff, exclude_seen))
        return out

    def _score(self, encoded: list[np.ndarray], k: int, exclude_seen: bool):
        B = len(encoded)
        B_pad = 1 << max(B - 1, 0).bit_length()
        lengths = np.array([len(h) for h in encoded] + [0] * (B_pad - B), np.int64)
        flat = np.concatenate(encoded).astype(np.int32)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        inputs_BxT = batching.left_pad_windows(flat, starts, ends, self.config.model.max_len)
        S = batching.SEEN_MULTIPLE * max(1, -(-int(lengths.max()) // batching.SEEN_MULTIPLE))
        if exclude_seen:
            seen_BxS = batching.left_pad_windows(flat, starts, ends, S)
        else:
            seen_BxS = np.zeros((B_pad, batching.SEEN_MULTIPLE), np.int32)
        scores_BxK, ids_BxK = self._top_k(self.params, inputs_BxT, seen_BxS, k=k)
        scores_BxK, ids_BxK = np.asarray(scores_BxK), np.asarray(ids_BxK)
        result = []
        for b in range(B):
            keep = np.isfinite(scores_BxK[b])  # excluded items come last, at -inf
            result.append(Recommendations(self.item_ids[ids_BxK[b][keep]], scores_BxK[b][keep]))
        return result

    def user_history(self, user: int) -> np.ndarray:
        """int64 [L] original item ids of a user of the run's data (original user id), in
        chronological order. The first call re-reads the data as the run did."""
        index, seqs = self._user_table()
        if int(user) not in index:
            raise DataError(
                f"user {user} is not in the run's data ({len(index)} users after filtering; "
                "users with too few interactions are removed by the k-core filter); use "
                "--history=i1,i2,... for a user the model has not seen"
            )
        return self.item_ids[seqs.user_items(index[int(user)])]

    def recommend_user(self, user: int, k: int = 10, exclude_seen: bool = True) -> Recommendations:
        """Top-k for a user of the run's data from their whole history."""
        return self.recommend(self.user_history(user), k, exclude_seen)

    def _user_table(self):
        if self._users is None:
            from posrec.data import load_split

            _, seqs = load_split(self.config)
            if not np.array_equal(seqs.raw_item, self.item_ids):
                raise DataError(
                    f"the data of {self.workdir} ({self.config.data.name} "
                    f"{self.config.data.path}) no longer matches the run's item_ids.npy: the "
                    "file changed since training; pass the history with --history instead"
                )
            self._users = ({int(u): i for i, u in enumerate(seqs.raw_user)}, seqs)
        return self._users


def format_table(recs: Recommendations) -> str:
    """`rank  item_id  score` lines, best first."""
    lines = [f"{'rank':>4}  {'item_id':>10}  {'score':>10}"]
    lines += [f"{r:>4}  {int(i):>10}  {float(s):>10.4f}"
              for r, (i, s) in enumerate(zip(recs.items, recs.scores, strict=True), 1)]
    return "\n".join(lines)


def parse_history(text: str) -> list[int]:
    """`"1193,661, 914"` -> [1193, 661, 914]; a DataError names a bad entry."""
    out = []
    for pos, part in enumerate(text.split(","), 1):
        try:
            out.append(int(part.strip()))
        except ValueError:
            raise DataError(
                f"--history entry {pos} ({part.strip()!r}) is not an integer item id; pass "
                "original item ids separated by commas, e.g. --history=1193,661,914"
            ) from None
    return out


def run(
    workdir: str,
    *,
    user: int | None = None,
    history: str | None = None,
    k: int = 10,
    exclude_seen: bool = True,
    unknown: str = "error",
    which: str = "best",
) -> str:
    """The text the CLI prints: a one-line header, then `format_table`."""
    if (user is None) == (history is None):
        raise DataError("pass exactly one of --user=ID or --history=i1,i2,...")
    rec = Recommender.from_checkpoint(workdir, which)
    if user is not None:
        items = rec.user_history(user)
        head = f"user {user}: {len(items)} items in the history"
    else:
        items = parse_history(history)
        head = f"history of {len(items)} items"
    recs = rec.recommend(items, k, exclude_seen, unknown)
    seen = "excluded" if exclude_seen else "allowed"
    head += f"; top {len(recs.items)} of {rec.num_items} items (seen items {seen})"
    return head + "\n" + format_table(recs)


def main(argv):
    del argv
    from absl import flags

    from posrec.cli import quiet_orbax_logs, report_errors

    quiet_orbax_logs()
    f = flags.FLAGS
    with report_errors(f.debug):
        print(run(f.workdir, user=f.user, history=f.history, k=f.k,
                  exclude_seen=f.exclude_seen, unknown=f.unknown, which=f.checkpoint))


if __name__ == "__main__":
    # Flags are defined here, not at import: `posrec.Recommender` imports this module, and
    # a program that also imports posrec.main would otherwise define --workdir twice.
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "Run directory written by posrec.main.", required=True)
    flags.DEFINE_integer("user", None, "Original id of a user of the run's data.")
    flags.DEFINE_string("history", None, "Original item ids of an unseen user, oldest first.")
    flags.DEFINE_integer("k", 10, "How many items to recommend.", lower_bound=1)
    flags.DEFINE_bool("exclude_seen", True, "Never recommend items of the history.")
    flags.DEFINE_enum("unknown", "error", list(UNKNOWN_POLICIES),
                      "Items not in the catalog: error, or warn and drop them.")
    flags.DEFINE_enum("checkpoint", "best", list(checkpoint.KINDS), "Which checkpoint.")
    flags.DEFINE_bool("debug", False, "Show tracebacks for posrec errors.")
    from posrec.cli import parse_flags

    app.run(main, flags_parser=parse_flags)
