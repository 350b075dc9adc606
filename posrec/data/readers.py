"""Readers for raw interaction logs: CSV (plain or gzip) and MovieLens-1M `ratings.dat`.

Every reader returns an `Interactions` table of raw ids in file order. Nothing is filtered,
sorted or re-indexed here (that is `preprocess`'s job), so a reader's output can be checked
line by line against the file. The one exception: exact duplicate rows are an error naming
both lines, or, with `drop_duplicates=True` (`data.drop_duplicates`), dropped with a warning
(`check_duplicates`, which the readers of `sources` share).

Speed: the common case (a clean file of integers, extra columns may be any numbers) is parsed
by `np.loadtxt` (ML-1M, 1M rows: about 0.2 s). When that fails, a line-by-line parser re-reads
the text to find the first bad line and raise a `DataError` that names the file, the line, the
column and the fix; the same slow path also accepts integral float timestamps such as
`978300760.0` and non-numeric extra columns, which the fast path rejects.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import math
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from posrec.errors import DataError

INT32_MAX = np.iinfo(np.int32).max
INT64_MAX = int(np.iinfo(np.int64).max)
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"


@dataclasses.dataclass(frozen=True)
class Interactions:
    """A raw interaction log, one entry per row of the source file, in file order.

    Attributes:
        user: int64 [N] raw user ids (non-negative, < 2**31).
        item: int64 [N] raw item ids (non-negative, < 2**31).
        time: int64 [N] timestamps, or a per-user order index when the source has no times.
        has_real_time: False when `time` is only an order index; such data cannot be split
            by a global time cut (the temporal split refuses it).
    """

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    has_real_time: bool

    def __post_init__(self) -> None:
        n = len(self.user)
        if len(self.item) != n or len(self.time) != n:
            raise ValueError(
                f"Interactions arrays differ in length: user {n}, item {len(self.item)}, "
                f"time {len(self.time)}"
            )

    def __len__(self) -> int:
        return len(self.user)


def are_order_indices(user_N: np.ndarray, time_N: np.ndarray) -> bool:
    """Whether every user's times are exactly 0, 1, ..., n_user - 1 in some order: per-user
    positions, as in the shared CSVs without real times, not times comparable across users.

    Checked on the raw file (`data.load_split`), where nothing is filtered out yet: after a
    k-core filter a user's positions have gaps. One user alone is not taken as evidence.
    """
    if len(np.unique(user_N)) < 2:
        return False
    order = np.lexsort((time_N, user_N))
    user, time = user_N[order], time_N[order]
    first = np.r_[True, user[1:] != user[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(user)), 0))
    return bool(np.array_equal(time, np.arange(len(user)) - start))


# --------------------------------------------------------------------------------------------
# File access


def _read_bytes(path: Path) -> bytes:
    """Returns the file's bytes, transparently gunzipped when it starts with the gzip magic."""
    _check_data_file(path, "check the path (e.g. --config.data.path=/path/to/file)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e})") from e
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except EOFError as e:
            raise DataError(
                f"{path}: truncated gzip file (the compressed stream ends early); "
                "the download or copy is incomplete, fetch the file again"
            ) from e
        except (OSError, zlib.error) as e:
            raise DataError(
                f"{path}: corrupt gzip file ({e}); fetch the file again"
            ) from e
    elif path.name.endswith(".gz"):
        raise DataError(
            f"{path}: name ends in .gz but the file is not gzip-compressed; "
            "rename it or re-compress it"
        )
    return data


def _check_data_file(path: Path, not_found: str) -> None:
    """DataError unless `path` exists and is not a directory (`not_found`: the fix to name)."""
    if not path.exists():
        raise DataError(f"{path}: file not found; {not_found}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file")


def _file_head(path: Path, not_found: str) -> bytes:
    """The first 4 bytes of the data file `path` (enough for the zip or gzip magic).

    Raises:
        DataError: the file is missing (the message ends with `not_found`, the fix), is a
            directory, or cannot be read (permissions, I/O error).
    """
    _check_data_file(path, not_found)
    try:
        with path.open("rb") as f:
            return f.read(4)
    except OSError as e:
        raise DataError(
            f"{path}: cannot read file ({e}); check the path and its permissions"
        ) from e


def _decode(data: bytes, path: Path, member: str = "") -> str:
    """UTF-8 decode (a leading BOM is dropped); a bad byte is reported with its line number.

    `member`: the archive member `data` comes from, named in the message ("" for the file).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        where = f"{path}: {member}" if member else f"{path}"
        raise DataError(
            f"{where}: line {line}: not UTF-8 text (byte {data[e.start]:#04x}); "
            "is this a binary file? expected a text file of integer ids"
        ) from e
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


# --------------------------------------------------------------------------------------------
# Parsing


_SEPARATOR_NAMES = {
    ",": "comma", "\t": "tab", ";": "semicolon", "::": "'::'", "|": "pipe", " ": "whitespace",
}
# A shell command that turns a file separated by the key into a CSV.
_TO_CSV = {
    "\t": "tr '\\t' ','", ";": "tr ';' ','", "|": "tr '|' ','", "::": "sed 's/::/,/g'",
    " ": "awk -v OFS=, '{$1=$1} 1'",
}


def _guess_delimiter(line: str, delimiter: str) -> str:
    """A hint naming the delimiter a line seems to use instead of `delimiter` ('' if none).

    No config key sets a delimiter (data files are CSVs, raw formats have their own), so the
    hint says how to convert a CSV-to-be, or that the file is not in the expected format.
    """
    found = next((c for c in ("\t", ";", "::", "|", ",") if c != delimiter and c in line),
                 None)
    if found is None and delimiter != " " and len(line.split()) > 1:
        found = " "
    if found is None:
        return ""
    want = _SEPARATOR_NAMES.get(delimiter, repr(delimiter))
    hint = f"; the file looks {_SEPARATOR_NAMES[found]}-separated, but {want}-separated fields "
    if delimiter != ",":
        return hint + "are expected: is this the right file for this format?"
    hint += f"are expected: convert it, e.g. `{_TO_CSV[found]} < FILE > FILE.csv`"
    if found == "::":
        hint += " (MovieLens ratings.dat is read as it is with --config.data.name=ml-1m)"
    return hint


def _split_fields(line: str, delimiter: str) -> list[str]:
    if delimiter == " ":
        parts = line.split()
    else:
        parts = line.split(delimiter)
    return [p.strip().strip('"').strip() for p in parts]


def _parse_int_field(
    s: str, path: Path, lineno: int, name: str, *, is_time: bool
) -> int:
    try:
        return _in_int64(int(s), s, path, lineno, name, is_time)
    except ValueError:
        pass
    if not is_time:
        raise DataError(
            f"{path}: line {lineno}, column {name!r}: {s!r} is not an integer id; "
            "ids must be non-negative integers (map string ids to integers first)"
        )
    try:
        v = float(s)
    except ValueError:
        raise DataError(
            f"{path}: line {lineno}, column {name!r}: {s!r} is not a number; "
            "timestamps must be integers (e.g. Unix seconds)"
        ) from None
    if not math.isfinite(v):
        raise DataError(
            f"{path}: line {lineno}, column {name!r}: timestamp is {s!r}; "
            "drop or fill rows with missing timestamps"
        )
    if v != int(v):
        raise DataError(
            f"{path}: line {lineno}, column {name!r}: timestamp {s!r} is not an integer; "
            "convert timestamps to integer units (e.g. milliseconds)"
        )
    return _in_int64(int(v), s, path, lineno, name, is_time)


def _in_int64(v: int, s: str, path: Path, lineno: int, name: str, is_time: bool) -> int:
    """`v` if it fits in int64 (ids are range-checked later by `_check_values`)."""
    if abs(v) <= INT64_MAX:
        return v
    what = (
        "timestamp is beyond the int64 range; use Unix seconds or milliseconds"
        if is_time
        else "id is beyond the int32 range (max 2147483647); ids must be non-negative 32-bit "
        "integers (re-index them first)"
    )
    raise DataError(f"{path}: line {lineno}, column {name!r}: {s[:40]!r}: {what}")


def _slow_parse(
    lines: Sequence[str],
    first_lineno: int,
    path: Path,
    delimiter: str,
    ncols: int,
    cols: tuple[int, int, int],
    names: tuple[str, str, str],
) -> np.ndarray:
    """Line-by-line parse that raises a DataError at the first bad line; int64 [N, 3]."""
    out: list[tuple[int, int, int]] = []
    for k, raw in enumerate(lines):
        lineno = first_lineno + k
        line = raw.strip()
        if not line:
            continue
        fields = _split_fields(line, delimiter)
        if len(fields) != ncols:
            hint = _guess_delimiter(line, delimiter) if len(fields) == 1 else ""
            raise DataError(
                f"{path}: line {lineno}: {len(fields)} field(s) where {ncols} are expected"
                f"{hint or '; every row needs one value per column'}"
            )
        row = []
        for j, (c, name) in enumerate(zip(cols, names, strict=True)):
            row.append(_parse_int_field(fields[c], path, lineno, name, is_time=(j == 2)))
        out.append((row[0], row[1], row[2]))
    if not out:
        return np.zeros((0, 3), np.int64)
    return np.array(out, dtype=np.int64)  # every value fits: `_in_int64`


def _fast_parse(
    text: str, delimiter: str, ncols: int, cols: tuple[int, int, int]
) -> np.ndarray | None:
    """np.loadtxt of the data lines (header already removed): int64 [N, 3], or None when it
    fails and `_slow_parse` must read the file.

    Every row must have `ncols` fields. The used columns must be plain integers; the other
    columns are read as int64, else as float64 (e.g. MovieLens ratings of 3.5). numpy
    1.23-1.26 parse "1.5", "1e3", "nan" or "inf" in an integer column through a float and only
    warn (DeprecationWarning), truncating the value; that warning is an error here, so such a
    file goes to `_slow_parse`, which rejects non-integer ids and non-integral timestamps.
    """
    if not text.strip():
        return np.zeros((0, 3), np.int64)
    dtypes: list[Any] = [np.int64]
    if ncols > len(cols):
        dtypes.append(np.dtype([(f"c{j}", np.int64 if j in cols else np.float64)
                                for j in range(ncols)]))
    for dtype in dtypes:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                arr = np.loadtxt(
                    io.StringIO(text),
                    delimiter=None if delimiter == " " else delimiter,
                    dtype=dtype,
                    comments=None,
                    quotechar='"',
                    ndmin=1 if dtype is not np.int64 else 2,
                )
        except (ValueError, OverflowError, DeprecationWarning):
            continue
        if arr.size == 0:
            return np.zeros((0, 3), np.int64)
        if dtype is np.int64:
            return arr[:, list(cols)] if arr.shape[1] == ncols else None
        return np.stack([arr[f"c{j}"] for j in cols], axis=1).astype(np.int64, copy=False)
    return None


def _row_lineno(lines: Sequence[str], first_lineno: int, row: int) -> int:
    """Line number of the `row`-th non-blank data line (blank lines are skipped by parsing)."""
    seen = -1
    for k, line in enumerate(lines):
        if line.strip():
            seen += 1
            if seen == row:
                return first_lineno + k
    return first_lineno + row


def _check_values(
    arr: np.ndarray,
    body: str,
    first_lineno: int,
    path: Path,
    names: tuple[str, str, str],
) -> None:
    """Ids must be in [0, 2**31); raises naming the first offending line."""
    for j in (0, 1):
        col = arr[:, j]
        bad = np.flatnonzero((col < 0) | (col > INT32_MAX))
        if len(bad):
            r = int(bad[0])
            lineno = _row_lineno(body.splitlines(), first_lineno, r)
            v = int(col[r])
            why = "negative" if v < 0 else "beyond the int32 range (max 2147483647)"
            raise DataError(
                f"{path}: line {lineno}, column {names[j]!r}: id {v} is {why}; "
                "ids must be non-negative 32-bit integers (re-index them first)"
            )


# Odd 64-bit constants (SplitMix64's) mixing one column each into the duplicate-row hash.
_HASH_MULTIPLIERS = tuple(
    np.uint64(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
)


def check_duplicates(
    inter: Interactions,
    path: Path,
    drop: bool,
    row_line: Callable[[int], int] | None = None,
    names: tuple[str, str, str] | None = None,
) -> Interactions:
    """`inter` without rows that repeat an earlier row; every reader ends with this check.

    A row equal to an earlier row in user, item and time is a duplicate (typically a file
    concatenated twice, or a repeated final row; under leave-one-out it would make the
    validation target equal the test target). drop=False (`data.drop_duplicates`, the
    default) raises a DataError naming the first repeat and its original; drop=True keeps the
    first of each (file order is preserved) and logs the count.

    Args:
        inter: the reader's rows, in file order ([N] arrays).
        path: the file, for messages.
        drop: keep the first of each repeated row instead of raising.
        row_line: file line number of row r (rows are 0-based); None when rows have no line
            (parquet), then messages give the row's values only.
        names: the file's names of the user, item and time columns, to show the repeated
            values; None when the ids are not the file's own (string ids ranked by the reader).

    Returns:
        `inter` itself when no row repeats, else a new `Interactions` with [M] arrays, M < N.
    """
    n = len(inter)
    if n < 2:
        return inter
    cols = (inter.user, inter.item, inter.time)
    # Quick exact test for the common case: equal rows have equal hashes, so if no two
    # hashes are equal no row repeats (about 5x faster than the lexsort below).
    h = np.zeros(n, dtype=np.uint64)
    for col, mult in zip(cols, _HASH_MULTIPLIERS, strict=True):
        h ^= np.asarray(col, dtype=np.int64).view(np.uint64) * mult
        h ^= h >> np.uint64(29)
    h.sort()
    if not (h[1:] == h[:-1]).any():
        return inter
    del h
    order = np.lexsort(cols[::-1])  # stable: equal rows stay in file order
    repeat = np.ones(n - 1, dtype=bool)
    for col in cols:  # one sorted column at a time: memory O(N), not O(3N)
        ranked = col[order]
        repeat &= ranked[1:] == ranked[:-1]
    if not repeat.any():
        return inter
    dup = np.sort(order[1:][repeat])  # rows that repeat an earlier row
    r = int(dup[0])
    same = (inter.user == inter.user[r]) & (inter.item == inter.item[r])
    first = int(np.flatnonzero(same & (inter.time == inter.time[r]))[0])
    values = (
        " (" + ", ".join(f"{k} {int(c[r])}" for k, c in zip(names, cols, strict=True)) + ")"
        if names else ""
    )
    if row_line is not None:
        where = f"line {row_line(r)} repeats line {row_line(first)}{values}"
    else:
        where = f"a row repeats an earlier row{values}"
    if not drop:
        raise DataError(
            f"{path}: {where}; {len(dup)} duplicate row(s) in all (same user, item and time as "
            "an earlier row). Remove them, or set --config.data.drop_duplicates=True to keep "
            "the first of each"
        )
    logging.warning(
        "%s: dropped %d duplicate row(s) (same user, item and time as an earlier row; the "
        "first: %s)", path, len(dup), where,
    )
    keep = np.ones(n, dtype=bool)
    keep[dup] = False
    return Interactions(
        user=inter.user[keep], item=inter.item[keep], time=inter.time[keep],
        has_real_time=inter.has_real_time,
    )


def text_row_line(body: str, first_lineno: int) -> Callable[[int], int]:
    """row -> file line number, for a reader whose rows are the non-blank lines of `body`
    (whose first line is line `first_lineno` of the file); computed only when called."""
    return lambda row: _row_lineno(body.splitlines(), first_lineno, row)


def _parse_table(
    body: str,
    first_lineno: int,
    path: Path,
    delimiter: str,
    ncols: int,
    cols: tuple[int, int, int],
    names: tuple[str, str, str],
) -> np.ndarray:
    """Parses the data lines `body` into int64 [N, 3] (user, item, time), validating all.

    `first_lineno` is the file line number of the first line of `body` (for messages).
    """
    arr = _fast_parse(body, delimiter, ncols, cols)
    if arr is None:
        arr = _slow_parse(body.splitlines(), first_lineno, path, delimiter, ncols, cols, names)
    if len(arr) == 0:
        raise DataError(f"{path}: no data rows (the file is empty after the header)")
    _check_values(arr, body, first_lineno, path, names)
    return arr


def read_csv(
    path: str | os.PathLike,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    has_real_time: bool = True,
    delimiter: str = ",",
    drop_duplicates: bool = False,
) -> Interactions:
    """Reads a delimited text file (plain or gzip) with a header row into `Interactions`.

    Args:
        path: the file; gzip is detected from its magic bytes (`.gz` files must be gzip).
        user_col, item_col, time_col: header names of the three columns used; other columns
            are ignored (they need not be integers).
        has_real_time: whether the time column holds real timestamps (False: order indices,
            e.g. the shared files other than ml-100k).
        delimiter: field separator; `" "` means any run of whitespace.
        drop_duplicates: what to do with a row repeating an earlier (user, item, time)
            row: False raises a DataError naming both lines, True keeps the first occurrence
            and logs a warning with the count (`check_duplicates`).

    Returns:
        `Interactions` with int64 [N] arrays in file order.

    Raises:
        DataError: missing file, truncated gzip, no header, missing columns, a wrong
            delimiter, a row with the wrong number of fields, non-integer or negative ids,
            ids beyond int32, non-numeric or NaN timestamps, duplicate rows (unless
            `drop_duplicates`), or no data rows. The message names the file and the line.
    """
    path = Path(path)
    data = _read_bytes(path)
    if data.startswith(_ZIP_MAGIC):
        raise DataError(
            f"{path}: is a zip archive, not a CSV; for MovieLens ml-1m.zip use "
            "data.name='ml-1m' (read_ml1m), otherwise unzip it first"
        )
    text = _decode(data, path)
    header_line, _, body = text.partition("\n")
    header_line = header_line.rstrip("\r")
    if not header_line.strip():
        raise DataError(
            f"{path}: empty file (or empty first line); expected a header row "
            f"'{user_col}{delimiter}{item_col}{delimiter}{time_col}' followed by data rows"
        )
    header = _split_fields(header_line.strip(), delimiter)
    want = (user_col, item_col, time_col)
    if len(header) == 1:
        hint = _guess_delimiter(header_line, delimiter)
        if hint:
            raise DataError(
                f"{path}: line 1: the header {header_line.strip()!r} has a single column "
                f"with delimiter {delimiter!r}{hint}"
            )
    missing = [c for c in want if c not in header]
    if missing:
        looks_numeric = all(h.lstrip("-").isdigit() for h in header)
        extra = (
            "; the first line looks like data: a header row is required"
            if looks_numeric
            else "; pass the column names (data.columns) that the file uses"
        )
        raise DataError(
            f"{path}: line 1: missing column(s) {missing} in header {header}{extra}"
        )
    dup = sorted({h for h in header if header.count(h) > 1 and h in want})
    if dup:
        raise DataError(f"{path}: line 1: column(s) {dup} appear more than once in the header")
    cols = (header.index(user_col), header.index(item_col), header.index(time_col))
    arr = _parse_table(body, 2, path, delimiter, len(header), cols, want)
    inter = Interactions(
        user=np.ascontiguousarray(arr[:, 0]),
        item=np.ascontiguousarray(arr[:, 1]),
        time=np.ascontiguousarray(arr[:, 2]),
        has_real_time=bool(has_real_time),
    )
    return check_duplicates(inter, path, drop_duplicates, text_row_line(body, 2), want)


def _read_ml1m_bytes(path: Path) -> bytes:
    """The bytes of ratings.dat: the file itself, or ml-1m/ratings.dat inside ml-1m.zip."""
    magic = _file_head(
        path, "pass --config.data.path=/path/to/ml-1m.zip (or ratings.dat)"
    )
    if magic != _ZIP_MAGIC and not path.name.endswith(".zip"):
        return _read_bytes(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("ratings.dat")]
            if not names:
                raise DataError(
                    f"{path}: zip archive has no ratings.dat (members: {zf.namelist()[:8]}); "
                    "expected the official ml-1m.zip"
                )
            name = "ml-1m/ratings.dat" if "ml-1m/ratings.dat" in names else names[0]
            return zf.read(name)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{path}: corrupt or truncated zip archive ({e}); download ml-1m.zip again"
        ) from e


def read_ml1m(path: str | os.PathLike, drop_duplicates: bool = False) -> Interactions:
    """Reads MovieLens-1M `ratings.dat` (UserID::MovieID::Rating::Timestamp) or `ml-1m.zip`.

    Ratings are dropped (every rating is an interaction, as in SASRec); timestamps are real
    Unix seconds, so `has_real_time=True`. Rows stay in file order. Duplicate rows are
    handled as in `read_csv` (the official file has none).
    """
    path = Path(path)
    data = _read_ml1m_bytes(path)
    text = data.decode("latin-1")
    first = next((ln for ln in text[:4096].splitlines() if ln.strip()), "")
    if not first:
        raise DataError(f"{path}: no data rows (empty ratings.dat)")
    if "::" not in first:
        raise DataError(
            f"{path}: line 1: {first.strip()[:60]!r} is not in the ratings.dat format "
            "UserID::MovieID::Rating::Timestamp; for a CSV use data.name='csv'"
        )
    names = ("UserID", "MovieID", "Timestamp")
    body = text.replace("::", ",")
    arr = _parse_table(body, 1, path, ",", 4, (0, 1, 3), names)
    inter = Interactions(
        user=np.ascontiguousarray(arr[:, 0]),
        item=np.ascontiguousarray(arr[:, 1]),
        time=np.ascontiguousarray(arr[:, 2]),
        has_real_time=True,
    )
    return check_duplicates(inter, path, drop_duplicates, text_row_line(body, 1), names)
