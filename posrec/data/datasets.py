"""The data-set registry: name -> official file (URL, checksum), raw format, rules, config.

`load(data_cfg)` turns a `config.data` into raw `Interactions`:

* no `data.path`: the registered file is fetched into the download cache
  (`download.fetch`: atomic, progress on stderr, verified against the publisher's checksum,
  or trust-on-first-use where the publisher gives none) and read in its raw format;
* `data.path` set: a CSV whose header names `data.columns` (e.g. the files in shared/data,
  `user_id,item_id,timestamp`) is read with `readers.read_csv` and `data.has_real_time`;
  any other file is read in the data set's raw format (`sources.FORMATS`), which knows
  whether its timestamps are real.

The seeded user sample (`data.user_sample`) is applied last, to every source.

Per-data-set rules live in two places, on purpose: the source-level rule (which rows are
interactions; `Dataset.rules`, implemented by the reader) is fixed here, and the tunable
preprocessing (k-core thresholds, consecutive-repeat removal, user sample, play-ratio
threshold, max length) is data in `configs/<config>.py`, whose docstring lists the command and
the expected statistics. `python -m posrec.data.stats --config=...` prints them.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path
from typing import Any

from posrec.data import download, sources
from posrec.data.readers import Interactions, read_csv
from posrec.errors import ConfigError, DataError

# Names `load_interactions` handles itself, not data sets of the registry.
SPECIAL_NAMES = ("synthetic", "csv")


@dataclasses.dataclass(frozen=True)
class Remote:
    """One downloadable file.

    Attributes:
        url: the publisher's URL.
        filename: the name in the download cache.
        sha256: pinned sha256, or "" (then md5 or trust on first use).
        md5: the md5 the publisher prints next to the file, or "".
    """

    url: str
    filename: str
    sha256: str = ""
    md5: str = ""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A registered data set.

    Attributes:
        name: the `config.data.name`.
        title: what it is, in a few words.
        homepage: where the publisher describes it (and where to download it by hand).
        remote: the file fetched when `data.path` is empty; None when it cannot be fetched
            automatically (then `data.path` is required).
        format: key of `sources.FORMATS` for files in the raw format.
        rules: the source-level rule (which rows count, which ids and times are used).
        config: the config file that reproduces the usual preprocessing.
        unix_time: whether real timestamps of this data set are Unix seconds (False: seconds
            on the publisher's own anonymised clock, e.g. Yambda); only used for display.
    """

    name: str
    title: str
    homepage: str
    remote: Remote | None
    format: str | None
    rules: str
    config: str
    unix_time: bool = True


_AMAZON_2014 = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
_AMAZON_HOME = "https://jmcauley.ucsd.edu/data/amazon/index_2014.html"
_AMAZON_RULE = (
    "every review/rating is an interaction (all stars); user = reviewerID, item = asin, "
    "time = unixReviewTime (days; same-day ties keep file order)"
)

REGISTRY: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "ml-1m", "MovieLens 1M (GroupLens)", "https://grouplens.org/datasets/movielens/1m/",
            Remote(
                "https://files.grouplens.org/datasets/movielens/ml-1m.zip", "ml-1m.zip",
                sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                md5="c4d9eecfca2ab87c1945afe126590906",
            ),
            "ml-1m", "every rating is an interaction; Unix seconds", "configs/ml1m.py",
        ),
        Dataset(
            "ml-20m", "MovieLens 20M (GroupLens)", "https://grouplens.org/datasets/movielens/20m/",
            Remote(
                "https://files.grouplens.org/datasets/movielens/ml-20m.zip", "ml-20m.zip",
                md5="cd245b17a1ae2cc31bb14903e1204af3",
            ),
            "ml-20m", "every rating is an interaction; Unix seconds", "configs/ml20m.py",
        ),
        Dataset(
            "ml-100k", "MovieLens 100K (GroupLens)",
            "https://grouplens.org/datasets/movielens/100k/",
            Remote(
                "https://files.grouplens.org/datasets/movielens/ml-100k.zip", "ml-100k.zip",
                md5="0e33842e24a9c977be4e0107933c0723",
            ),
            "ml-100k", "every rating is an interaction; Unix seconds", "configs/ml100k.py",
        ),
        Dataset(
            "beauty", "Amazon 2014 Beauty, 5-core reviews (the S3-Rec / SASRec+ Beauty)",
            _AMAZON_HOME, Remote(_AMAZON_2014 + "reviews_Beauty_5.json.gz",
                                 "reviews_Beauty_5.json.gz"),
            "amazon-reviews", _AMAZON_RULE, "configs/beauty.py",
        ),
        Dataset(
            "beauty-bert4rec", "Amazon 2014 Beauty, all ratings (the BERT4Rec Beauty)",
            _AMAZON_HOME, Remote(_AMAZON_2014 + "ratings_Beauty.csv", "ratings_Beauty.csv"),
            "amazon-ratings", _AMAZON_RULE, "configs/beauty_bert4rec.py",
        ),
        Dataset(
            "video-games", "Amazon 2014 Video Games, all ratings (the SASRec Games)",
            _AMAZON_HOME,
            Remote(_AMAZON_2014 + "ratings_Video_Games.csv", "ratings_Video_Games.csv"),
            "amazon-ratings", _AMAZON_RULE, "configs/video_games.py",
        ),
        Dataset(
            "toys", "Amazon 2014 Toys and Games, 5-core reviews (the S3-Rec Toys)",
            _AMAZON_HOME,
            Remote(_AMAZON_2014 + "reviews_Toys_and_Games_5.json.gz",
                   "reviews_Toys_and_Games_5.json.gz"),
            "amazon-reviews", _AMAZON_RULE, "configs/toys.py",
        ),
        Dataset(
            "yelp", "Yelp Open Dataset reviews (the S3-Rec Yelp)", "https://www.yelp.com/dataset",
            None, None,
            "no automatic download: Yelp requires accepting its terms on the web page; pass "
            "a user_id,item_id,timestamp CSV (e.g. shared/data/yelp.csv.gz)",
            "configs/yelp.py",
        ),
        Dataset(
            "lastfm", "Last.fm HetRec 2011 tag assignments (the S3-Rec LastFM)",
            "https://grouplens.org/datasets/hetrec-2011/",
            Remote(
                "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
                "hetrec2011-lastfm-2k.zip",
            ),
            "hetrec-lastfm",
            "a (user, artist, timestamp) tag assignment is an interaction; several tags at "
            "the same time count once; Unix seconds (the file has milliseconds)",
            "configs/lastfm.py",
        ),
        Dataset(
            "gowalla", "Gowalla check-ins (SNAP)", "https://snap.stanford.edu/data/loc-gowalla.html",
            Remote("https://snap.stanford.edu/data/loc-gowalla_totalCheckins.txt.gz",
                   "loc-gowalla_totalCheckins.txt.gz"),
            "gowalla",
            "every check-in is an interaction; item = location id; Unix seconds (UTC)",
            "configs/gowalla.py",
        ),
        Dataset(
            "zvuk", "Zvuk music listening (Sber AI Lab)",
            "https://www.kaggle.com/datasets/alexxl/zvuk-dataset",
            Remote("https://www.kaggle.com/api/v1/datasets/download/alexxl/zvuk-dataset",
                   "zvuk-dataset.zip"),
            "zvuk",
            "every play is an interaction (repeats kept, play_duration unused); "
            "user = user_id, item = track_id, time = datetime (seconds)",
            "configs/zvuk.py",
        ),
        Dataset(
            "yambda-likes", "Yambda-50M likes (Yandex Music)",
            "https://huggingface.co/datasets/yandex/yambda",
            Remote("https://huggingface.co/datasets/yandex/yambda/resolve/main/flat/50m/"
                   "likes.parquet", "yambda-flat-50m-likes.parquet"),
            "yambda",
            "every like is an interaction (organic or not; unlikes not subtracted); "
            "user = uid, time = timestamp (seconds, global clock)",
            "configs/yambda_likes.py",
            unix_time=False,
        ),
        Dataset(
            "yambda-listens", "Yambda-50M listens (Yandex Music)",
            "https://huggingface.co/datasets/yandex/yambda",
            Remote("https://huggingface.co/datasets/yandex/yambda/resolve/main/flat/50m/"
                   "listens.parquet", "yambda-flat-50m-listens.parquet"),
            "yambda",
            "a listen is an interaction when played_ratio_pct >= data.min_play_ratio "
            "(configs/yambda_listens.py: 50); repeats kept; time = timestamp (seconds)",
            "configs/yambda_listens.py",
            unix_time=False,
        ),
        Dataset(
            "steam", "Steam reviews (Kang & McAuley, the SASRec Steam)",
            "https://cseweb.ucsd.edu/~jmcauley/datasets.html#steam_data",
            Remote("https://cseweb.ucsd.edu/~wckang/steam_reviews.json.gz",
                   "steam_reviews.json.gz"),
            "steam",
            "every review is an interaction; user = username, item = product_id, "
            "time = review date (days; same-day ties keep file order)",
            "configs/steam.py",
        ),
    )
}


def known_names() -> tuple[str, ...]:
    """Every valid `config.data.name`: the registry's plus 'synthetic' and 'csv'."""
    return (*REGISTRY, *SPECIAL_NAMES)


def get(name: str) -> Dataset:
    """The registry entry of `name`; ConfigError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"config.data.name={name!r} is not a known data set; known: "
            f"{', '.join(known_names())}"
        ) from None


def _cfg(cfg: Any, key: str, default: Any) -> Any:
    try:
        return cfg[key] if key in cfg else default
    except TypeError:
        return getattr(cfg, key, default)


def read_options(data_cfg: Any) -> sources.ReadOptions:
    """The source-level options of a `config.data`."""
    return sources.ReadOptions(
        user_sample=float(_cfg(data_cfg, "user_sample", 1.0)),
        user_sample_seed=int(_cfg(data_cfg, "user_sample_seed", 0)),
        min_play_ratio=int(_cfg(data_cfg, "min_play_ratio", 0)),
        drop_duplicates=bool(_cfg(data_cfg, "drop_duplicates", False)),
    )


def _first_line(path: Path) -> str:
    """The first line of a (possibly gzipped) text file; "" for binary or unreadable files."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            line = f.readline(65536)
    except (OSError, EOFError):
        return ""
    try:
        return line.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        return ""


def is_columns_csv(path: Path, columns: tuple[str, str, str]) -> bool:
    """Whether `path` is a CSV whose header names all of `columns` (posrec's plain format)."""
    header = [h.strip().strip('"') for h in _first_line(path).split(",")]
    return all(c in header for c in columns)


def read_columns_csv(path: str | Path, data_cfg: Any) -> Interactions:
    """A CSV with the header columns `data.columns`; `data.has_real_time` says whether its
    timestamps are real times or per-user order indices (the shared files except ml-100k)."""
    columns = tuple(_cfg(data_cfg, "columns", ("user_id", "item_id", "timestamp")))
    if len(columns) != 3:
        raise ConfigError(
            f"config.data.columns={columns} must name 3 columns: user, item, timestamp"
        )
    return read_csv(
        path,
        user_col=columns[0],
        item_col=columns[1],
        time_col=columns[2],
        has_real_time=bool(_cfg(data_cfg, "has_real_time", True)),
        drop_duplicates=bool(_cfg(data_cfg, "drop_duplicates", False)),
    )


def read_local(ds: Dataset, path: str | Path, data_cfg: Any) -> Interactions:
    """A local copy of data set `ds`: a `data.columns` CSV, else the raw format."""
    path = Path(path)
    columns = tuple(_cfg(data_cfg, "columns", ("user_id", "item_id", "timestamp")))
    if ds.format is None or (path.is_file() and is_columns_csv(path, columns)):
        return read_columns_csv(path, data_cfg)
    try:
        return sources.FORMATS[ds.format].reader(path, read_options(data_cfg))
    except DataError as e:
        if "not found" in str(e):
            raise
        raise DataError(
            f"{e}; data set {ds.name!r} also reads a CSV with the header {','.join(columns)}"
        ) from e


def fetch(ds: Dataset) -> Path:
    """The cached, verified official file of `ds` (downloaded on first use)."""
    if ds.remote is None:
        raise ConfigError(
            f"data set {ds.name!r}: {ds.rules}; get it from {ds.homepage} and pass "
            "--config.data.path=/path/to/file"
        )
    r = ds.remote
    hint = (
        f"download {r.url} by hand (see {ds.homepage}) and pass "
        f"--config.data.path=/path/to/{r.filename} (or a CSV)"
    )
    return download.fetch(r.url, r.sha256, r.filename, md5=r.md5, hint=hint)


def sample_users(inter: Interactions, fraction: float, seed: int) -> Interactions:
    """Keeps the rows of a seeded sample of users (`sources.user_sample_mask`); identity at 1."""
    if fraction >= 1.0:
        return inter
    if not 0.0 < fraction:
        raise ConfigError(f"config.data.user_sample={fraction} must be in (0, 1]")
    keep = sources.user_sample_mask(inter.user, fraction, seed)
    if not keep.any():
        raise DataError(
            f"the user sample (data.user_sample={fraction}, seed {seed}) kept no user; "
            "raise data.user_sample"
        )
    return Interactions(
        user=inter.user[keep], item=inter.item[keep], time=inter.time[keep],
        has_real_time=inter.has_real_time,
    )


def load(data_cfg: Any) -> Interactions:
    """Raw interactions of the registered data set `data_cfg.name` (see the module docstring).

    Raises:
        ConfigError: unknown name (the message lists the known ones), or a data set that
            cannot be downloaded and no `data.path`.
        DataError: download, checksum or format problems, naming the file and the fix.
    """
    ds = get(str(_cfg(data_cfg, "name", "")))
    path = str(_cfg(data_cfg, "path", "") or "")
    if path:
        inter = read_local(ds, path, data_cfg)
    else:
        cached = fetch(ds)  # refuses entries without a remote; those with one have a format
        inter = sources.FORMATS[str(ds.format)].reader(cached, read_options(data_cfg))
    opts = read_options(data_cfg)
    return sample_users(inter, opts.user_sample, opts.user_sample_seed)

