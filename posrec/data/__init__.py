"""posrec data pipeline: read -> preprocess (k-core, re-index) -> split -> batches.

Entry points used by training and evaluation:
    load_interactions(config.data) -> Interactions
    load_split(config) -> (Split, Sequences)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posrec.data.preprocess import Sequences, preprocess
from posrec.data.readers import Interactions, read_csv, read_ml1m
from posrec.data.splits import Split, make_split
from posrec.data.synthetic import make_synthetic
from posrec.errors import ConfigError

__all__ = ["Interactions", "Sequences", "Split", "load_interactions", "load_split"]


def _get(cfg: Any, key: str, default: Any) -> Any:
    try:
        return cfg[key] if key in cfg else default
    except TypeError:
        return getattr(cfg, key, default)


def _is_ml1m_file(path: str) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".zip") or name.startswith("ratings.dat")


def _read_path(path: str, data_cfg: Any) -> Interactions:
    if _is_ml1m_file(path):
        return read_ml1m(path)
    columns = tuple(_get(data_cfg, "columns", ("user_id", "item_id", "timestamp")))
    if len(columns) != 3:
        raise ConfigError(
            f"config.data.columns={columns} must name 3 columns: user, item, timestamp"
        )
    return read_csv(
        path,
        user_col=columns[0],
        item_col=columns[1],
        time_col=columns[2],
        has_real_time=bool(_get(data_cfg, "has_real_time", True)),
    )


def load_interactions(data_cfg: Any) -> Interactions:
    """Reads the raw interactions named by a `config.data` ConfigDict.

    name "synthetic": make_synthetic(**data_cfg.synthetic).
    name "ml-1m": with path "" the official ml-1m.zip is fetched into the cache
        (`download.cache_dir()`) and read with `read_ml1m`; with a path, `.zip` / `ratings.dat`
        go to `read_ml1m` and anything else (e.g. shared/data/ml-1m.csv.gz) to `read_csv`.
    name "csv": `read_csv(path)` with `data_cfg.columns` and `data_cfg.has_real_time`.
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
    if name == "ml-1m":
        if path:
            return _read_path(path, data_cfg)
        from posrec.data import download

        hint = (
            f"download {download.ML1M_URL} by hand and pass "
            "--config.data.path=/path/to/ml-1m.zip (or a CSV)"
        )
        zip_path = download.fetch(download.ML1M_URL, download.ML1M_SHA256, "ml-1m.zip", hint=hint)
        return read_ml1m(zip_path)
    if name == "csv":
        if not path:
            raise ConfigError(
                "config.data.name='csv' needs a file: pass --config.data.path=/path/to/file.csv"
            )
        return _read_path(path, data_cfg)
    raise ConfigError(
        f"config.data.name={name!r} is unknown; use 'synthetic', 'ml-1m' or 'csv'"
    )


def load_split(config: Any) -> tuple[Split, Sequences]:
    """load_interactions -> preprocess -> make_split, all driven by `config.data`.

    Returns:
        (split, seqs): the train/valid/test split and the full preprocessed sequences
        (whose raw_item / raw_user maps the split shares).
    """
    d = config.data
    inter = load_interactions(d)
    source = str(_get(d, "path", "") or _get(d, "name", ""))
    seqs = preprocess(
        inter,
        min_user_count=int(d.min_user_count),
        min_item_count=int(d.min_item_count),
        dedup_consecutive=bool(d.dedup_consecutive),
        source=source,
    )
    split = make_split(
        seqs, str(d.split), float(d.temporal_quantile), has_real_time=inter.has_real_time
    )
    return split, seqs
