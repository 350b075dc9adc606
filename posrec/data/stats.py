"""Statistics of a data set after posrec's preprocessing, to compare with papers.

    python -m posrec.data.stats --config=configs/beauty.py \
        --config.data.path=../shared/data/beauty.csv.gz [--json]

Reads the data exactly as training does (`load_interactions` -> `preprocess` -> `make_split`,
all driven by `config.data`) and prints: the raw counts, users / items / interactions after
preprocessing, sequence-length quantiles (min, 25%, 50%, 75%, 90%, max; linear interpolation)
and mean, density = interactions / (users * items), the time span (or "order index only"),
and the split sizes (validation and test users, training sequences and interactions).
`--json` prints the same numbers as one JSON object (keys as in `compute_stats`).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from posrec import config_lib
from posrec.cli import parse_flags, report_errors
from posrec.data import datasets, load_interactions, load_split

QUANTILES = (("min", 0.0), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p90", 0.9),
             ("max", 1.0))


def _number(x: float) -> int | float:
    """An int when integral (counts, most quantiles), else the float rounded to 4 places."""
    return int(x) if float(x).is_integer() else round(float(x), 4)


def _counts(user: np.ndarray, item: np.ndarray) -> dict[str, int]:
    return {
        "users": int(len(np.unique(user))),
        "items": int(len(np.unique(item))),
        "interactions": int(len(user)),
    }


def _time_span(times: np.ndarray, real: bool, unix: bool) -> dict[str, Any] | None:
    """None for order indices; else first/last timestamps, days between, and UTC dates."""
    if not real:
        return None
    first, last = int(times.min()), int(times.max())
    out: dict[str, Any] = {"first": first, "last": last, "days": round((last - first) / 86400, 1)}
    if unix:
        for key, t in (("first_date", first), ("last_date", last)):
            utc = datetime.timezone.utc  # noqa: UP017 (datetime.UTC needs Python 3.11)
            out[key] = datetime.datetime.fromtimestamp(t, tz=utc).strftime("%Y-%m-%d")
    return out


def compute_stats(config: Any) -> dict[str, Any]:
    """The statistics of `config.data` after preprocessing (see the module docstring).

    Returns:
        {"name", "path", "raw": {users, items, interactions}, "users", "items",
        "interactions", "seq_len": {min, p25, p50, p75, p90, max, mean}, "density",
        "time": None | {first, last, days[, first_date, last_date]},
        "split": {name, valid_users, test_users, train_sequences, train_interactions}}.
    """
    config_lib.validate(config)
    d = config.data
    inter = load_interactions(d)
    split, seqs = load_split(config, inter)
    lengths = seqs.lengths()
    lengths = lengths[lengths > 0]
    n = int(lengths.sum())
    name = str(d.name)
    unix = datasets.REGISTRY[name].unix_time if name in datasets.REGISTRY else True
    seq_len = {key: _number(np.quantile(lengths, q)) for key, q in QUANTILES}
    seq_len["mean"] = round(float(lengths.mean()), 2)
    train_lengths = split.train.lengths()
    return {
        "name": name,
        "path": str(d.path),
        "raw": _counts(inter.user, inter.item),
        "users": int(len(lengths)),
        "items": int(seqs.num_items),
        "interactions": n,
        "seq_len": seq_len,
        "density": float(n / (len(lengths) * seqs.num_items)),
        "time": _time_span(seqs.times, inter.has_real_time, unix),
        "split": {
            "name": split.name,
            "valid_users": len(split.valid),
            "test_users": len(split.test),
            "train_sequences": int((train_lengths > 0).sum()),
            "train_interactions": int(train_lengths.sum()),
        },
    }


def format_stats(s: dict[str, Any]) -> str:
    """The human-readable report of `compute_stats` output."""
    raw, q, sp, t = s["raw"], s["seq_len"], s["split"], s["time"]
    if t is None:
        span = "order index only (no real timestamps)"
    elif "first_date" in t:
        span = f"{t['first_date']} .. {t['last_date']} UTC ({t['days']:,} days)"
    else:
        span = f"{t['first']} .. {t['last']} s on the source's own clock ({t['days']:,} days)"
    lines = [
        f"data set      {s['name']}" + (f" ({s['path']})" if s["path"] else ""),
        f"raw           {raw['users']:,} users, {raw['items']:,} items, "
        f"{raw['interactions']:,} interactions",
        f"preprocessed  {s['users']:,} users, {s['items']:,} items, "
        f"{s['interactions']:,} interactions",
        "seq length    " + ", ".join(f"{k} {q[k]:,}" for k, _ in QUANTILES)
        + f", mean {q['mean']:,}",
        f"density       {s['density']:.6f}",
        f"time span     {span}",
        f"split         {sp['name']}: valid users {sp['valid_users']:,}, test users "
        f"{sp['test_users']:,}, training sequences {sp['train_sequences']:,} "
        f"({sp['train_interactions']:,} interactions)",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with report_errors(flags.FLAGS.debug):
        stats = compute_stats(flags.FLAGS.config)
    print(json.dumps(stats, indent=2) if flags.FLAGS.json else format_stats(stats))


if __name__ == "__main__":
    # Flags are defined only when run as a program (posrec.main defines the same names).
    config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
    flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
    flags.DEFINE_bool("debug", False, "Show tracebacks for posrec errors.")
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=parse_flags)
