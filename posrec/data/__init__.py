"""posrec data pipeline: read -> preprocess (k-core, re-index) -> split -> batches.

Entry points used by training and evaluation:
    load_interactions(config.data) -> Interactions
    load_split(config) -> (Split, Sequences)
"""

from __future__ import annotations

from typing import Any

from posrec.data import datasets
from posrec.data.preprocess import Sequences, preprocess
from posrec.data.readers import Interactions, are_order_indices
from posrec.data.splits import Split, make_split
from posrec.data.synthetic import make_synthetic
from posrec.errors import ConfigError

__all__ = ["Interactions", "Sequences", "Split", "load_interactions", "load_split"]


def _get(cfg: Any, key: str, default: Any) -> Any:
    try:
        return cfg[key] if key in cfg else default
    except TypeError:
        return getattr(cfg, key, default)


def load_interactions(data_cfg: Any) -> Interactions:
    """Reads the raw interactions named by a `config.data` ConfigDict.

    name "synthetic": make_synthetic(**data_cfg.synthetic).
    name "csv": `read_csv(path)` with `data_cfg.columns` and `data_cfg.has_real_time`.
    any other name: a data set of the registry (`datasets.load`): with path "" its official
        file is fetched into the cache (`download.cache_dir()`, checksummed) and read in its
        raw format; with a path, a CSV naming `data_cfg.columns` (e.g. shared/data/*.csv.gz)
        or a file in the data set's raw format. An unknown name lists the known ones.
    Every source but "synthetic" then keeps the seeded user sample `data_cfg.user_sample`.
    """
    name = str(_get(data_cfg, "name", ""))
    path = str(_get(data_cfg, "path", "") or "")
    if name == "synthetic":
        params = _get(data_cfg, "synthetic", None) or {}
        params = params.to_dict() if hasattr(params, "to_dict") else dict(params)
        try:
            return make_synthetic(**params)
        except TypeError as e:
            raise ConfigError(f"config.data.synthetic: {e}") from e
    if name != "csv":
        return datasets.load(data_cfg)
    if not path:
        raise ConfigError(
            "config.data.name='csv' needs a file: pass --config.data.path=/path/to/file.csv"
        )
    opts = datasets.read_options(data_cfg)
    return datasets.sample_users(
        datasets.read_columns_csv(path, data_cfg), opts.user_sample, opts.user_sample_seed
    )


def load_split(
    config: Any, inter: Interactions | None = None
) -> tuple[Split, Sequences]:
    """load_interactions -> preprocess -> make_split, all driven by `config.data`.

    `inter`: already loaded raw interactions of `config.data` (e.g. by the stats command,
    which also reports them); None loads them.

    Returns:
        (split, seqs): the train/valid/test split and the full preprocessed sequences
        (whose raw_item / raw_user maps the split shares).
    """
    d = config.data
    inter = load_interactions(d) if inter is None else inter
    source = str(_get(d, "path", "") or _get(d, "name", ""))
    seqs = preprocess(
        inter,
        min_user_count=int(d.min_user_count),
        min_item_count=int(d.min_item_count),
        dedup_consecutive=bool(d.dedup_consecutive),
        source=source,
    )
    # A CSV read with has_real_time=True whose times are per-user positions (the shared files
    # other than ml-100k) is caught here, before filtering leaves gaps in the positions.
    # (Only the temporal split reads it, and the check sorts the whole log.)
    real_time = inter.has_real_time and (
        str(d.split) != "temporal" or not are_order_indices(inter.user, inter.time))
    split = make_split(seqs, str(d.split), float(d.temporal_quantile), has_real_time=real_time)
    return split, seqs
