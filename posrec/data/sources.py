"""Readers for the raw formats of the registered data sets (posrec.data.datasets).

Each reader takes the file exactly as its publisher distributes it and returns an
`Interactions` table of integer ids in file order, applying only the source's own
implicit-feedback rule (which rows count as interactions). Filtering by counts, sorting and
re-indexing stay in `preprocess`, so a reader's output can be checked line by line against the
file. Every format problem raises a `DataError` that names the file, the line (or column) and
the expected format. Every reader ends with the same duplicate-row check
(`readers.check_duplicates` through `_interactions`): a row repeating an earlier (user, item,
time) row is an error naming both lines, or dropped with `data.drop_duplicates`.

String ids (Amazon reviewer ids and ASINs, Steam user names) become integers: the raw id of a
string is its rank among the file's distinct strings in sorted order, so it does not depend on
the row order. Real timestamps are returned in seconds (Unix seconds except Yambda, whose
clock is its own).

`FORMATS` maps a format name (the `format` of a registry entry) to its reader and a one-line
description used in error messages.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

import numpy as np

from posrec.data.readers import (
    Interactions,
    _decode,
    _file_head,
    _parse_table,
    _read_bytes,
    check_duplicates,
    read_ml1m,
    text_row_line,
)
from posrec.errors import DataError

_ZIP_MAGIC = b"PK\x03\x04"
_PARQUET_MAGIC = b"PAR1"


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """Source-level rules a reader may apply while reading (from `config.data`).

    Attributes:
        user_sample: fraction of users kept, in (0, 1]; see `user_sample_mask`.
        user_sample_seed: seed of the user sample.
        min_play_ratio: keep only listens with played_ratio_pct >= this (Yambda listens);
            0 keeps every row. A file without that column refuses a value > 0.
        drop_duplicates: a row repeating an earlier (user, item, time) row is dropped with a
            warning (True) or a DataError naming both lines (False); `check_duplicates`.
    """

    user_sample: float = 1.0
    user_sample_seed: int = 0
    min_play_ratio: int = 0
    drop_duplicates: bool = False


# --------------------------------------------------------------------------------------------
# Shared helpers


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 [N] (wrapping arithmetic): a well-mixed 64-bit hash."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def user_sample_mask(users: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """bool [N]: whether each row's user is in the seeded user sample.

    A user is kept when u = splitmix64(user ^ splitmix64(seed)) / 2**64 < fraction: an
    independent coin per user, the same for every row of that user, so whole histories are
    kept or dropped. It needs no list of all users, so a reader can apply it batch by batch,
    and it does not depend on row order. The kept share is `fraction` in expectation.
    """
    users = np.asarray(users)
    if fraction >= 1.0:
        return np.ones(len(users), dtype=bool)
    key = _splitmix64(np.array([seed], dtype=np.uint64))[0]
    h = _splitmix64(users.astype(np.int64).view(np.uint64) ^ key)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


class _StringIds:
    """Maps string ids to integers: rank of the string among all distinct ones, sorted."""

    def __init__(self) -> None:
        self._first: dict[str, int] = {}
        self._codes: list[np.ndarray] = []

    def add(self, values: Iterable[str]) -> None:
        first = self._first
        self._codes.append(
            np.fromiter((first.setdefault(v, len(first)) for v in values), dtype=np.int64)
        )

    def finish(self) -> np.ndarray:
        """int64 [N] the sorted-rank id of every value added, in order."""
        keys = list(self._first)
        rank = np.empty(len(keys), dtype=np.int64)
        rank[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
        codes = np.concatenate(self._codes) if self._codes else np.zeros(0, np.int64)
        return rank[codes]


def _interactions(
    user,
    item,
    time,
    has_real_time: bool,
    path: Path,
    opts: ReadOptions | None,
    row_line: Callable[[int], int] | None = None,
    names: tuple[str, str, str] | None = None,
) -> Interactions:
    """The reader's [N] columns as `Interactions`, after the duplicate-row check.

    Every reader ends here, so `opts.drop_duplicates` means the same for every source
    (`readers.check_duplicates`; `row_line` and `names` only shape its messages). opts=None
    skips the check, for a source whose own rule already keeps one row per (user, item,
    time) (Last.fm) and for tests.
    """
    user = np.ascontiguousarray(user, dtype=np.int64)
    if len(user) == 0:
        raise DataError(f"{path}: no interactions in the file (after the source's own rules)")
    inter = Interactions(
        user=user,
        item=np.ascontiguousarray(item, dtype=np.int64),
        time=np.ascontiguousarray(time, dtype=np.int64),
        has_real_time=has_real_time,
    )
    if opts is None:
        return inter
    return check_duplicates(inter, path, opts.drop_duplicates, row_line, names)


def _text(path: Path) -> str:
    """The file's text (gzip detected from its magic bytes); a zip archive is refused."""
    data = _read_bytes(path)
    if data.startswith(_ZIP_MAGIC) or data.startswith(_PARQUET_MAGIC):
        kind = "zip archive" if data.startswith(_ZIP_MAGIC) else "parquet file"
        raise DataError(f"{path}: is a {kind}, expected a text file")
    return _decode(data, path)


def _member_name(zf: zipfile.ZipFile, path: Path, member: str, what: str) -> str:
    """The full name of the archive member whose name ends with `member`."""
    names = [n for n in zf.namelist() if n.endswith(member)]
    if not names:
        raise DataError(
            f"{path}: zip archive has no {member} (members: {zf.namelist()[:8]}); "
            f"expected {what}"
        )
    return names[0]


def _zip_member(path: Path, member: str, what: str) -> tuple[str, bytes]:
    """(full name, bytes) of the archive member whose name ends with `member`."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = _member_name(zf, path, member, what)
            return name, zf.read(name)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{path}: corrupt or truncated zip archive ({e}); download it again"
        ) from e


def _zip_text(path: Path, member: str, what: str) -> str:
    """The UTF-8 text of the archive member whose name ends with `member`."""
    name, data = _zip_member(path, member, what)
    return _decode(data, path, name)


def _is_zip(path: Path) -> bool:
    """Whether `path` is a zip archive; DataError if it is missing, a directory or unreadable."""
    return _file_head(path, "check --config.data.path") == _ZIP_MAGIC


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """(line number, stripped line) for every non-blank line."""
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line:
            yield lineno, line


def _fields(line: str, sep: str, n: int, path: Path, lineno: int, fmt: str) -> list[str]:
    """The line's `n` fields, or a DataError naming the line, the count and the format."""
    parts = line.split(sep)
    if len(parts) != n:
        kind = {",": "comma", "\t": "tab"}[sep]
        raise DataError(
            f"{path}: line {lineno}: {len(parts)} {kind}-separated field(s) instead of {n}; "
            f"expected {fmt}"
        )
    return parts


def _int(s: str, path: Path, lineno: int, name: str, fmt: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise DataError(
            f"{path}: line {lineno}: {name} {s[:40]!r} is not an integer; expected {fmt}"
        ) from None


# --------------------------------------------------------------------------------------------
# MovieLens


ML1M_FORMAT = "MovieLens ml-1m.zip or ratings.dat (UserID::MovieID::Rating::Timestamp)"
ML20M_FORMAT = (
    "MovieLens ml-20m.zip or its ratings.csv (header userId,movieId,rating,timestamp)"
)
ML100K_FORMAT = "MovieLens ml-100k.zip or its u.data (user<TAB>item<TAB>rating<TAB>timestamp)"


def read_ml1m_source(path: Path, opts: ReadOptions) -> Interactions:
    """MovieLens-1M (readers.read_ml1m): every rating is an interaction; Unix seconds."""
    return read_ml1m(path, drop_duplicates=opts.drop_duplicates)


def read_ml20m(path: Path, opts: ReadOptions) -> Interactions:
    """MovieLens-20M `ratings.csv` (inside ml-20m.zip or alone): every rating counts.

    Header `userId,movieId,rating,timestamp`; ratings (0.5..5) are dropped, timestamps are
    Unix seconds.
    """
    if _is_zip(path):
        text = _zip_text(path, "ratings.csv", ML20M_FORMAT)
    else:
        text = _text(path)
    header, _, body = text.partition("\n")
    if [h.strip() for h in header.strip().split(",")] != ["userId", "movieId", "rating",
                                                           "timestamp"]:
        raise DataError(
            f"{path}: line 1: header {header.strip()[:60]!r} is not "
            f"'userId,movieId,rating,timestamp'; expected {ML20M_FORMAT}"
        )
    # The shared parse: np.loadtxt when the file is clean (ratings read as floats), else the
    # line-by-line parser naming the bad line; ids range-checked either way.
    arr = _parse_table(body, 2, path, ",", 4, (0, 1, 3), ("userId", "movieId", "timestamp"))
    return _interactions(arr[:, 0], arr[:, 1], arr[:, 2], True, path, opts,
                         text_row_line(body, 2), ("userId", "movieId", "timestamp"))


def read_ml100k(path: Path, opts: ReadOptions) -> Interactions:
    """MovieLens-100K `u.data` (inside ml-100k.zip or alone): every rating counts.

    Tab-separated `user item rating timestamp`, no header; timestamps are Unix seconds.
    """
    if _is_zip(path):
        text = _zip_member(path, "u.data", ML100K_FORMAT)[1].decode("latin-1")
    else:
        text = _text(path)
    first = next((ln for _, ln in _lines(text[:4096])), "")
    if len(first.split("\t")) != 4:
        raise DataError(
            f"{path}: line 1: {first[:60]!r} is not 4 tab-separated fields; "
            f"expected {ML100K_FORMAT}"
        )
    names = ("user", "item", "timestamp")
    arr = _parse_table(text, 1, path, "\t", 4, (0, 1, 3), names)
    return _interactions(arr[:, 0], arr[:, 1], arr[:, 2], True, path, opts,
                         text_row_line(text, 1), names)


# --------------------------------------------------------------------------------------------
# Amazon 2014 (McAuley et al.)


AMAZON_RATINGS_FORMAT = (
    "the Amazon 2014 ratings file ratings_<Category>.csv: lines 'user,item,rating,timestamp' "
    "with no header"
)
AMAZON_REVIEWS_FORMAT = (
    "the Amazon 2014 review file reviews_<Category>[_5].json(.gz): one JSON object per line "
    "with reviewerID, asin and unixReviewTime"
)


def read_amazon_ratings(path: Path, opts: ReadOptions) -> Interactions:
    """Amazon 2014 `ratings_<Category>.csv`: every rating (any star) is an interaction.

    Lines `reviewerID,asin,rating,unixReviewTime` without a header; string ids become sorted
    ranks (module docstring); times are Unix seconds at day granularity (same-day ties keep
    file order through the stable sort in `preprocess`).
    """
    users, items = _StringIds(), _StringIds()
    u_col: list[str] = []
    i_col: list[str] = []
    times: list[int] = []
    text = _text(path)
    for lineno, line in _lines(text):
        parts = _fields(line, ",", 4, path, lineno, AMAZON_RATINGS_FORMAT)
        if lineno == 1 and not parts[3].strip().lstrip("-").isdigit():
            raise DataError(
                f"{path}: line 1: {line[:60]!r} looks like a header; expected "
                f"{AMAZON_RATINGS_FORMAT}"
            )
        u_col.append(parts[0])
        i_col.append(parts[1])
        times.append(_int(parts[3].strip(), path, lineno, "timestamp", AMAZON_RATINGS_FORMAT))
    users.add(u_col)
    items.add(i_col)
    return _interactions(users.finish(), items.finish(), times, True, path, opts,
                         text_row_line(text, 1))


def _parse_object(line: str) -> dict | None:
    """A JSON object or a Python dict literal (the 2014 files use both); None if neither."""
    try:
        obj = json.loads(line)
    except ValueError:
        try:
            obj = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return obj if isinstance(obj, dict) else None


def read_amazon_reviews(path: Path, opts: ReadOptions) -> Interactions:
    """Amazon 2014 review file (e.g. the 5-core `reviews_Beauty_5.json.gz`): every review counts.

    Uses reviewerID (user), asin (item) and unixReviewTime (Unix seconds, day granularity);
    the review text and rating are ignored.
    """
    users, items = _StringIds(), _StringIds()
    u_col: list[str] = []
    i_col: list[str] = []
    times: list[int] = []
    text = _text(path)
    for lineno, line in _lines(text):
        obj = _parse_object(line)
        if obj is None:
            raise DataError(
                f"{path}: line {lineno}: {line[:60]!r} is not a JSON object; expected "
                f"{AMAZON_REVIEWS_FORMAT}"
            )
        try:
            u, i, t = obj["reviewerID"], obj["asin"], obj["unixReviewTime"]
        except KeyError as e:
            raise DataError(
                f"{path}: line {lineno}: no key {e.args[0]!r} (keys: {sorted(obj)[:8]}); "
                f"expected {AMAZON_REVIEWS_FORMAT}"
            ) from None
        u_col.append(str(u))
        i_col.append(str(i))
        times.append(_int(str(t), path, lineno, "unixReviewTime", AMAZON_REVIEWS_FORMAT))
    users.add(u_col)
    items.add(i_col)
    return _interactions(users.finish(), items.finish(), times, True, path, opts,
                         text_row_line(text, 1))


# --------------------------------------------------------------------------------------------
# Gowalla (SNAP)


GOWALLA_FORMAT = (
    "SNAP loc-gowalla_totalCheckins.txt(.gz): lines "
    "'user<TAB>YYYY-MM-DDTHH:MM:SSZ<TAB>latitude<TAB>longitude<TAB>location id'"
)


_NAT = np.datetime64("NaT", "s").astype(np.int64)


def _checkin_seconds(stamps: list[str]) -> np.ndarray:
    """int64 [N] Unix seconds of ISO-8601 times (the trailing Z already removed)."""
    return np.array(stamps, dtype="datetime64[s]").astype(np.int64)


def _bad_checkin_time(text: str, path: Path, error: str) -> NoReturn:
    """Raises a DataError naming the first line whose check-in time does not parse (or is
    missing); when every line parses on its own, one naming the file and numpy's `error`."""
    for lineno, line in _lines(text):
        stamp = line.split("\t")[1]
        try:
            ok = not np.isnat(np.datetime64(stamp.rstrip("Z"), "s"))
        except ValueError:
            ok = False
        if not ok:
            raise DataError(
                f"{path}: line {lineno}: check-in time {stamp[:40]!r} is not "
                f"YYYY-MM-DDTHH:MM:SSZ; expected {GOWALLA_FORMAT}"
            )
    raise DataError(
        f"{path}: the check-in times could not be converted ({error}); expected "
        f"{GOWALLA_FORMAT}"
    )


def read_gowalla(path: Path, opts: ReadOptions) -> Interactions:
    """Gowalla check-ins: every check-in is an interaction, the location id is the item.

    Times are ISO-8601 UTC (`2010-10-19T23:55:27Z`), returned as Unix seconds.
    """
    users: list[int] = []
    items: list[int] = []
    stamps: list[str] = []
    text = _text(path)
    for lineno, line in _lines(text):
        parts = _fields(line, "\t", 5, path, lineno, GOWALLA_FORMAT)
        users.append(_int(parts[0], path, lineno, "user", GOWALLA_FORMAT))
        items.append(_int(parts[4], path, lineno, "location id", GOWALLA_FORMAT))
        stamps.append(parts[1].rstrip("Z"))
    try:
        times = _checkin_seconds(stamps)
    except ValueError as e:
        _bad_checkin_time(text, path, str(e))
    if np.any(times == _NAT):  # numpy reads an empty field or "NaT" as not-a-time
        _bad_checkin_time(text, path, "a missing time")
    return _interactions(users, items, times, True, path, opts, text_row_line(text, 1),
                         ("user", "location id", "time (Unix seconds)"))


# --------------------------------------------------------------------------------------------
# Steam (Kang & McAuley, steam_reviews.json.gz)


STEAM_FORMAT = (
    "steam_reviews.json(.gz): one Python dict literal per line with 'username', "
    "'product_id' and 'date' (YYYY-MM-DD)"
)
# The three fields, in the order the file writes them. The user name is kept as its quoted
# Python literal (repr is canonical, so the same name always gives the same token).
_STEAM_RE = re.compile(
    r"""'username': ('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*").*?"""
    r"""'product_id': '(\d+)'.*?'date': '(\d{4}-\d{2}-\d{2})'"""
)


def _steam_fields(line: str) -> tuple[str, str, str] | None:
    """(username literal, product id, date) of one line; regex first, then literal_eval."""
    m = _STEAM_RE.search(line)
    if m:
        return m.group(1), m.group(2), m.group(3)
    obj = _parse_object(line)
    if obj is None or not {"username", "product_id", "date"} <= obj.keys():
        return None
    return repr(str(obj["username"])), str(obj["product_id"]), str(obj["date"])


def read_steam(path: Path, opts: ReadOptions) -> Interactions:
    """Steam reviews: every review is an interaction (user name, product id, review date).

    The user name becomes a sorted rank (module docstring), the numeric product id is the
    item id. Dates are days, returned as Unix seconds at midnight UTC (same-day ties keep
    file order).
    """
    users = _StringIds()
    u_col: list[str] = []
    items: list[int] = []
    dates: list[str] = []
    text = _text(path)
    for lineno, line in _lines(text):
        fields = _steam_fields(line)
        if fields is None:
            raise DataError(
                f"{path}: line {lineno}: {line[:60]!r} has no username/product_id/date; "
                f"expected {STEAM_FORMAT}"
            )
        u_col.append(fields[0])
        items.append(_int(fields[1], path, lineno, "product_id", STEAM_FORMAT))
        dates.append(fields[2])
    users.add(u_col)
    try:
        times = np.array(dates, dtype="datetime64[D]").astype("datetime64[s]").astype(np.int64)
    except ValueError as e:
        raise DataError(f"{path}: a review date is not a calendar date ({e})") from e
    return _interactions(users.finish(), items, times, True, path, opts,
                         text_row_line(text, 1))


# --------------------------------------------------------------------------------------------
# Last.fm (HetRec 2011)


LASTFM_FORMAT = (
    "hetrec2011-lastfm-2k.zip or its user_taggedartists-timestamps.dat "
    "(header userID<TAB>artistID<TAB>tagID<TAB>timestamp)"
)


def read_hetrec_lastfm(path: Path, opts: ReadOptions) -> Interactions:
    """HetRec-2011 Last.fm tag assignments as user -> artist interactions.

    Rows with the same (user, artist, timestamp) are one interaction (several tags applied
    at once); the file's Unix milliseconds become seconds (floor), like every other source.
    """
    if _is_zip(path):
        text = _zip_text(path, "user_taggedartists-timestamps.dat", LASTFM_FORMAT)
    else:
        text = _text(path)
    header, _, body = text.partition("\n")
    if header.strip().split("\t") != ["userID", "artistID", "tagID", "timestamp"]:
        raise DataError(
            f"{path}: line 1: header {header.strip()[:60]!r} is not "
            f"'userID<TAB>artistID<TAB>tagID<TAB>timestamp'; expected {LASTFM_FORMAT}"
        )
    arr = _parse_table(body, 2, path, "\t", 4, (0, 1, 3), ("userID", "artistID", "timestamp"))
    _, first = np.unique(arr, axis=0, return_index=True)
    arr = arr[np.sort(first)]  # drop repeated (user, artist, time), keep file order
    # opts=None: the rule above is this source's duplicate handling (a repeat is a second tag,
    # not a damaged file), so data.drop_duplicates has nothing left to do.
    return _interactions(arr[:, 0], arr[:, 1], arr[:, 2] // 1000, True, path, None)


# --------------------------------------------------------------------------------------------
# Parquet sources: Yambda (Yandex) and Zvuk (Sber AI Lab)


YAMBDA_FORMAT = (
    "a Yambda flat parquet file (e.g. flat/50m/likes.parquet or listens.parquet) with "
    "columns uid, item_id, timestamp (and played_ratio_pct for listens)"
)
ZVUK_FORMAT = (
    "zvuk-interactions.parquet (columns user_id, track_id, datetime) or the Kaggle "
    "zvuk-dataset zip that contains it"
)
_BATCH = 1 << 20


def _pyarrow():
    """(pyarrow, pyarrow.parquet), imported on first use (an optional dependency)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as e:
        raise DataError(
            "reading parquet files (zvuk, Yambda) needs pyarrow, an optional dependency: "
            'pip install -e ".[parquet]"'
        ) from e
    return pyarrow, pyarrow.parquet


def _parquet_file(path: Path, fmt: str):
    pa, pq = _pyarrow()
    if not path.exists():
        raise DataError(f"{path}: file not found; check --config.data.path")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e}); expected {fmt}") from e


def _column_numpy(batch, name: str, path: Path) -> np.ndarray:
    col = batch.column(name)
    if col.null_count:
        raise DataError(
            f"{path}: column {name!r} has {col.null_count} missing value(s); "
            "drop those rows or fetch the file again"
        )
    return col.to_numpy(zero_copy_only=False)


def _time_seconds(values: np.ndarray, path: Path, name: str) -> np.ndarray:
    """int64 seconds from integer or datetime64 values."""
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[s]").astype(np.int64)
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    raise DataError(
        f"{path}: column {name!r} has type {values.dtype}, expected integer or timestamp"
    )


def _read_parquet(
    path: Path,
    cols: tuple[str, str, str],
    fmt: str,
    opts: ReadOptions,
    row_filter: Callable[[object], np.ndarray] | None = None,
    extra: tuple[str, ...] = (),
) -> Interactions:
    """Streams `cols` = (user, item, time) columns batch by batch, keeping rows that pass
    `row_filter(batch)` and (for integer user ids) the user sample, so memory holds only the
    kept rows."""
    pf = _parquet_file(path, fmt)
    names = pf.schema_arrow.names
    missing = [c for c in (*cols, *extra) if c not in names]
    if missing:
        raise DataError(f"{path}: no column(s) {missing} (columns: {names}); expected {fmt}")
    user_ids = _StringIds()
    string_users = False
    users, items, times = [], [], []
    for batch in pf.iter_batches(batch_size=_BATCH, columns=[*cols, *extra]):
        keep = np.ones(batch.num_rows, dtype=bool) if row_filter is None else row_filter(batch)
        u = _column_numpy(batch, cols[0], path)
        if u.dtype.kind in "iu":
            keep &= user_sample_mask(u, opts.user_sample, opts.user_sample_seed)
            users.append(u[keep].astype(np.int64))
        else:
            string_users = True
            user_ids.add(str(x) for x in u[keep])
        i = _column_numpy(batch, cols[1], path)
        if i.dtype.kind not in "iu":
            raise DataError(f"{path}: column {cols[1]!r} is not an integer id column")
        items.append(i[keep].astype(np.int64))
        times.append(_time_seconds(_column_numpy(batch, cols[2], path)[keep], path, cols[2]))
    if string_users:
        if users:
            raise DataError(f"{path}: column {cols[0]!r} mixes integer and string ids")
        user = user_ids.finish()
    else:
        user = np.concatenate(users) if users else np.zeros(0, np.int64)
    item = np.concatenate(items) if items else np.zeros(0, np.int64)
    time = np.concatenate(times) if times else np.zeros(0, np.int64)
    # Parquet rows have no line numbers: a repeat is named by its values (string user ids
    # are ranks here, so then only the count is given).
    return _interactions(user, item, time, True, path, opts, None,
                         None if string_users else cols)


def read_yambda(path: Path, opts: ReadOptions) -> Interactions:
    """Yambda flat parquet (likes or listens): uid, item_id, timestamp.

    Every row is an interaction, organic or recommendation-driven (`is_organic` is not used;
    unlikes are not subtracted from likes). With `opts.min_play_ratio` > 0 (listens) only rows
    with played_ratio_pct >= min_play_ratio are kept. Timestamps are seconds on Yambda's
    global (anonymised) clock, comparable across users.
    """
    threshold = int(opts.min_play_ratio)
    if threshold <= 0:
        return _read_parquet(path, ("uid", "item_id", "timestamp"), YAMBDA_FORMAT, opts)

    def played(batch) -> np.ndarray:
        return _column_numpy(batch, "played_ratio_pct", path) >= threshold

    pf_names = _parquet_file(path, YAMBDA_FORMAT).schema_arrow.names
    if "played_ratio_pct" not in pf_names:
        raise DataError(
            f"{path}: data.min_play_ratio={threshold} needs the played_ratio_pct column of "
            f"Yambda listens, but the file has {pf_names}; for likes set "
            "--config.data.min_play_ratio=0"
        )
    return _read_parquet(
        path, ("uid", "item_id", "timestamp"), YAMBDA_FORMAT, opts, played,
        extra=("played_ratio_pct",),
    )


def _extracted(path: Path, member: str, fmt: str) -> Path:
    """The archive member `member` extracted next to the cache (once; atomically)."""
    from posrec.data import download

    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(_member_name(zf, path, member, fmt))
            out_dir = download.cache_dir() / "extracted" / path.stem
            out = out_dir / member
            if out.exists() and out.stat().st_size == info.file_size:
                return out
            out_dir.mkdir(parents=True, exist_ok=True)
            # A temp file of its own: runs of a parallel sweep may extract at the same time;
            # each publishes a complete (CRC-checked by zipfile) copy, the last one stays.
            fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{member}.", suffix=".part")
            tmp = Path(tmp_name)
            try:
                with zf.open(info) as src, os.fdopen(fd, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                os.replace(tmp, out)
            finally:
                if tmp.exists():
                    tmp.unlink()
            return out
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated zip archive ({e}); download it again") from e
    except OSError as e:
        raise DataError(f"{path}: cannot extract {member} ({e})") from e


def read_zvuk(path: Path, opts: ReadOptions) -> Interactions:
    """Zvuk `zvuk-interactions.parquet` (or the Kaggle zip holding it): user_id, track_id,
    datetime.

    Every row (one play) is an interaction; repeats are kept (music is re-consumed) and
    play_duration is not used. The zip's member is extracted once into the download cache.
    """
    if _is_zip(path):
        path = _extracted(path, "zvuk-interactions.parquet", ZVUK_FORMAT)
    return _read_parquet(path, ("user_id", "track_id", "datetime"), ZVUK_FORMAT, opts)


# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Format:
    """A raw file format: its reader and what it looks like (for error messages)."""

    reader: Callable[[Path, ReadOptions], Interactions]
    description: str


FORMATS: dict[str, Format] = {
    "ml-1m": Format(read_ml1m_source, ML1M_FORMAT),
    "ml-20m": Format(read_ml20m, ML20M_FORMAT),
    "ml-100k": Format(read_ml100k, ML100K_FORMAT),
    "amazon-ratings": Format(read_amazon_ratings, AMAZON_RATINGS_FORMAT),
    "amazon-reviews": Format(read_amazon_reviews, AMAZON_REVIEWS_FORMAT),
    "gowalla": Format(read_gowalla, GOWALLA_FORMAT),
    "steam": Format(read_steam, STEAM_FORMAT),
    "hetrec-lastfm": Format(read_hetrec_lastfm, LASTFM_FORMAT),
    "yambda": Format(read_yambda, YAMBDA_FORMAT),
    "zvuk": Format(read_zvuk, ZVUK_FORMAT),
}
